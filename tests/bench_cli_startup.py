"""Benchmark: the CLI's start-up, `peeka --help` and `peeka watch --help`, per client venv.

    python tests/bench_cli_startup.py [--runs 15]

For every client venv scripts/setup.sh made (.venv, .venv39 ... .venv314) runs each row ``--runs``
times, interleaved, and prints the median wall and CPU milliseconds (CPU from the child's own
rusage) and the ratio to a bare interpreter in the same run:

    python -c pass             the floor
    import typer               what any typer CLI pays
    peeka --help               lists every verb without importing a command module
    peeka watch --help         imports one command module (and what it needs to run)
    eager (before lazy)        what the CLI did before: every command module imported, rich help
    watch --help, rich+attach  watch --help with rich and the attach code imported up front, as
                               before they were imported on first use
    thread --json (no target)  a real command's path up to the attach (a pid no process has; exit 3)
    ... rich+attach            the same with rich and the attach code imported up front (before)

Goal: `peeka --help` <= 120 ms on a quiet machine. Not a test: timings depend on the machine and its load
(run `uptime` beside it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EAGER = ("import sys, importlib; sys.argv = ['peeka', '--help']; import typer.rich_utils, peeka.cli as c; "
         "[importlib.import_module('peeka.commands.' + n) for n in c.COMMANDS]; "
         "app = c.build_app(None); app.rich_markup_mode = 'rich'; app(args=['--help'], prog_name='peeka')")

# What peeka.render and commands/_common imported at start before rich and the attach code became lazy.
UP_FRONT = "import rich.console, rich.table, rich.tree, peeka.attach, sys; from peeka.cli import main; "
NO_PID = "2147483646"  # above any pid_max: the command fails at the attach, after its imports

ROWS = {
    "python -c pass": ["-c", "pass"],
    "import typer": ["-c", "import typer"],
    "peeka --help": ["-m", "peeka", "--help"],
    "peeka watch --help": ["-m", "peeka", "watch", "--help"],
    "eager (before lazy)": ["-c", EAGER],
    "watch --help, rich+attach": ["-c", UP_FRONT + "main(['watch', '--help'])"],
    "thread --json (no target)": ["-m", "peeka", "thread", NO_PID, "--json"],
    "... rich+attach": ["-c", UP_FRONT + f"main(['thread', '{NO_PID}', '--json'])"],
}
# Rows that end in an error on purpose, with the exit code they must end with.
EXIT_CODES = {"thread --json (no target)": 3, "... rich+attach": 3}


def run_once(python: Path, args: list[str], expected: int = 0) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([str(python), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != expected:
        raise SystemExit(f"{python} {' '.join(args)} exited {proc.returncode}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    opts = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min); {opts.runs} runs per row, medians")
    venvs = sorted(p for p in ROOT.glob(".venv*") if (p / "bin" / "python").exists())
    for venv in venvs:
        python = venv / "bin" / "python"
        version = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ROWS}
        for _ in range(opts.runs):
            for name, args in ROWS.items():
                samples[name].append(run_once(python, args, EXIT_CODES.get(name, 0)))
        base_wall = statistics.median(w for w, _ in samples["python -c pass"])
        print(f"\n{venv.name} (Python {version})")
        print(f"  {'':22} {'wall ms':>8} {'cpu ms':>8} {'wall / bare python':>20}")
        for name, values in samples.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(f"  {name:22} {wall:8.1f} {cpu:8.1f} {wall / base_wall:20.2f}")
        help_wall = statistics.median(w for w, _ in samples["peeka --help"])
        eager_wall = statistics.median(w for w, _ in samples["eager (before lazy)"])
        print(f"  peeka --help / eager: {help_wall / eager_wall:.2f}")
        for row, before in (("peeka watch --help", "watch --help, rich+attach"),
                            ("thread --json (no target)", "... rich+attach")):
            print(f"  {row} / {before}: "
                  f"{statistics.median(w for w, _ in samples[row]) / statistics.median(w for w, _ in samples[before]):.2f}")


if __name__ == "__main__":
    sys.exit(main())
