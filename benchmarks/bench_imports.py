"""Whole-process cost of a classical fit: ``import bayescred``, load Hachemeister, one
Bühlmann–Straub fit, against the bare interpreter importing numpy and pandas (issue 15's
target: at most 1.5x). Also lists what the fit's process loads of the heavy modules that a
classical fit must not need (tests/test_imports.py asserts the same).

Each command runs in a new process, 10 times, the two commands alternating so both see the
same load on the shared machine; the figures are the medians of wall time and of CPU time
(user + system of the child). One unmeasured run of each first warms the file cache.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_imports.py   # section "imports"
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import write_section

ROOT = Path(__file__).resolve().parents[1]
RUNS = 10
BARE = "import numpy, pandas"
FIT = ("import bayescred as bc; h = bc.datasets.load('hachemeister'); "
       "bc.credibility.buhlmann_straub(h, 'state', 'severity', 'claims')")
HEAVY = ("matplotlib", "arviz", "pymc", "pytensor", "scipy.stats", "scipy", "narwhals", "importlib.metadata")


def _seconds(code: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -c code`` in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, capture_output=True, text=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    load0 = os.getloadavg()[0]
    _seconds(BARE), _seconds(FIT)
    bare, fit = [], []
    for _ in range(RUNS):
        bare.append(_seconds(BARE))
        fit.append(_seconds(FIT))
    load1 = os.getloadavg()[0]
    med = {name: [statistics.median(t[i] for t in runs) for i in (0, 1)] for name, runs in (("bare", bare), ("fit", fit))}
    loaded_bare, loaded_fit = _loaded(BARE), _loaded(FIT)
    text = [
        f"Each command in a new process, {RUNS} runs alternating, medians; load average (1 min) of the shared "
        f"2-core machine {load0:.1f} at the start, {load1:.1f} at the end.",
        "",
        "| command | wall (median) | CPU (median) |",
        "|---|---:|---:|",
        f"| `python -c \"{BARE}\"` | {med['bare'][0]:.3f} s | {med['bare'][1]:.3f} s |",
        f"| `python -c \"{FIT}\"` | {med['fit'][0]:.3f} s | {med['fit'][1]:.3f} s |",
        f"| ratio (target at most 1.5) | {med['fit'][0] / med['bare'][0]:.2f} | {med['fit'][1] / med['bare'][1]:.2f} |",
        "",
        f"Of {', '.join(HEAVY)}: the bare process loads {', '.join(loaded_bare) or 'none'}; the fit's process "
        f"{', '.join(loaded_fit) or 'none'}" + (" (narwhals: the data door, `bayescred.portfolio`)."
                                                 if "narwhals" in loaded_fit else "."),
        "",
        "Command: `PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_imports.py`; what each import costs: "
        f"`python -X importtime -c \"{FIT}\"`.",
    ]
    write_section("imports", "## Imports: a classical fit's whole process (bench_imports.py)\n\n" + "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
