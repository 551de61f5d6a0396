"""REML fit time of this tree against an earlier commit, same machine, same run: did a change
make `bc.lmm` slower? Writes the "lmm_ab" section of RESULTS.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lmm_ab.py e00707f

The earlier commit is checked out into a temporary git worktree; each tree fits, in its own
process, lme4's classic small fits (best of 7 after a warm-up), InstEval's two formulas (one
run) and the 6,000-risk Jewell portfolio (best of 3); the two trees alternate for ``ROUNDS`` (3)
rounds and each fit keeps its best time. The data sets are written once by R (lme4, nlme).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_section  # noqa: E402

ROUNDS = 3

CHILD = r"""
import json, sys, time, warnings
import pandas as pd
sys.path.insert(0, sys.argv[3])
import bayescred as bc
from bench_lmm import BIG, CLASSIC, jewell
warnings.simplefilter("ignore")
FACTORS = {"Worker", "Subject", "replicate", "Batch", "batch", "cask", "plate", "sample", "temperature",
           "s", "d", "dept", "service", "studage", "lectage", "recipe", "Machine", "Sex"}
def load(name):
    d = pd.read_csv(f"{sys.argv[1]}/{name}.csv")
    for c in d.columns:
        if c in FACTORS or d[c].dtype == object:
            d[c] = d[c].astype(str)
    return d
def best(fn, n):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    return min(times), out.criterion
fit = bc.lmm
out = {}
for name, form in CLASSIC:
    d = load(name)
    out[f"{name} | {form}"] = best(lambda: fit(form, d), 7)
d = load("InstEval")
for _, form, _ in BIG[:2]:
    t = time.perf_counter(); f = fit(form, d); out[f"InstEval | {form}"] = (time.perf_counter() - t, f.criterion)
j = jewell()
out["jewell | " + BIG[2][1]] = best(lambda: fit(BIG[2][1], j, weights="w"), 3)
json.dump(out, open(sys.argv[2], "w"))
"""


def main(before: str) -> None:
    from bench_lmm import _r_datasets

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _r_datasets(tmp)
        old_tree = tmp / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old_tree), before], check=True)
        try:
            (tmp / "child.py").write_text(CHILD)
            trees = {"before": old_tree, "after": ROOT}
            best: dict[str, dict] = {"before": {}, "after": {}}
            for r in range(ROUNDS):
                for label, tree in trees.items():
                    out = tmp / f"{label}{r}.json"
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    subprocess.run([sys.executable, str(tmp / "child.py"), str(tmp), str(out), str(ROOT / "benchmarks")],
                                   check=True, env=env, cwd=tree)
                    for key, (t, crit) in json.loads(out.read_text()).items():
                        if key not in best[label] or t < best[label][key][0]:
                            best[label][key] = (t, crit)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"]).returncode:
        head += " and uncommitted changes"  # the tree timed is the working tree, not HEAD
    lines = [f"| data | formula | before ({before}) | after ({head}) | ratio | criterion after − before |",
             "|---|---|---:|---:|---:|---:|"]
    ratios = []
    for key, (t0, c0) in best["before"].items():
        t1, c1 = best["after"][key]
        ratios.append(t1 / t0)
        data, form = key.split(" | ", 1)
        lines.append(f"| {data} | `{form.replace('|', '&#124;')}` | {t0 * 1e3:.1f} ms | {t1 * 1e3:.1f} ms | "
                     f"{t1 / t0:.2f} | {c1 - c0:.1e} |")
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    text = [f"Best time of each fit over {ROUNDS} alternating rounds, each tree in its own process; load average "
            f"(1 min) at the end {os.getloadavg()[0]:.1f}.", "", *lines, "",
            f"Geometric-mean ratio after / before: **{geo:.2f}**; largest {max(ratios):.2f}.", "",
            f"Command: `PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lmm_ab.py {before}`."]
    write_section("lmm_ab", "## REML fit time against an earlier commit (bench_lmm_ab.py)\n\n" + "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "e00707f")
