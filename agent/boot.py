# Peeka's bootstrap, executed inside the target by the attach step (gdb or sys.remote_exec).
#
# The attach step appends one line, ``_peeka_boot({...config...})``, and runs the text in a fresh
# namespace. It must return at once and never raise: it only starts a thread that loads the agent
# package from its directory under a private module name and starts the server. Errors go to
# ``boot-error.txt`` beside the agent files, where the client looks when the socket never appears.


def _peeka_boot(config):
    import sys

    try:
        import os
        import posix  # os.open as it was: eventlet's gives the calling thread a hub (and an epoll fd)

        # A copy runs at most twice: gdb's run, and a sys.remote_exec request that waited for the
        # main thread. Once both have run, nothing is pending: detach needs to know (runtime.stop).
        started = os.path.join(config["files_dir"], "started")
        if os.path.exists(started):
            try:
                os.close(posix.open(os.path.join(config["files_dir"], "rerun"), os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError:
                pass
        existing = sys.modules.get(config["module"])
        if existing is not None:
            runtime = getattr(existing, "runtime", None)
            # The loading mark holds the pid that loads: a fork child inherits a mark whose
            # loader thread it does not have.
            loading = getattr(existing, "_peeka_loading", 0) == os.getpid()
            if runtime is None or runtime.current() is not None or loading:
                return  # running, or another attach is loading it right now
        # Under gevent or eventlet monkey-patching, _thread's functions are green ones: a "thread"
        # started through them is a greenlet that runs only when the host's hub gets control.
        start_thread = _peeka_original_thread("start_new_thread")
        if start_thread is None:
            import _thread

            start_thread = _thread.start_new_thread
        # One bootstrap per shipped copy, taken atomically: a 3.14 sys.remote_exec request that
        # never ran (main thread blocked) runs the same launch.py once gdb's fallback has woken
        # the main thread. The marker also tells the client that the script ran.
        try:
            os.close(posix.open(os.path.join(config["files_dir"], "started"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return
        except OSError:
            pass
        import _thread

        # The loader runs off this thread: say here which thread is the main one (its native id
        # is the pid), for the threading record the loader may have to put right.
        get_ident = _thread.get_ident
        if sys.modules.get("gevent.monkey") is not None or sys.modules.get("eventlet.patcher") is not None:
            get_ident = _peeka_original_thread("get_ident")  # a green get_ident names the greenlet
        if get_ident is not None and getattr(_thread, "get_native_id", lambda: 0)() == os.getpid():
            config["main_ident"] = get_ident()
        # Loading hands the GIL over and back a few times (the loader thread's start, the socket's
        # calls); in a host whose threads keep the GIL busy each hand-back waits a switch interval.
        # The same shorter interval as while a request is served, until the server listens.
        hurry = _peeka_hurry(config.get("boot_switch_interval") or 0.0)
        try:
            start_thread(_peeka_load_and_start, (config, hurry))
        except BaseException:
            _peeka_unhurry(hurry)
            raise
    except BaseException:
        pass


def _peeka_original_thread(name):
    """``_thread.<name>`` as it was before gevent or eventlet patched it; None when neither did."""
    import sys

    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original("_thread", name)
        except Exception:
            pass
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None:
        try:
            return getattr(patcher.original("_thread"), name)
        except Exception:
            pass
    return None


def _peeka_hurry(interval):
    """Lower the switch interval to ``interval`` (when above it); what ``_peeka_unhurry`` restores."""
    import sys

    saved = sys.getswitchinterval()
    if not interval or saved <= interval:
        return None
    sys.setswitchinterval(interval)
    return (saved, sys.getswitchinterval())


def _peeka_unhurry(hurry):
    """Put the host's switch interval back exactly (``setswitchinterval`` truncates to whole
    microseconds, hence the half), unless the host set its own meanwhile: then it keeps it."""
    import sys

    if hurry is not None and sys.getswitchinterval() == hurry[1]:
        sys.setswitchinterval((round(hurry[0] * 1e6) + 0.5) / 1e6)


def _peeka_load_and_start(config, hurry=None):
    try:
        _peeka_load(config)
    finally:
        _peeka_unhurry(hurry)


def _peeka_load(config):
    import os
    import posix
    import sys

    try:
        if "threading" not in sys.modules:
            import threading

            _peeka_put_main_thread_right(threading, config)
    except Exception:
        pass
    try:
        import importlib
        import importlib.util
        import marshal

        def read(path):
            # Whole files in few reads: each read hands the GIL over in a host whose threads keep it.
            fd = posix.open(path, os.O_RDONLY)  # not eventlet's: see _peeka_boot
            try:
                return b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
            finally:
                os.close(fd)

        # Every module's source, read here, off the injected statement: in launch.py they were a
        # literal that the interrupted thread parsed before anything ran. Loading then does no
        # other file I/O. {"runtime": src, "commands/__init__": src, ...}
        sources = config.get("sources")
        if sources is None:
            sources = marshal.loads(read(config["sources_file"]))
        name = config["module"]
        # ...and their code objects, compiled by this interpreter's own executable beside the
        # client (peeka/attach/codecache.py): unmarshalling is ~80x quicker than compiling, which
        # holds the GIL throughout. Used only when the bytecode's magic number is ours.
        code = {}
        try:
            if config.get("code_file"):
                blob = read(config["code_file"])
                magic = importlib.util.MAGIC_NUMBER
                if blob[:len(magic)] == magic:
                    code = marshal.loads(blob[len(magic):])
        except Exception:
            code = {}

        def compiled(key, source, path):
            blob = code.get(key)
            if blob is not None:
                try:
                    return marshal.loads(blob)
                except Exception:
                    pass
            return compile(source, path, "exec")

        class Loader(object):
            def __init__(self, key):
                self.key = key

            def create_module(self, spec):
                return None

            def exec_module(self, module):
                path = "<peeka agent>/%s.py" % self.key
                module.__file__ = path
                exec(compiled(self.key, sources[self.key], path), module.__dict__)

        class Finder(object):
            def find_spec(self, fullname, path=None, target=None):
                if fullname != name and not fullname.startswith(name + "."):
                    return None
                rel = fullname[len(name) + 1:].replace(".", "/")
                for key, is_package in (((rel + "/__init__") if rel else "__init__", True), (rel, False)):
                    if key in sources:
                        return importlib.util.spec_from_loader(fullname, Loader(key), is_package=is_package)
                return None

        finder = Finder()
        sys.meta_path.insert(0, finder)
        try:
            # A fork child inherits the parent's loaded (stopped) agent: start that one afresh.
            package = sys.modules.get(name) or importlib.import_module(name)
            package._peeka_loading = os.getpid()
            try:
                # Only the server now; each command's module is compiled when first asked for
                # (through the finder, which stays on sys.meta_path, answering for this
                # package's names only, until detach takes it off).
                runtime = importlib.import_module(name + ".runtime")
                if runtime.start(config, finder).finder is not finder:
                    sys.meta_path.remove(finder)  # another bootstrap's agent runs: its finder serves
            finally:
                package._peeka_loading = 0
        except BaseException:
            sys.meta_path.remove(finder)
            raise
    except BaseException:
        try:
            import traceback

            path = os.path.join(config.get("files_dir") or "/nonexistent", "boot-error.txt")
            with open(path + ".tmp", "w") as f:
                f.write(traceback.format_exc())
            os.replace(path + ".tmp", path)  # the client must never read half a message
        except BaseException:
            pass


def _peeka_put_main_thread_right(threading, config):
    """``threading``, imported first here, took this loader thread for the main one (its native id
    on 3.13+; before, its ident and its tstate lock too, so the real main thread had no Thread
    object and ``main_thread()`` ended with the loader). Give the record the main thread's ident,
    its native id (the pid) and, before 3.13, a held lock standing for its thread state (only
    ``threading._shutdown`` on the main thread releases it), as if the main thread had imported it."""
    import _thread
    import os
    import sys
    import time

    main_ident = config.get("main_ident")
    getter = getattr(_thread, "_get_main_thread_ident", None)  # 3.13+
    if main_ident is None and getter is not None:
        main_ident = getter()
    if main_ident is None and hasattr(time, "pthread_getcpuclockid"):
        # See threadids.native_ids: list and read in one chain of C calls (no thread can end between).
        import itertools
        import operator

        call = operator.methodcaller("__call__")
        if sys.version_info[:2] == (3, 11):
            # 3.11 before 3.11.9 can hang for good in sys._current_frames() when a collection starts
            # inside it (gh-106883; see compat.frames_lazily): the collector is paused around it, in
            # one run of C calls (the unpacking below), so no other thread sees it paused.
            import gc

            was, results = itertools.tee(map(call, (gc.isenabled, gc.disable, sys._current_frames)))
            back = filter(None, map(call, itertools.compress((gc.enable,), was)))
            (frames,) = itertools.chain(itertools.islice(results, 2, None), back)
            listed = iter(frames)
        else:
            listed = itertools.chain.from_iterable(map(call, (sys._current_frames,)))
        idents, again = itertools.tee(listed)
        for ident, clock in zip(idents, map(time.pthread_getcpuclockid, again)):
            if clock & 7 == 6 and ~(clock >> 3) == os.getpid():
                main_ident = ident
    if main_ident is None:
        return
    record = threading._main_thread
    with threading._active_limbo_lock:
        if record._ident != main_ident:
            if threading._active.get(record._ident) is record:
                del threading._active[record._ident]
            record._ident = main_ident
            threading._active[main_ident] = record
            if sys.version_info < (3, 13):
                held = _thread.allocate_lock()
                held.acquire()
                record._tstate_lock = held
        if hasattr(record, "_native_id"):
            record._native_id = os.getpid()
