# Peeka's bootstrap, executed inside the target by the attach step (gdb or sys.remote_exec).
#
# The attach step appends one line, ``_peeka_boot({...config...})``, and runs the text in a fresh
# namespace. It must return at once and never raise: it only starts a thread that loads the agent
# package from its directory under a private module name and starts the server. Errors go to
# ``boot-error.txt`` beside the agent files, where the client looks when the socket never appears.


def _peeka_boot(config):
    import sys

    try:
        existing = sys.modules.get(config["module"])
        if existing is not None:
            runtime = getattr(existing, "runtime", None)
            if runtime is None or runtime.current() is not None or getattr(existing, "_peeka_loading", False):
                return  # running, or another attach is loading it right now
        start_thread = None
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None:
            try:
                start_thread = monkey.get_original("_thread", "start_new_thread")
            except Exception:
                start_thread = None
        if start_thread is None:
            import _thread

            start_thread = _thread.start_new_thread
        start_thread(_peeka_load_and_start, (config,))
    except BaseException:
        pass


def _peeka_load_and_start(config):
    import os
    import sys

    try:
        import threading

        threading.current_thread().name = "peeka-agent-loader"
    except Exception:
        pass
    try:
        import importlib
        import importlib.util

        def load(name, path, package_dir=None):
            spec = importlib.util.spec_from_file_location(
                name, path, submodule_search_locations=[package_dir] if package_dir else None
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module

        if config.get("simpleeval_path") and config.get("simpleeval_module") not in sys.modules:
            load(config["simpleeval_module"], config["simpleeval_path"])
        package_dir = config["package_dir"]
        name = config["module"]
        # A fork child inherits the parent's loaded (stopped) agent: start that one afresh.
        package = sys.modules.get(name) or load(name, os.path.join(package_dir, "__init__.py"), package_dir)
        package._peeka_loading = True
        try:
            runtime = importlib.import_module(name + ".runtime")
            importlib.import_module(name + ".commands").preload()
            runtime.start(config)
        finally:
            package._peeka_loading = False
    except BaseException:
        try:
            import traceback

            path = os.path.join(config.get("files_dir") or "/nonexistent", "boot-error.txt")
            with open(path + ".tmp", "w") as f:
                f.write(traceback.format_exc())
            os.replace(path + ".tmp", path)  # the client must never read half a message
        except BaseException:
            pass
