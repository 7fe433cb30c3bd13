"""Target for tests/bench_runtime.py: the per-sample cost of top's sampler, in-process, without the
socket, the agent thread or the machine's other load between samples counting for much.

    python sampler_cost.py THREADS AGENT_DIR [BASELINE_AGENT_DIR]

One thread does pure-Python work, THREADS - 2 wait on an Event (a server's idle pool); this thread
samples at 100 Hz (taking the GIL from the worker, as the agent's sampler does). Prints one line
per sampler, ``NAME MEDIAN_US``: the median wall time of one sample over rounds that alternate the
samplers (a median, so the ticks where the OS ran another process meanwhile do not count):
``cpu`` (CPU-weighted, the default), ``wall`` (``--idle``) and ``baseline`` (the other checkout's
sampler, wall clock, as it was before CPU weighting, if given).
"""

import importlib
import importlib.util
import statistics
import sys
import threading
import time


def load(name, agent_dir):
    """``agent_dir``'s sampling module, its package loaded under ``name`` (sampling imports compat)."""
    spec = importlib.util.spec_from_file_location(name, agent_dir + "/__init__.py", submodule_search_locations=[agent_dir])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(name + ".sampling")


def unit():
    total = 0
    for i in range(2000):
        total += i * i % 7
    return total


def main():
    threads, agent_dir = int(sys.argv[1]), sys.argv[2]
    sampling = load("pk_sampling", agent_dir)
    samplers = {"cpu": sampling, "wall": sampling}
    if len(sys.argv) > 3:
        samplers["baseline"] = load("pk_sampling_baseline", sys.argv[3])
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            unit()

    started = [threading.Thread(target=worker, daemon=True)]
    started += [threading.Thread(target=stop.wait, daemon=True) for _ in range(threads - 2)]
    for thread in started:
        thread.start()
    time.sleep(0.2)
    clocks = {t.ident: time.pthread_getcpuclockid(t.ident) for t in started}
    times = {name: [] for name in samplers}
    for _round in range(3):
        for name, module in samplers.items():
            sampler = module.Sampler()
            sampler.skip = frozenset([threading.get_ident()])
            if name == "cpu":
                sampler.use_clocks(dict(clocks))
            for tick in range(300 if threads < 100 else 100):
                start = time.perf_counter()
                sampler.sample()
                times[name].append(time.perf_counter() - start)
                if tick % 100 == 99:
                    sampler.take()  # a report interval ends
                time.sleep(0.01)
    stop.set()
    for name, values in times.items():
        print(name, round(statistics.median(values) * 1e6, 1), flush=True)


if __name__ == "__main__":
    main()
