"""Symbol addresses in a live process, read from its ELF files without running ``nm`` or gdb.

gdb is started with no symbol loading at all (that is most of its start-up cost), so the client
hands it absolute addresses: the load base of the file in the target (``/proc/PID/maps``) plus the
symbol's value from ``.symtab`` (internal functions such as ``take_gil``, when not stripped) and
``.dynsym`` (exported functions, which distro builds keep).

Only ELF64 is read (x86-64, aarch64, either byte order); symbol tables are cached per
(path, device, inode, mtime), so a second attach to the same build costs nothing.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..process import Mapping, TargetProcess

_SHT_SYMTAB = 2
_SHT_DYNSYM = 11
_PT_LOAD = 1
_STT_SECTION = 3
_STT_FILE = 4
_LIBC = re.compile(r"^(libc(-[0-9.]+)?\.so(\.[0-9]+)*|ld-musl-[^/]*\.so(\.[0-9]+)*)$")

# The allocator's entry points: a thread whose stack holds a return address into one of these may
# be inside malloc, holding the arena lock, where running Python code would deadlock or corrupt it.
MALLOC_FAMILY = (
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "malloc_trim", "malloc_usable_size", "cfree",
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign",
    "_int_malloc", "_int_free", "_int_realloc", "_int_memalign", "malloc_consolidate", "sysmalloc",
    "__malloc_arena_thread_freeres", "arena_get2", "tcache_init",
)  # fmt: skip


class ElfError(Exception):
    """The file is no ELF64 file this reader understands."""


@dataclass(frozen=True)
class ElfSymbols:
    path: str
    symbols: dict[str, tuple[int, int]]  # name -> (st_value relative to the load base, st_size)
    min_vaddr: int  # lowest PT_LOAD p_vaddr, page aligned (0 for PIE and shared objects)
    machine: int  # e_machine: 62 x86-64, 183 aarch64

    def get(self, name: str) -> tuple[int, int] | None:
        return self.symbols.get(name)

    def matching(self, pattern: re.Pattern[str]) -> list[tuple[int, int, str]]:
        # Scanning 15k names takes milliseconds: remember the answer per pattern.
        found = _matches.get((id(self), pattern.pattern))
        if found is None:
            found = [(v, s, n) for n, (v, s) in self.symbols.items() if s and pattern.search(n)]
            _matches[(id(self), pattern.pattern)] = found
        return found


_cache: dict[tuple[str, int, int, int], ElfSymbols] = {}
_matches: dict[tuple[int, str], list[tuple[int, int, str]]] = {}  # keyed by id() of a cached ElfSymbols


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "peeka"


def read_symbols(path: str) -> ElfSymbols:
    """Every defined symbol of ``path`` (.dynsym first, then .symtab), cached per file version.

    Parsing a libpython's 15k symbols takes about 20 ms, a tenth of an attach, so the result is
    also kept on disk (marshal: plain data, fast to load) for the next peeka process.
    """
    st = os.stat(path)
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha1(repr((*key, st.st_size)).encode()).hexdigest()[:20]
    disk = cache_dir() / "symbols" / f"{digest}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"
    try:
        min_vaddr, machine, table = marshal.loads(disk.read_bytes())
        cached = ElfSymbols(path, table, min_vaddr, machine)
    except (OSError, ValueError, EOFError, TypeError):
        with open(path, "rb") as f:
            cached = _parse(f, path)
        _store(disk, marshal.dumps((cached.min_vaddr, cached.machine, cached.symbols)))
    _cache[key] = cached
    return cached


def _store(path: Path, data: bytes) -> None:
    """Write atomically; a cache we cannot write is only slower, never an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass


def _parse(f: BinaryIO, path: str) -> ElfSymbols:
    ident = f.read(64)
    if len(ident) < 64 or ident[:4] != b"\x7fELF":
        raise ElfError(f"{path} is not an ELF file")
    if ident[4] != 2:
        raise ElfError(f"{path} is not a 64-bit ELF file")
    order = "<" if ident[5] == 1 else ">"
    (_, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = struct.unpack(
        order + "HHIQQQIHHHHHH", ident[16:64]
    )

    f.seek(phoff)
    phdrs = f.read(phentsize * phnum)
    loads = [
        vaddr
        for p_type, _flags, _off, vaddr, *_rest in (
            struct.unpack_from(order + "IIQQQQQQ", phdrs, i * phentsize) for i in range(phnum)
        )
        if p_type == _PT_LOAD
    ]
    min_vaddr = (min(loads) & ~0xFFF) if loads else 0

    f.seek(shoff)
    raw = f.read(shentsize * shnum)
    sections = [struct.unpack_from(order + "IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]

    symbols: dict[str, tuple[int, int]] = {}
    # .dynsym first: its names are the exported ones and win over a static namesake in .symtab.
    for wanted in (_SHT_DYNSYM, _SHT_SYMTAB):
        for _name, sh_type, _fl, _addr, offset, size, link, _info, _align, entsize in sections:
            if sh_type != wanted or not entsize or link >= len(sections):
                continue
            strtab_off, strtab_size = sections[link][4], sections[link][5]
            f.seek(strtab_off)
            strtab = f.read(strtab_size)
            f.seek(offset)
            table = f.read(size)
            _add_symbols(symbols, table, entsize, strtab, order)
    return ElfSymbols(path=path, symbols=symbols, min_vaddr=min_vaddr, machine=machine)


def _add_symbols(
    out: dict[str, tuple[int, int]], table: bytes, entsize: int, strtab: bytes, order: str
) -> None:
    if entsize != 24:
        raise ElfError(f"unexpected symbol entry size {entsize}")
    find = strtab.find
    usable = len(table) - len(table) % 24
    # A hot loop (15k symbols in a libpython with .symtab): keep it to tuple unpacking and slicing.
    for st_name, st_info, _other, shndx, value, size in struct.iter_unpack(order + "IBBHQQ", table[:usable]):
        if not shndx or not st_name or not value or (st_info & 0xF) in (_STT_SECTION, _STT_FILE):
            continue
        name = strtab[st_name : find(b"\0", st_name)].decode("ascii", "replace")
        previous = out.get(name)
        # First definition wins (.dynsym's exported one), unless it was a sizeless label.
        if previous is None or (previous[1] == 0 and size):
            out[name] = (value, size)


@dataclass(frozen=True)
class LoadedFile:
    """One ELF file as mapped in the target: its symbols and where they ended up."""

    path: str  # as the target sees it
    base: int  # add to a symbol's value to get its address in the target
    elf: ElfSymbols

    def address(self, name: str) -> int | None:
        sym = self.elf.get(name)
        return None if sym is None else self.base + sym[0]

    def range(self, name: str) -> tuple[int, int] | None:
        """[start, end) of a function in the target; size 0 counts as one byte."""
        sym = self.elf.get(name)
        if sym is None:
            return None
        start = self.base + sym[0]
        return start, start + max(sym[1], 1)

    def ranges_matching(self, pattern: re.Pattern[str]) -> list[tuple[int, int, str]]:
        """[start, end, name] of every sized symbol whose name matches ``pattern``."""
        return [
            (self.base + value, self.base + value + size, name)
            for value, size, name in self.elf.matching(pattern)
        ]


def load(target: TargetProcess, path: str) -> LoadedFile:
    """Symbols of ``path`` (a path in the target's namespace) and its load base in ``target``."""
    first = _offset_zero_mapping(target.maps, path)
    if first is None:
        raise ElfError(f"{path} is not mapped in process {target.pid}")
    elf = read_symbols(_readable_path(target, first))
    return LoadedFile(path=path, base=first.start - elf.min_vaddr, elf=elf)


def load_libc(target: TargetProcess) -> LoadedFile | None:
    """The C library mapped in the target (glibc's libc.so.6, or musl's loader), if any."""
    for m in target.maps:
        if m.offset == 0 and _LIBC.match(os.path.basename(_strip_deleted(m.path))):
            return load(target, m.path)
    return None


def ranges(loaded: LoadedFile | None, names: Iterable[str]) -> list[tuple[int, int, str]]:
    if loaded is None:
        return []
    out = []
    for name in names:
        r = loaded.range(name)
        if r is not None:
            out.append((r[0], r[1], name))
    return out


def _offset_zero_mapping(maps: list[Mapping], path: str) -> Mapping | None:
    for m in maps:
        if m.path == path and m.offset == 0:
            return m
    return None


def _strip_deleted(path: str) -> str:
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def _readable_path(target: TargetProcess, m: Mapping) -> str:
    """A path we can open for the mapped file, also in another mount namespace or after deletion."""
    if m.path.endswith(" (deleted)"):
        # The file was replaced on disk (an upgrade); the mapped inode is still reachable here.
        return f"/proc/{target.pid}/map_files/{m.start:x}-{m.end:x}"
    return target.host_path(m.path)
