"""A Bühlmann–Straub posterior for a portfolio of a million risks on this machine (issue 15):
1,000,000 risks x 5 periods (5,000,000 weighted rows), 4 chains x 1,000 draws after 1,000
tuning, ``bc.sample(..., per_risk="summary")``. Writes the "bayes_million" section of RESULTS.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_million.py   # about 15 minutes on 2 cores

The fit runs in a child process so that its peak resident memory (``ru_maxrss``) is its own.
The phases are timed apart: simulating the rows, the factory (validation and reduction to
per-risk statistics), sampling the three hyperparameters (nutpie, compile included) and the
per-risk summaries (exact conditional draws, a block of risks at a time). The default
``per_risk="draws"`` is also asked for, to time its refusal before any sampling.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import write_section  # noqa: E402

RISKS, PERIODS, DRAWS, TUNE, CHAINS, SEED = 1_000_000, 5, 1000, 1000, 4, 20261203


def child() -> None:
    import arviz as az
    import pandas as pd

    import bayescred as bc
    from bayescred.errors import PosteriorSizeError
    from bayescred.models._base import info_of

    t = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    w = rng.uniform(0.5, 1.5, (RISKS, PERIODS))
    y = 100.0 + rng.normal(0, 10, RISKS)[:, None] + rng.normal(0, 20, (RISKS, PERIODS)) / np.sqrt(w)
    df = pd.DataFrame({"risk": np.repeat(np.arange(RISKS), PERIODS), "y": y.ravel(), "w": w.ravel()})
    del w, y
    t["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = bc.models.buhlmann_straub(df, group="risk", response="y", weight="w")
    t["factory"] = time.perf_counter() - t0
    del df
    t0 = time.perf_counter()
    try:
        bc.sample(model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED)
        refusal = "not refused"
    except PosteriorSizeError as exc:
        refusal = str(exc)
    t["refusal"] = time.perf_counter() - t0

    info = info_of(model)  # time the per-risk summaries apart from the sampling
    summarise = info.summarise

    def timed(*args):
        s0 = time.perf_counter()
        out = summarise(*args)
        t["summaries"] = time.perf_counter() - s0
        return out

    info.summarise = timed
    t0 = time.perf_counter()
    tree = bc.sample(model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED, per_risk="summary")
    t["sample_and_summaries"] = time.perf_counter() - t0
    post = tree["posterior"].to_dataset()
    ess = az.ess(post, var_names=["collective", "between_sd", "within_sd"], method="bulk")
    rs = tree["risk_summary"]
    print(json.dumps({
        "times": t, "refusal": refusal,
        "ess": {k: float(ess[k]) for k in ("collective", "between_sd", "within_sd")},
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
        "sampler": post.attrs.get("bayescred_sampler"),
        "risks": int(rs.sizes["risk"]),
        "premium_sd_median": float(rs["premium"].sel(statistic="sd").median()),
        "means": {k: float(post[k].mean()) for k in ("collective", "between", "within")},
    }))


def main() -> None:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(out.stderr)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kB on Linux
    r = json.loads(out.stdout.strip().splitlines()[-1])
    t = r["times"]
    sampling = t["sample_and_summaries"] - t["summaries"]
    print(json.dumps(r, indent=1), f"peak {peak_gib:.2f} GiB, wall {wall:.0f} s")
    lines = [
        "## A million risks: Bühlmann–Straub posterior (`benchmarks/bench_million.py`)",
        "",
        f"{RISKS:,} risks x {PERIODS} periods ({RISKS * PERIODS:,} weighted rows; simulated m = 100, tau = 10, "
        f"sigma = 20), {CHAINS} chains x {DRAWS:,} draws after {TUNE:,} tuning, `bc.sample(model, "
        "per_risk=\"summary\")`: the hyperparameters' draws, and for every risk the posterior mean, sd and 5 %, "
        "50 % and 95 % quantiles of its premium, conditional-mean premium and credibility factor (exact "
        f"conditional draws, {CHAINS * DRAWS:,} per risk, a block of risks at a time). One process, "
        "warm compilation caches.",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| simulate the rows (not part of a fit) | {t['simulate']:.1f} |",
        f"| factory: validate and reduce {RISKS * PERIODS:,} rows to per-risk statistics | {t['factory']:.1f} |",
        f"| sampling the hyperparameters (nutpie, `{r['sampler']}`) | {sampling:.1f} |",
        f"| per-risk summaries of {CHAINS * DRAWS:,} conditional draws x {RISKS:,} risks | {t['summaries']:.1f} |",
        f"| **factory + posterior** | **{t['factory'] + t['sample_and_summaries']:.1f}** |",
        "",
        f"Peak resident memory of the process: **{peak_gib:.2f} GiB** (the machine has 24 GiB). Minimum bulk ESS of "
        f"the hyperparameters {min(r['ess'].values()):.0f}; divergences {r['divergences']}; posterior means "
        f"collective {r['means']['collective']:.2f}, between {r['means']['between']:.1f}, within "
        f"{r['means']['within']:.1f} (simulated 100, 100, 400).",
        "",
        f"The default `per_risk=\"draws\"` (every risk's draws, {CHAINS * DRAWS:,} x {RISKS:,} per variable) is refused in "
        f"{t['refusal']:.2f} s, before sampling: \"{r['refusal']}\"",
    ]
    write_section("bayes_million", "\n".join(lines))


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else main()
