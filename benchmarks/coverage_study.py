"""Coverage study (issue 6): how often do nominal 90% premium intervals hold the true premium?

For Bühlmann–Straub, Hachemeister and Poisson–gamma portfolios simulated from known
hyperparameters (the simulators' defaults, ``bayescred.datasets.simulate``) with J = 5, 10,
30, 100 risks, estimates the actual coverage of each risk's premium interval for the EBLUP
with its three SDs (normal intervals) and the posterior (90% ETI), with Monte Carlo SEs from
the replicate-level shares (``bayescred.studies.coverage``).

    .venv/bin/python benchmarks/coverage_study.py                 # full study (see REPLICATES)
    .venv/bin/python benchmarks/coverage_study.py --quick         # a minute, for trying it out
    .venv/bin/python benchmarks/coverage_study.py --resume        # reuse finished chunks
    .venv/bin/python benchmarks/coverage_study.py --models poisson_gamma   # run one, reuse the others' chunks

Each (model, J) chunk is saved to benchmarks/_work/coverage/<model>_<J>.csv as soon as it
is done (replicate-level rows; seeded, so resuming gives the same numbers). At the end the
summary goes to the "coverage" section of benchmarks/RESULTS.md and the plot to
benchmarks/figures/coverage.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

import pandas as pd  # noqa: E402

from bayescred.studies import coverage  # noqa: E402

_spec = importlib.util.spec_from_file_location("_results", HERE / "_results.py")
_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_results)
write_section = _results.write_section

SEED = 20260006  # issue 6
SIZES = (5, 10, 30, 100)
# replicates per (model, J): EB arm, Bayesian arm (a subset of the same portfolios)
REPLICATES = {"buhlmann_straub": (400, 200), "hachemeister": (400, 200), "poisson_gamma": (400, 200)}
SAMPLER = dict(draws=500, tune=500, chains=2)
WORK = HERE / "_work" / "coverage"
FIGURE = HERE / "figures" / "coverage.png"


def run_chunk(model: str, J: int, replicates: int, bayes_replicates: int, sampler: dict, resume: bool, folder: Path):
    path = folder / f"{model}_{J}.csv"
    if resume and path.exists():
        reps = pd.read_csv(path)
        n_bayes = reps.loc[reps["method"] == coverage.BAYES_METHOD, "replicate"].nunique()
        if reps["replicate"].nunique() == replicates and n_bayes == bayes_replicates:
            print(f"{model} J={J}: reused {path}", flush=True)
            return reps
    start = time.perf_counter()
    reps = coverage.coverage_replicates(
        model,
        J,
        replicates,
        bayes=bayes_replicates > 0,
        bayes_replicates=bayes_replicates or None,
        seed=SEED,
        **sampler,
    )
    seconds = time.perf_counter() - start
    reps["seconds"] = seconds
    folder.mkdir(parents=True, exist_ok=True)
    reps.to_csv(path, index=False)
    print(f"{model} J={J}: {replicates} replicates ({bayes_replicates} Bayes) in {seconds:.0f} s", flush=True)
    return reps


def _cell(row) -> str:
    return f"{row.coverage:.3f} ± {row.mc_se:.3f}"


def markdown(table: pd.DataFrame, sampler: dict, seconds: dict) -> str:
    lines = [
        "## Coverage of nominal 90% premium intervals (issue 6)",
        "",
        "Simulated portfolios with known hyperparameters (simulator defaults: Bühlmann–Straub m = 80, "
        "τ² = 64, σ² = 100, T = 5, w ~ U(0.5, 1.5), seed 004_07f8365c92996b9b.txt Listing 3.1; "
        "Hachemeister β = (1500, 30), U = diag(20000, 600), σ² = 5·10⁷, T = 12, w ~ U(300, 10000), "
        "premium of period T + 1; Poisson–gamma m = 0.1, Var u = 0.4, T = 5, exposure ~ U(1, 50), "
        "premium = claim frequency per unit exposure). Truth = collective + the risk's true effect. "
        "EBLUP: REML (`bc.lmm`) or exact marginal ML (Poisson–gamma), normal intervals premium ± 1.645·SD "
        "with (i) conditional SD, (ii) PEV SD (adds the fixed effects), (iii) second-order MSE SD "
        "(adds the variance parameters). Bayes: `bc.models` default priors, `bc.sample` "
        f"({', '.join(f'{k} = {v}' for k, v in sampler.items())}; default priors scaled to one pilot portfolio "
        "per J from the same hyperparameters, one compiled model re-used for every replicate), 90% equal-tailed interval. Coverage = mean over replicates of the "
        "share of risks covered; ± is one Monte Carlo SE computed from the replicate-level shares "
        "(intervals within a replicate are correlated). An undefined interval counts as not covering.",
        "",
        f"Seed {SEED}; replicates per J are in the width tables (EB: all; Bayes: the first of the same portfolios). "
        "Command: `.venv/bin/python benchmarks/coverage_study.py` (2 shared cores; seconds per model below).",
        "",
    ]
    for model, sub in table.groupby("model", sort=False):
        wide = sub.assign(cell=[_cell(r) for r in sub.itertuples()]).pivot(index="n_risks", columns="method", values="cell")
        width = sub.pivot(index="n_risks", columns="method", values="width")
        methods = [m for m in coverage.METHODS if m in wide.columns]
        reps = sub.pivot(index="n_risks", columns="method", values="replicates")
        bnd = sub[sub["method"] == coverage.EBLUP_METHODS["cond_sd"]].set_index("n_risks")["boundary"]  # all EB replicates
        lines += [f"### {model} (seconds: {seconds.get(model, float('nan')):.0f})", ""]
        lines.append("| J | " + " | ".join(methods) + " | EB fits on boundary |")
        lines.append("|---" * (len(methods) + 2) + "|")
        for J in wide.index:
            lines.append(f"| {J} | " + " | ".join(f"{wide.loc[J, m]}" for m in methods) + f" | {bnd.loc[J]:.0%} |")
        lines += ["", "Mean interval width (replicates):", ""]
        lines.append("| J | " + " | ".join(methods) + " |")
        lines.append("|---" * (len(methods) + 1) + "|")
        for J in width.index:
            lines.append(f"| {J} | " + " | ".join(f"{width.loc[J, m]:.4g} ({reps.loc[J, m]:.0f})" for m in methods) + " |")
        divergent = sub[sub["divergences"] > 0]
        if not divergent.empty:
            lines += ["", "Divergent transitions per Bayes fit (mean): " + "; ".join(
                f"J={r.n_risks} {r.divergences:.2f}" for r in divergent.itertuples())]
        undefined = sub[sub["undefined"] > 0]
        if not undefined.empty:
            lines += ["", "Undefined intervals (EB fit on the boundary; counted as misses above): " + "; ".join(
                f"J={r.n_risks} {r.method} {r.undefined:.1%} undefined, coverage among the defined "
                f"{r.coverage_defined:.3f}" for r in undefined.itertuples())]
        lines.append("")
    lines.append("![coverage](figures/coverage.png)")
    return "\n".join(lines)


def load_chunks(model: str, folder: Path) -> pd.DataFrame | None:
    """A model's finished chunks from an earlier run (all sizes), or None."""
    paths = [folder / f"{model}_{J}.csv" for J in SIZES]
    if not all(p.exists() for p in paths):
        return None
    print(f"{model}: reused the chunks of an earlier run", flush=True)
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (not written to RESULTS.md)")
    parser.add_argument("--resume", action="store_true", help="reuse chunks already in benchmarks/_work/coverage")
    parser.add_argument("--no-bayes", action="store_true", help="EBLUP arms only")
    parser.add_argument(
        "--models", nargs="*", default=list(REPLICATES), choices=list(REPLICATES),
        help="models to run now; the others are summarised from their chunks of an earlier run, if any",
    )
    args = parser.parse_args(argv)
    folder = WORK / "quick" if args.quick else WORK
    sampler = dict(draws=100, tune=100, chains=1) if args.quick else SAMPLER
    parts = []
    for model, (r, b) in REPLICATES.items():
        if args.quick:
            r, b = 6, 2
        if args.no_bayes:
            b = 0
        if model in args.models:
            reps = pd.concat(
                [run_chunk(model, J, r, b, sampler, args.resume and not args.quick, folder) for J in SIZES], ignore_index=True
            )
        else:
            reps = None if args.quick else load_chunks(model, folder)
        if reps is not None:
            parts.append(reps)
    reps = pd.concat(parts, ignore_index=True)
    table = coverage.summarise_coverage(reps)
    print(table.to_string(), flush=True)
    if args.quick:
        return
    seconds = reps.groupby(["model", "n_risks"])["seconds"].first().groupby("model").sum().to_dict()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig = coverage.plot_coverage(table)
    fig.savefig(FIGURE, dpi=120)
    write_section("coverage", markdown(table, sampler, seconds))
    print(f"wrote {FIGURE} and the coverage section of benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
