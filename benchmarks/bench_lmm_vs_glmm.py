"""Fit time of bc.lmm against the PyPI package ``glmm`` (a Rust LMM/GLMM engine), REML.

The designs are those of bench_lmm.py's ``perf`` section (imported from it, so the two stay
in step): lme4's classic small fits (data sets written by R, read as text factors), InstEval
(73,421 rows) with both formulas, and the Jewell hierarchical portfolio (6,000 risks in 50
sectors, precision weights). Both engines get the same pandas DataFrame and formula, and fit
by REML in the same process, alternating fit by fit; each time is the best of
``PERF_REPEATS`` (7) for the small fits and ``BIG_REPEATS`` (3) for InstEval and Jewell, fit
only (data generation and reading excluded; one warm-up fit per engine first).

glmm is timed twice: as ``glmm.fit`` runs by default (Hessian standard errors and lmerTest's
Satterthwaite degrees of freedom computed with the fit) and lean (``wald_se="rx"``,
``satterthwaite=False``, ``anova_test="Wald"``), which is closer to what ``bc.lmm`` computes
at fit time (its standard errors and tables are built on first use).

Criteria: bc.lmm's ``criterion`` against glmm's ``-2 * loglik`` (lme4's REML criterion; glmm's
``deviance`` is that minus a data-independent constant). Variance components: the sorted
entries of every random-effect covariance matrix plus the residual variance on both sides,
largest absolute difference relative to the largest entry.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lmm_vs_glmm.py   # section "lmm_glmm"

Needs Rscript with lme4 and nlme (the data sets) and ``pip install glmm`` (the ``bench`` extra).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import glmm  # noqa: E402

import bayescred as bc  # noqa: E402
from _results import write_section  # noqa: E402
from bench_lmm import BIG, CLASSIC, PERF_REPEATS, _r_datasets, jewell  # noqa: E402

BIG_REPEATS = 3
LEAN = {"wald_se": "rx", "satterthwaite": False, "anova_test": "Wald"}


def _bc_components(fit) -> np.ndarray:
    vals = [c[np.tril_indices(c.shape[0])] for c in fit.covariances]
    return np.sort(np.concatenate([*vals, [fit.sigma2]]))


def _glmm_components(fit) -> np.ndarray:
    return np.sort(np.concatenate([*(np.asarray(v, float) for v in fit.varcorr), [fit.dispersion]]))


def _glmm(form, data, weights, lean):
    kw = dict(LEAN) if lean else {}
    if weights is not None:
        kw["weights"] = weights
    return glmm.fit(data, form, **kw)


def _quiet(fn):
    """fn() with warnings silenced on both sides (bc.lmm's boundary warning on Dyestuff2; glmm's
    diagnostics are read off ``fit.warnings``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def compare(ds, form, data, weighted, repeats):
    """Best-of-``repeats`` of bc.lmm, glmm (default) and glmm (lean), alternating; criteria."""
    bc_kw = {"weights": "w"} if weighted else {}
    w = data["w"].to_numpy() if weighted else None
    try:
        _quiet(lambda: _glmm(form, data, w, lean=False))
    except Exception as e:  # noqa: BLE001 -- a design glmm refuses is a result, not a failure
        return {"data": ds, "formula": form, "error": f"{type(e).__name__}: {e}"}
    best = {"bc": np.inf, "glmm": np.inf, "lean": np.inf}
    fits = {}
    for _ in range(repeats):
        for side, fn in (("bc", lambda: bc.lmm(form, data, **bc_kw)),
                         ("glmm", lambda: _glmm(form, data, w, lean=False)),
                         ("lean", lambda: _glmm(form, data, w, lean=True))):
            t = time.perf_counter()
            fits[side] = _quiet(fn)
            best[side] = min(best[side], time.perf_counter() - t)
    f, g, gl = fits["bc"], fits["glmm"], fits["lean"]
    crit_g = -2 * g.loglik
    a, b = _bc_components(f), _glmm_components(g)
    vc = float(np.max(np.abs(a - b)) / np.max(np.abs(b))) if a.shape == b.shape else np.nan
    notes = {x["kind"] for x in g.warnings}
    if not g.converged:
        notes.add("not converged")
    if g.singular:
        notes.add("singular")
    notes = sorted(notes)
    return {"data": ds, "formula": form, "t_bc": best["bc"], "t_glmm": best["glmm"], "t_lean": best["lean"],
            "crit_bc": f.criterion, "crit_glmm": crit_g, "crit_lean": -2 * gl.loglik,
            "rel": (f.criterion - crit_g) / abs(crit_g), "vc": vc, "notes": ", ".join(notes) or "—",
            "evals": g.n_eval}


def _code(form):
    return "`" + form.replace("|", "\\|") + "`"  # a pipe inside a table cell, even in a code span, is escaped


def _ms(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _crit_diff(r) -> str:
    d = r["crit_bc"] - r["crit_glmm"]
    if abs(r["rel"]) <= 1e-6:
        return f"{r['rel']:+.1e} (agree)"
    lower = "bc.lmm" if d < 0 else "glmm"
    return f"{r['rel']:+.1e}: **{lower} lower by {abs(d):.3g}**"


def main():
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        data = _r_datasets(Path(tmp_name))
    data["jewell"] = jewell()
    jobs = [(ds, form, False, PERF_REPEATS) for ds, form in CLASSIC]
    jobs += [(ds, form, weighted, BIG_REPEATS) for ds, form, weighted in BIG]
    # warm-up: the REML engine's modules load on first use (bc), the native library's first call (glmm)
    bc.lmm("Yield ~ 1 + (1|Batch)", data["Dyestuff"])
    _quiet(lambda: _glmm("Yield ~ 1 + (1|Batch)", data["Dyestuff"], None, lean=False))
    rows, refused = [], []
    for ds, form, weighted, repeats in jobs:
        r = compare(ds, form, data[ds], weighted, repeats)
        print(r, flush=True)
        (refused if "error" in r else rows).append(r)
    load1 = os.getloadavg()[0]
    table = ["| data | formula | reps | bc.lmm | glmm | bc.lmm / glmm | glmm lean | bc.lmm / glmm lean | "
             "REML crit. bc.lmm | REML crit. glmm | (bc − glmm) / glmm | var. comp. max rel. diff | glmm notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reps = BIG_REPEATS if (r["data"], r["formula"]) in {(d, f) for d, f, _ in BIG} else PERF_REPEATS
        table.append(f"| {r['data']} | {_code(r['formula'])} | {reps} | {_ms(r['t_bc'])} | {_ms(r['t_glmm'])} | "
                     f"{r['t_bc'] / r['t_glmm']:.2f} | {_ms(r['t_lean'])} | {r['t_bc'] / r['t_lean']:.2f} | "
                     f"{r['crit_bc']:.6f} | {r['crit_glmm']:.6f} | {_crit_diff(r)} | {r['vc']:.1e} | {r['notes']} |")
    ratios = np.array([r["t_bc"] / r["t_glmm"] for r in rows])
    lean = np.array([r["t_bc"] / r["t_lean"] for r in rows])
    small = np.array([(r["data"], r["formula"]) in set(CLASSIC) for r in rows])
    lean_gap = max(abs(r["crit_lean"] - r["crit_glmm"]) / abs(r["crit_glmm"]) for r in rows)
    geo = lambda x: float(np.exp(np.mean(np.log(x))))  # noqa: E731
    text = [
        f"bc.lmm against glmm {version('glmm')} (PyPI; Rust engine), REML, same process, same pandas "
        f"DataFrame and formula, fits alternating; best of {PERF_REPEATS} (classic fits) or {BIG_REPEATS} "
        "(InstEval, Jewell), fit only. \"glmm\": `glmm.fit` as it runs by default (Hessian standard errors "
        "and Satterthwaite df computed with the fit); \"glmm lean\": `wald_se=\"rx\", satterthwaite=False, "
        "anova_test=\"Wald\"`. REML criterion of glmm: `-2 * loglik` (lme4's scale); the lean fit's "
        f"criterion differs from the default fit's by at most {lean_gap:.1e} (relative). "
        f"Load average of the shared 2-core machine: {load0:.1f} at the start, {load1:.1f} at the end "
        "(seconds are inflated by other jobs; ratios are what compares).",
        "",
        f"Geometric mean ratio bc.lmm / glmm: classic fits {geo(ratios[small]):.2f} "
        f"(against lean {geo(lean[small]):.2f}); large designs "
        + ", ".join(f"{r['data']} {r['t_bc'] / r['t_glmm']:.2f}" for r, s in zip(rows, small) if not s) + ".",
        "",
        *table,
        "",
        "Designs of bench_lmm.py perf that glmm refuses:" if refused else "glmm fits every design of "
        "bench_lmm.py perf.",
        *(f"- {r['data']} `{r['formula']}`: {r['error']}" for r in refused),
        "",
        "Command: `PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_lmm_vs_glmm.py`.",
    ]
    write_section("lmm_glmm", "## Linear mixed models against glmm (bench_lmm_vs_glmm.py)\n\n" + "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
