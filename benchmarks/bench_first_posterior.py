"""Time to a first posterior, whole process (issue 15): a fresh Python process imports bayescred,
loads a catalogue spec's bundled data, builds the factory's model and samples 4 x 1,000 draws
after 1,000 tuning, the spec's own sampler settings. Once with empty compilation caches (a
machine's first fit: PyTensor's C and numba caches in a new, empty base_compiledir) and once
more with those caches warm. Writes the "first_posterior" section of RESULTS.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_first_posterior.py   # a few minutes

Models: Hachemeister (the README's main run), the credit-insurance crossed model and a
simulated Poisson–gamma portfolio (the bus data need ../shared/data; the catalogue's simulator
stands in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import write_section  # noqa: E402

SPECS = {"Hachemeister (5 states x 12 quarters)": "hachemeister.toml",
         "credit insurance, crossed 3 x 3 cells": "credit_insurance.toml",
         "Poisson–gamma, simulated portfolio": "poisson_gamma_sim.toml"}

CHILD = """
import sys, time, json
t0 = time.perf_counter()
import bayescred as bc
from bayescred import catalogue
from bayescred.sources import open_data
from bayescred.spec import load_spec
spec = load_spec(sys.argv[1])
data = open_data(spec, None)
t1 = time.perf_counter()
model = catalogue.get(spec.model).bayes(data, dict(spec.arguments), priors=spec.priors)
tree = bc.sample(model, **spec.sampler, progressbar=False)
t2 = time.perf_counter()
print(json.dumps({"imports_and_data": t1 - t0, "model_and_posterior": t2 - t1,
                  "sampler": tree["posterior"].attrs["bayescred_sampler"]}))
"""


def run(spec: str, compiledir: str) -> dict:
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={compiledir}")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "models" / spec)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(out.stderr)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall}


def main() -> None:
    rows = []
    for name, spec in SPECS.items():
        with tempfile.TemporaryDirectory() as tmp:
            cold = run(spec, tmp)
            warm = run(spec, tmp)
        print(name, cold, warm, flush=True)
        rows.append((name, cold, warm))
    lines = [
        "## Time to a first posterior, whole process (`benchmarks/bench_first_posterior.py`)",
        "",
        "A fresh process: `import bayescred`, the spec's bundled data, the factory's model, `bc.sample` with the "
        "spec's sampler settings (4 chains x 1,000 draws after 1,000 tuning) and the exact per-risk draws. Cold: "
        "PyTensor's compilation caches (C and numba) in a new, empty directory; warm: the same directory again.",
        "",
        "| model | cold: wall (s) | of which model + posterior (s) | warm: wall (s) | of which model + posterior (s) | sampler |",
        "|---|---|---|---|---|---|",
    ]
    for name, cold, warm in rows:
        lines.append(f"| {name} | {cold['wall']:.1f} | {cold['model_and_posterior']:.1f} | {warm['wall']:.1f} | "
                     f"{warm['model_and_posterior']:.1f} | {cold['sampler']} |")
    hach = rows[0][1]["wall"]
    lines += ["", f"Issue 15's target, Hachemeister cold at most 10 s: {'met' if hach <= 10 else 'NOT met'} ({hach:.1f} s)."]
    write_section("first_posterior", "\n".join(lines))


if __name__ == "__main__":
    main()
