"""The crossed classification's posterior against bambi, nutpie on both sides (issue 15).
Writes the "crossed" section of RESULTS.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_crossed.py    # a few minutes; needs bambi

Data, the same rows for both sides:

* credit insurance (seed 002 Table 1): the 9 cells' means and counts with the derived pooled
  within-cell SS (REFERENCE-VALUES §6) turned into 401 raw rows that reproduce all three
  exactly (each cell's deviations are centred normal draws, scaled by one common factor so
  that the pooled SS is the published one), so the likelihood is that of the catalogue run;
* a simulated 20 x 10 portfolio, 5 to 30 rows a cell (the size at which the issue measured
  the per-draw algebra).

Model: ``y ~ 1 + (1|a) + (1|b) + (1|a:b)``; bayescred's ``bc.models.crossed`` (effects
integrated out, then drawn exactly) and bambi's latent model, each with its own default
priors; 4 chains x 1,000 draws after 1,000 tuning, nutpie (numba) on both sides. Each run is
a fresh process; timed from after the imports to a posterior with every effect's draws
(bambi: ``fit``; bayescred: factory and ``bc.sample``). Cold: PyTensor's and numba's caches
in a new, empty directory; warm: the same directory again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import write_section  # noqa: E402

DRAWS, TUNE, CHAINS, SEED = 1000, 1000, 4, 20261121


def credit_insurance_rows(seed: int = 1) -> pd.DataFrame:
    """Raw rows with the bundled cell means, counts and the pooled within-cell SS."""
    import bayescred as bc

    cells = bc.datasets.load("credit_insurance")
    ss = cells.attrs["within_ss"]
    rng = np.random.default_rng(seed)
    devs = []
    for n in cells["count"].astype(int):
        d = rng.standard_normal(n)
        devs.append(d - d.mean())
    scale = np.sqrt(ss / sum(float(np.sum(d * d)) for d in devs))
    rows = [pd.DataFrame({"a": r["status"], "b": r["experience"], "y": r["mean_payment"] + scale * d})
            for (_, r), d in zip(cells.iterrows(), devs)]
    return pd.concat(rows, ignore_index=True)


def simulated_rows(seed: int = 2, la: int = 20, lb: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a_eff, b_eff = rng.normal(0, 8, la), rng.normal(0, 5, lb)
    parts = []
    for i in range(la):
        for j in range(lb):
            n = int(rng.integers(5, 31))
            y = 100 + a_eff[i] + b_eff[j] + rng.normal(0, 3) + rng.normal(0, 20, n)
            parts.append(pd.DataFrame({"a": f"a{i:02d}", "b": f"b{j:02d}", "y": y}))
    return pd.concat(parts, ignore_index=True)


CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, arviz as az
side, path = sys.argv[1], sys.argv[2]
df = pd.read_csv(path)
if side == "bayescred":
    import bayescred as bc
    import nutpie  # noqa: F401 (imported before the clock, as bambi's side imports it)
    t0 = time.perf_counter()
    model = bc.models.crossed(df, factors=["a", "b"], response="y")
    tree = bc.sample(model, draws={D}, tune={T}, chains={C}, random_seed={S}, progressbar=False)
    elapsed = time.perf_counter() - t0
    post = tree["posterior"].to_dataset()
    ess = az.ess(post[["between", "within"]])
    names = {{"sampler": post.attrs["bayescred_sampler"]}}
else:
    import bambi as bmb
    import nutpie  # noqa: F401
    t0 = time.perf_counter()
    m = bmb.Model("y ~ 1 + (1|a) + (1|b) + (1|a:b)", df)
    tree = m.fit(draws={D}, tune={T}, chains={C}, random_seed={S}, inference_method="nutpie", progressbar=False)
    elapsed = time.perf_counter() - t0
    post = tree["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    ess = az.ess(post[["1|a_sigma", "1|b_sigma", "1|a:b_sigma", "sigma"]])
    names = {{"sampler": "nutpie"}}
low = min(float(np.min(ess[v].values)) for v in ess.data_vars)
print(json.dumps({{"seconds": elapsed, "min_ess": low, **names}}))
""".format(D=DRAWS, T=TUNE, C=CHAINS, S=SEED)


def run(side: str, csv: str, cache: str) -> dict:
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}", NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, side, csv], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall}


def main() -> None:
    datasets = {"credit insurance, 3 x 3 cells, 401 rows": credit_insurance_rows(),
                "simulated 20 x 10 cells": simulated_rows()}
    lines = [
        "## Crossed classification posterior against bambi, nutpie on both sides (`benchmarks/bench_crossed.py`)",
        "",
        "`y ~ 1 + (1|a) + (1|b) + (1|a:b)` on the same raw rows, each side with its default priors, 4 chains x "
        "1,000 draws after 1,000 tuning, nutpie on both sides; a fresh process per run, timed from after the imports "
        "to a posterior with every effect's draws (bayescred: factory + `bc.sample`, effects drawn exactly after "
        "sampling; bambi: `Model` + `fit(inference_method=\"nutpie\")`). Cold: PyTensor's and numba's caches in a new, "
        "empty directory; warm: the same directory again. Min ESS: the smallest bulk ESS of the variance "
        "components (four on each side).",
        "",
        "| data | rows | side | cold (s) | warm (s) | min ESS warm | ratio bayescred/bambi cold | warm |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, df in datasets.items():
            csv = os.path.join(tmp, "rows.csv")
            df.to_csv(csv, index=False)
            res = {}
            for side in ("bayescred", "bambi"):
                cache = tempfile.mkdtemp(dir=tmp)
                res[side] = (run(side, csv, cache), run(side, csv, cache))
                print(name, side, res[side], flush=True)
            (bc_cold, bc_warm), (bm_cold, bm_warm) = res["bayescred"], res["bambi"]
            for side, (cold, warm) in res.items():
                ratio = (f"{bc_cold['seconds'] / bm_cold['seconds']:.2f} | {bc_warm['seconds'] / bm_warm['seconds']:.2f}"
                         if side == "bayescred" else " | ")
                lines.append(f"| {name} | {len(df)} | {side} | {cold['seconds']:.1f} | {warm['seconds']:.1f} | "
                             f"{warm['min_ess']:.0f} | {ratio} |")
    load = os.getloadavg()[0]
    lines += ["", f"Issue 15's target: at most 1.0x bambi's time, warm and cold. Load average (1 min) at the end: {load:.1f}.",
              "", "Command: `PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_crossed.py`."]
    write_section("crossed", "\n".join(lines))


if __name__ == "__main__":
    main()
