"""source: the live source of functions and classes, and whether the file on disk still matches.

args: ``pattern``, ``regex`` (as ``sm``/``sc``), ``limit`` (matches shown, default 10).

Result: ``{"pattern", "count", "truncated", "sources": [...]}``; each: name, kind, file, line (where
the loaded code starts), end_line, lines (the text, from disk or linecache), origin, status and why.

Status: ``matches`` (the file's text at that place compiles to the very code that runs), ``moved``
(same code, now at another line), ``changed`` (the file's text compiles to different code: what
differs is listed), ``missing`` (no file any more), ``no-source`` (built-in, or code made from a
string), ``unknown`` (the text could not be compiled here). The file is read fresh in the target;
linecache is only looked at (a stale copy there is reported: tracebacks would show it), never filled.
Compiling the disk text is the only way to know it is what runs: comments and blank lines do not
count as a change, a changed constant does.
"""

from __future__ import annotations
import __future__

import io
import itertools
import keyword
import linecache
import os
import re
import tokenize
import types
import warnings
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from .. import procfs, search
from ..probes import engine_of
from ..streams import CommandError

DEFAULT_LIMIT = 10
MAX_FILE_BYTES = 8 << 20
MAX_LINES = 2000  # per match

_CO_ITERABLE_COROUTINE = 0x100
_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag


def _read(path: str) -> Optional[List[str]]:
    """The file's lines as the interpreter would decode them; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        return None
    try:
        encoding, _ = tokenize.detect_encoding(iter(data.splitlines(True)).__next__)
        text = data.decode(encoding, "replace")
    except (SyntaxError, LookupError):
        text = data.decode("utf-8", "replace")
    # Lines as Python counts them: str.splitlines would also break at a form feed (a page break in
    # many files) and other separators, and every line number after one would be off.
    return io.StringIO(text, newline=None).readlines()


def _block(lines: List[str], first: int) -> List[str]:
    """The def/class block starting at line ``first`` (decorators included), by indentation."""
    import inspect

    try:
        return inspect.getblock(lines[first - 1:])  # type: ignore[no-any-return]
    except Exception:
        return lines[first - 1:first]


def _last_line(code: types.CodeType) -> int:
    last = code.co_firstlineno
    stack = [code]
    while stack:
        current = stack.pop()
        try:
            lines = [line for _, _, line in current.co_lines() if line is not None]  # type: ignore[attr-defined]
        except AttributeError:  # 3.9
            import dis

            lines = [line for _, line in dis.findlinestarts(current)]
        if lines:
            last = max(last, max(lines))
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return last


# ---------------------------------------------------------------- compile the disk text


_IMPORT = re.compile(r"^[ \t\f]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(.*)")


class _Imports(NamedTuple):
    """Names the file binds by ``import``: on lines that start at column 0 (module level for sure),
    and only on indented lines (module level inside an ``if``/``try``, or local to a function)."""

    certain: FrozenSet[str]
    maybe: FrozenSet[str]


def _imported_names(lines: List[str]) -> _Imports:
    """The names the file binds by ``import``. From 3.11 the compiler makes a call on a name that a
    module-level import binds (``os.getpid()``, even where a parameter of that name hides it) other
    bytecode than a call on any other name, so a def compiled alone must be told those names
    (``_import_choices``). Read line by line (parenthesized and backslash-continued lists too), not
    parsed: a big file's parse would hold the target's GIL."""
    certain, maybe = set(), set()
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _IMPORT.match(line)
        i += 1
        if found is None:
            continue
        text = found.group(1).split("#", 1)[0].strip()
        if text.startswith("("):
            while ")" not in text and i < len(lines):
                text += " " + lines[i].split("#", 1)[0].strip()
                i += 1
            text = text.strip("() ")
        while text.endswith("\\") and i < len(lines):
            text = text[:-1] + " " + lines[i].split("#", 1)[0].strip()
            i += 1
        for alias in text.split(","):
            words = alias.split()
            name = words[-1] if len(words) == 3 and words[1] == "as" else (words[0].split(".")[0] if words else "")
            if name.isidentifier() and not keyword.iskeyword(name):
                (maybe if line[:1] in " \t" else certain).add(name)
    return _Imports(frozenset(certain), frozenset(maybe - certain))


def _compile_block(block: List[str], first: int, enclosing: List[str], flags: int,
                   imports: List[str]) -> Optional[types.CodeType]:
    """Compile a def block as it sits in the file: same line numbers, inside its classes
    (``super()``, private names and ``__class__`` compile differently outside a class), with the
    file's imports after it (binding them without moving a line)."""
    indent = len(block[0]) - len(block[0].lstrip())
    wrappers = ["%sclass %s:\n" % (" " * depth, name) for depth, name in enumerate(enclosing)]
    if indent and not wrappers:
        wrappers = ["if 1:\n"]
    if wrappers and indent < len(wrappers):
        return None
    text = "\n" * max(0, first - 1 - len(wrappers)) + "".join(wrappers) + "".join(block)
    if imports:
        text += "\nimport %s\n" % ", ".join(imports)
    # Compiling can warn (SyntaxWarning: `is` with a literal, invalid escapes; DeprecationWarning for
    # those before 3.12). The interpreter warned once when it loaded the file: the repeat must not
    # reach the host's stderr. catch_warnings swaps the process-wide filter list (per context only
    # on free-threaded 3.14) for the length of one compile, so just these two categories are muted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return compile(text, "<peeka source>", "exec", flags, dont_inherit=True)
        except (SyntaxError, ValueError):
            return None


def _find_code(module_code: types.CodeType, name: str, first: int) -> Optional[types.CodeType]:
    found = None
    stack = [module_code]
    while stack:
        current = stack.pop()
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                if const.co_name == name and (found is None or abs(const.co_firstlineno - first) < abs(found.co_firstlineno - first)):
                    found = const
                stack.append(const)
    return found


def _same(loaded: types.CodeType, disk: types.CodeType) -> bool:
    # Code equality covers bytecode, constants (nested code too), names and the first line; the
    # line table is compared too, as 3.9 leaves it out (a line added inside the body moves lines).
    # types.coroutine (asyncio's generator-based coroutines) sets a flag on the code at run time.
    table = "co_linetable" if hasattr(loaded, "co_linetable") else "co_lnotab"
    disk = disk.replace(co_filename=loaded.co_filename, co_flags=disk.co_flags | (loaded.co_flags & _CO_ITERABLE_COROUTINE))
    return loaded == disk and getattr(loaded, table) == getattr(disk, table)


def _shifted(code: types.CodeType, delta: int) -> types.CodeType:
    """The same code ``delta`` lines further down (nested code too: their first lines are absolute)."""
    consts = tuple(_shifted(c, delta) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + delta, co_consts=consts)


def _differences(loaded: types.CodeType, disk: types.CodeType) -> List[str]:
    """What about the code differs, in words a person can check against the text."""
    notes = []

    def consts(code: types.CodeType) -> List[str]:
        return [repr(c) for c in code.co_consts if not isinstance(c, types.CodeType)]

    for label, get in (("constants", consts), ("names", lambda c: list(c.co_names)),
                       ("local variables", lambda c: list(c.co_varnames))):
        old, new = get(loaded), get(disk)
        if old != new:
            gone = [x for x in old if x not in new][:5]
            added = [x for x in new if x not in old][:5]
            if gone:
                notes.append("%s only the running code has: %s" % (label, ", ".join(gone)))
            if added:
                notes.append("%s only the file has: %s" % (label, ", ".join(added)))
    if loaded.co_argcount != disk.co_argcount or loaded.co_kwonlyargcount != disk.co_kwonlyargcount:
        notes.append("the parameters differ")
    if not notes:
        notes.append("the bytecode differs (same names and constants: the logic or its order changed)")
    return notes


def _import_choices(code: types.CodeType, imports: _Imports) -> List[List[str]]:
    """Which imported names to bind at module level when compiling ``code``'s block, likeliest
    first: of the names the code uses (globals, locals, nested code's), those imported at column 0
    always; those imported only on indented lines all, then none (threading's ``import warnings``
    inside a method), then each mix of up to 4 of them."""
    used = set()
    stack = [code]
    while stack:
        current = stack.pop()
        used.update(current.co_names, current.co_varnames, current.co_cellvars, current.co_freevars)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    certain = sorted(used.intersection(imports.certain))
    maybe = sorted(used.intersection(imports.maybe))
    if not maybe:
        return [certain]
    choices = [certain + maybe, certain]
    if len(maybe) <= 4:
        choices += [certain + list(mix) for size in range(1, len(maybe)) for mix in itertools.combinations(maybe, size)]
    return choices


def compare(code: types.CodeType, lines: List[str], enclosing: List[str],
            imports: Optional[_Imports] = None) -> Tuple[str, List[str], int]:
    """``(status, why, line in the file)`` for loaded ``code`` against the file's ``lines``
    (``imports``: ``_imported_names(lines)``, when the caller has them already)."""
    first = code.co_firstlineno
    flags = code.co_flags & _FUTURE_FLAGS
    free = [name for name in code.co_freevars if name != "__class__"]  # super() compiles in its class wrapper
    if free:
        # A closure's code depends on the function that made it (its free variables): compiled
        # alone, the def reads them as globals, so the comparison would always differ.
        return "unknown", ["a closure (it uses %s of the function that made it): its text is shown, not compared"
                           % ", ".join(free[:5])], first
    choices = _import_choices(code, _imported_names(lines) if imports is None else imports)
    candidates = [first] + [n for n in _def_lines(lines, code.co_name) if n != first]
    nearest: Optional[Tuple[int, types.CodeType]] = None
    for start in candidates:
        if start > len(lines):
            continue
        block = _block(lines, start)
        for bound in choices if start == first else choices[:2]:
            compiled = _compile_block(block, start, enclosing, flags, bound)
            disk = _find_code(compiled, code.co_name, start) if compiled is not None else None
            if disk is None:
                continue
            if _same(code, disk):
                return "matches", [], disk.co_firstlineno
            if _same(_shifted(code, disk.co_firstlineno - code.co_firstlineno), disk):
                return "moved", ["the same code is now at line %d (the file changed above it)" % disk.co_firstlineno], \
                    disk.co_firstlineno
            if nearest is None:
                nearest = (start, disk)
    if nearest is None:
        return "changed", ["no def of %r at line %d (or elsewhere) in the file now" % (code.co_name, first)], first
    start, disk = nearest
    return "changed", ["the file's text differs from the running code: " + "; ".join(_differences(code, disk))], disk.co_firstlineno


def _def_lines(lines: List[str], name: str) -> List[int]:
    pattern = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+%s\b" % re.escape(name))
    found = []
    for number, text in enumerate(lines, 1):
        if pattern.match(text):
            while number > 1 and lines[number - 2].lstrip().startswith("@"):
                number -= 1  # the loaded code starts at its first decorator
            found.append(number)
    return found[:20]


# ---------------------------------------------------------------- per match


def _loaded_code(agent: Any, func: Any) -> Optional[types.CodeType]:
    from ..probes import unwrap

    try:
        target = unwrap(func)
    except Exception:
        return None
    probe = engine_of(agent).by_func.get(id(target))
    if probe is not None:
        return probe.code  # 3.9-3.11: the function runs a trampoline now; its original code is here
    return target.__code__


def _enclosing(func: Any) -> List[str]:
    """The classes a function is defined in, from its qualified name (``A.B.method`` -> A, B)."""
    from ..probes import unwrap

    try:
        qualname = search._str_attr(unwrap(func), "__qualname__") or ""  # noqa: SLF001
    except Exception:
        return []
    parts = qualname.split(".")[:-1]
    return [] if "<locals>" in parts else parts


def _stat(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except OSError:
        return None


def _linecache_note(path: str, lines: Optional[List[str]]) -> Optional[str]:
    cached = linecache.cache.get(path)
    if not cached or len(cached) < 3 or lines is None:
        return None
    if list(cached[2]) != lines:
        return "linecache holds an older copy of this file: tracebacks in the process show it"
    return None


def describe_function(agent: Any, name: str, func: Any, kind: str) -> Dict[str, Any]:
    entry: Dict[str, Any] = {"name": name, "kind": kind}
    code = _loaded_code(agent, func)
    if code is None:
        entry.update(status="no-source", why=["a built-in or C function: there is no Python source"])
        return entry
    path = code.co_filename
    entry.update(file=path, line=code.co_firstlineno, end_line=_last_line(code))
    lines = _read(path)
    if lines is None:
        cached = linecache.getlines(path) if not os.path.isabs(path) else []
        if cached:  # code made from a string a tool registered in linecache (IPython cells, ...)
            entry.update(status="unknown", origin="linecache", lines=_cut(_block(cached, code.co_firstlineno)),
                         why=["no file %s: the text is linecache's" % path])
            return entry
        entry.update(status="missing" if os.path.isabs(path) else "no-source",
                     why=["the file %s cannot be read now" % path if os.path.isabs(path)
                          else "code compiled from a string (%s): no file to show" % path])
        return entry
    status, why, start = compare(code, lines, _enclosing(func))
    entry.update(status=status, why=why, origin="disk", disk_line=start, lines=_cut(_block(lines, start)))
    _file_facts(entry, path, lines)
    return entry


def _cut(block: List[str]) -> List[str]:
    return [line.rstrip("\n") for line in block[:MAX_LINES]]


def _file_facts(entry: Dict[str, Any], path: str, lines: List[str]) -> None:
    st = _stat(path)
    if st is not None:
        entry["mtime"] = st.st_mtime
        started = _process_start()
        # The start is known to a few ms (uptime minus wall clock, which NTP slews); a file written
        # just before a restart (a deploy) must not read as edited since, so edits within the first
        # second are not told apart.
        if started and st.st_mtime > started + 1.0:
            entry.setdefault("why", []).append("the file was modified after the process started")
    note = _linecache_note(path, lines)
    if note:
        entry.setdefault("why", []).append(note)


def _process_start() -> Optional[float]:

    return procfs.start_time()


def _class_line(lines: List[str], first: int, name: str) -> Optional[int]:
    """Where ``class name`` starts in the file (its first decorator): at ``first``, else the nearest."""
    pattern = re.compile(r"^[ \t]*class[ \t]+%s\b" % re.escape(name))
    found = []
    for number, text in enumerate(lines, 1):
        if pattern.match(text):
            while number > 1 and lines[number - 2].lstrip().startswith("@"):
                number -= 1
            found.append(number)
    return min(found, key=lambda n: abs(n - first)) if found else None


def describe_class(agent: Any, name: str, cls: Any) -> Dict[str, Any]:
    """A class: its text from disk, and the comparison of each of its methods defined in that file."""
    entry: Dict[str, Any] = {"name": name, "kind": "class"}
    path = search._module_file(search._str_attr(cls, "__module__"))  # noqa: SLF001 - the one definition
    first = search.ClassLines().line(cls, path)
    if not path or not first:
        entry.update(status="no-source", why=["no file or line for this class (built-in, or made at runtime)"])
        return entry
    entry.update(file=path, line=first)
    lines = _read(path)
    if lines is None:
        entry.update(status="missing", why=["the file %s cannot be read now" % path])
        return entry
    qualname = search._str_attr(cls, "__qualname__") or ""
    statuses: List[str] = []
    why: List[str] = []
    imports = _imported_names(lines)
    for key, value in sorted(search._items(search._class_namespace(cls)), key=lambda kv: str(kv[0])):  # noqa: SLF001
        found = search._function_kind(value, in_class=True)  # noqa: SLF001
        code = _loaded_code(agent, found[1]) if found and found[1] is not None else None
        if code is None or code.co_filename != path:
            continue
        status, reasons, _ = compare(code, lines, qualname.split("."), imports)
        statuses.append(status)
        if status != "matches":
            why.append("%s: %s" % (key, " ".join(reasons)))
    start = _class_line(lines, first, qualname.rsplit(".", 1)[-1])
    if start is None and not statuses:
        # None of its methods comes from this file: made at run time (an enum's _convert_, a
        # namedtuple) or re-exported from another module (collections.abc from _collections_abc).
        entry.update(status="unknown", why=["no `class %s` statement in %s: the class was made at run time or "
                                            "defined elsewhere" % (qualname.rsplit(".", 1)[-1], path)])
        return entry
    if start is None:
        statuses.append("changed")
        why.insert(0, "no `class %s` in the file any more" % qualname.rsplit(".", 1)[-1])
        start = first
    elif start != first:
        statuses.append("moved")
        why.insert(0, "the class now starts at line %d" % start)
    block = _block(lines, start)
    status = "changed" if "changed" in statuses else ("moved" if "moved" in statuses else "matches")
    entry.update(status=status, why=why, origin="disk", disk_line=start, end_line=start + len(block) - 1,
                 lines=_cut(block))
    _file_facts(entry, path, lines)
    return entry


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    pattern, _detail, limit = search.search_args(args, DEFAULT_LIMIT)
    classes, class_count = search.find_classes(pattern, limit)
    functions, function_count = search.find_functions(pattern, limit)
    matches: List[Tuple[str, str, Any, str]] = [(n, "class", c, "class") for n, c in classes]
    matches += [(n, "function", f, kind) for n, f, kind in functions]
    matches.sort(key=lambda m: m[0])
    total = class_count + function_count
    if not matches:
        raise CommandError("nothing loaded matches %r; `peeka sm PID PATTERN` and `peeka sc PID PATTERN` list "
                           "what is there (a module not imported yet has no live source)" % pattern.text)
    sources = []
    for name, what, obj, kind in matches[:limit]:
        if what == "class":
            sources.append(describe_class(agent, name, obj))
        else:
            sources.append(describe_function(agent, name, obj, kind))
    return {"pattern": pattern.text, "count": total, "truncated": total > len(sources), "sources": sources}
