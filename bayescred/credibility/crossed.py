"""Crossed classification credibility (Dannenburg, Kaas & Goovaerts 1996; seed
002_112bee5238c97912.txt eqs 61–62; docs/formulas.md §6).

Model y_ijt = m + a_i + b_j + c_ij + ε_ijt with independent a ~ (0, σ_a²), b ~ (0, σ_b²),
c ~ (0, σ_ab²) and ε ~ (0, σ²/w). Every quantity depends on the data through the K cells'
weights w_c, weighted means ȳ_c and the pooled within-cell sum of squares. With incidence
matrices A (cell → level of a) and B (cell → level of b):

  V_m = σ_a² AA′ + σ_b² BB′ + σ_ab² I + σ² diag(1/w_c),   C = V_m − σ² diag(1/w_c),
  m̂ = (1′V_m⁻¹1)⁻¹ 1′V_m⁻¹ȳ,   cell premium = m̂ + C V_m⁻¹ (ȳ − 1m̂),

i.e. the BLUP of ``y ~ 1 + (1|a) + (1|b) + (1|a:b)`` at the same variance components.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import EmptyCellError, SummaryError, TooFewRisksError
from ..likelihood import gaussian
from ..portfolio import as_list
from ._common import (
    CredibilityFit,
    all_rows,
    check_number,
    check_variance,
    flag_zero_within,
    prepare,
    truncate,
    zero_within,
)

__all__ = ["crossed", "CrossedFit"]

_METHODS = ("reml", "moments")


class CrossedFit(CredibilityFit):
    """Crossed-classification fit: ``.table`` has one row per cell (weight, mean, Z =
    Dannenburg's cell factor w σ_ab²/(w σ_ab² + σ²), premium); ``.effects`` holds the
    predicted main effects of each factor and the interaction."""

    _rows = "cells"


def crossed(
    data,
    factors,
    response: str,
    weight: str | None = None,
    interaction: bool = True,
    *,
    within_ss: float | None = None,
    within_df: float | None = None,
    method: str = "reml",
    between: dict | None = None,
    within: float | None = None,
) -> CrossedFit:
    """Crossed classification credibility for two factors ``factors = [a, b]``.

    Input: raw rows (one per observation, optional ``weight``), or cell summaries — one
    row per cell with the cell mean in ``response``, the cell weight/count in ``weight``,
    plus ``within_ss=`` (pooled Σ w (y − ȳ_cell)²) and ``within_df=`` (its degrees of
    freedom, N − K for raw counts). Every cell of the a × b grid must be present.

    ``within`` σ̂² = within_ss / within_df. The between components ``between`` =
    {a: σ_a², b: σ_b², "a:b": σ_ab²} are estimated by

    * ``method="reml"`` (default): maximum of the restricted likelihood of the cell
      summaries (docs/formulas.md §6), with σ² profiled: σ̂² = (SSW + r′H⁻¹r)/(N − 1) and the
      ratios γ = σ_k²/σ² optimised on [0, ∞) (L-BFGS-B, started at the moment estimates).
      This is what lme4's REML fit of seed 002 computes; it reproduces Dannenburg et al.'s
      Table 2 premiums (seed 002, lines 836–843) to 0.03.
    * ``method="moments"``: Dannenburg's unbiased moment equations — the three weighted
      sums of squares of cell means within levels of a, within levels of b and around the
      grand mean, set equal to their expectations (linear in the components) and solved.
      They are unbiased but not efficient: on the credit-insurance cells they give
      σ_ab² ≈ 34 instead of REML's 14.7, which moves premiums by up to 0.8.

    A component at 0 (REML boundary or negative moment estimate) is flagged
    (``.boundary``, BoundaryWarning). ``interaction=False`` drops σ_ab². ``between=`` and
    ``within=`` fix the components instead of estimating them.
    """
    factors = as_list(factors)
    if len(factors) != 2:
        raise ValueError(f"factors must name two columns, got {factors}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    fa, fb = factors
    within = check_variance(within, "within")
    within_ss = check_number(within_ss, "within_ss", minimum=0.0)
    within_df = check_number(within_df, "within_df", minimum=0.0, integer=True)
    if between is not None:
        if not isinstance(between, dict):
            raise SummaryError(f"between= must be a dict of component name -> variance, got {between!r}", column="between")
        between = {k: check_number(v, f"between[{k}]", minimum=0.0, allow_none=False) for k, v in between.items()}
    summary_input = within_ss is not None or within_df is not None
    if summary_input and (within_ss is None or within_df is None or weight is None):
        raise SummaryError(
            "cell-summary input needs within_ss=, within_df= and the cell weights/counts in weight=",
            column=weight,
        )
    frame, cells = prepare(data, factors, response, weight, min_risks=1)
    location = cells.attrs["location"]
    if summary_input:
        if (cells["n"] > 1).any():
            dup = [c for c in cells.index[cells["n"] > 1]]
            raise SummaryError(f"cell-summary input has several rows for cell(s) {dup}", column=", ".join(factors))
        ssw, dfw = float(within_ss), float(within_df)
    else:
        ssw, dfw = float(cells["within_ss"].sum()), float((cells["n"] - 1).sum())
    la = cells.index.get_level_values(0).unique()
    lb = cells.index.get_level_values(1).unique()
    for name, lev in ((fa, la), (fb, lb)):
        if len(lev) < 2:
            raise TooFewRisksError(f"factor needs at least two levels, found {list(lev)}", column=name, rows=all_rows(frame, factors))
    full = pd.MultiIndex.from_product([la, lb], names=factors)
    missing = full.difference(cells.index)
    if len(missing):
        raise EmptyCellError(
            f"the crossed classification needs every {fa} × {fb} cell; empty: "
            + ", ".join(map(str, missing)),
            column=", ".join(factors), rows=list(missing),
        )
    cells = cells.reindex(full)
    w = cells["weight"].to_numpy(float)
    y = cells["mean"].to_numpy(float)
    I, J = len(la), len(lb)
    names = [fa, fb, f"{fa}:{fb}"]

    if within is None:
        if dfw <= 0:
            raise SummaryError("no within-cell degrees of freedom: give within= or within_ss=/within_df=",
                               column=response, rows=all_rows(frame, factors))
        within = ssw / dfw
        if zero_within(within, cells):
            within = 0.0
    within = float(within)
    flagged: list = []
    if within == 0:
        flag_zero_within(flagged)
    used = method
    if between is not None:
        comps = np.array([float(between.get(n, 0.0)) for n in names])
        comps[2] = comps[2] if interaction else 0.0
        used = "fixed structure"
    else:
        comps = _moments(y, w, I, J, within, interaction)
        if method == "reml" and within == 0:
            used = "moments (REML has no optimum at a zero within variance)"
        elif method == "reml":
            n_total = dfw + I * J  # N = within df + number of cells
            comps, within = _reml(y, w, I, J, ssw, n_total, np.maximum(comps, 0.0) / within, interaction)
        comps = np.array([truncate(v, f"between[{n}]", flagged) if (interaction or i < 2) else 0.0
                          for i, (n, v) in enumerate(zip(names, comps))])

    # the GLS collective and the BLUPs C V_m^-1 (ybar - m) of the shared likelihood
    stats = _grid(y, w, I, J)
    limit = _limiting_within(within, comps, w)
    m = gaussian.crossed_collective(*comps, limit, stats)
    ea, eb, eab = gaussian.crossed_conditional_means(np, m, *comps, limit, stats)
    premium = m + ea[stats["index_a"]] + eb[stats["index_b"]] + eab + location
    effects = {
        fa: pd.Series(ea, index=la, name=fa),
        fb: pd.Series(eb, index=lb, name=fb),
        names[2]: pd.Series(eab, index=full, name=names[2]),
    }
    with np.errstate(invalid="ignore"):
        Z = np.where(w * comps[2] + within > 0, w * comps[2] / (w * comps[2] + within), 0.0)
    table = pd.DataFrame(
        {"n": cells["n"].to_numpy() if not summary_input else w, "weight": w, "mean": y + location,
         "Z": Z, "premium": premium},
        index=full,
    )
    structure = {
        "collective": m + location,
        "between": dict(zip(names, map(float, comps))),
        "within": float(within),
        "k": {n: float(within / c) if c > 0 else np.inf for n, c in zip(names, comps)},
        "within_ss": ssw,
        "within_df": dfw,
    }
    fit = CrossedFit(model="Crossed classification", method=used, structure=structure, table=table,
                     boundary=bool(flagged), boundary_parameters=flagged)
    fit.effects = effects
    return fit


def _grid(y, w, I, J):
    """The cells' statistics of the complete I x J grid (a's levels outer) for the shared
    crossed likelihood."""
    return {"mean": y, "weight": w, "index_a": np.repeat(np.arange(I), J), "index_b": np.tile(np.arange(J), I),
            "size_a": I, "size_b": J}


def _limiting_within(within, comps, w):
    """σ² used in V_m. At the boundary σ² = 0 the premium is the limit σ² → 0+, computed
    at σ² = 1e-10 of the between scale (V_m stays invertible when a component is 0)."""
    if within > 0:
        return within
    scale = comps.sum() * w.min()
    return 1e-10 * scale if scale > 0 else 1.0


def _moments(y, w, I, J, within, interaction):
    """Dannenburg-type unbiased moment estimators of (σ_a², σ_b², σ_ab²).

    Row equation: mean over levels i of a of Σ_j (w_ij/w_i)(ȳ_ij − ȳ_i)² − (J − 1)σ²/w_i
    = (σ_b² + σ_ab²)(1 − Σ_ij (w_ij/w_i)²/I); the column equation likewise for σ_a²; the
    total equation Σ_ij (w_ij/w)(ȳ_ij − ȳ)² − (IJ − 1)σ²/w = σ_a²(1 − Σ(w_i/w)²) +
    σ_b²(1 − Σ(w_j/w)²) + σ_ab²(1 − Σ(w_ij/w)²). Without interaction σ_ab² = 0 and the
    first two equations give σ_b² and σ_a²."""
    W, X = w.reshape(I, J), y.reshape(I, J)
    wi, wj, wt = W.sum(1), W.sum(0), W.sum()
    xi, xj, xt = (W * X).sum(1) / wi, (W * X).sum(0) / wj, (W * X).sum() / wt
    r1 = np.mean((W / wi[:, None] * (X - xi[:, None]) ** 2).sum(1) - within * (J - 1) / wi)
    c1 = 1 - ((W / wi[:, None]) ** 2).sum() / I
    r2 = np.mean((W / wj[None, :] * (X - xj[None, :]) ** 2).sum(0) - within * (I - 1) / wj)
    c2 = 1 - ((W / wj[None, :]) ** 2).sum() / J
    if not interaction:
        return np.array([r2 / c2, r1 / c1, 0.0])
    r3 = (W / wt * (X - xt) ** 2).sum() - within * (I * J - 1) / wt
    coef = np.array([
        [0.0, c1, c1],
        [c2, 0.0, c2],
        [1 - ((wi / wt) ** 2).sum(), 1 - ((wj / wt) ** 2).sum(), 1 - ((W / wt) ** 2).sum()],
    ])
    return np.linalg.solve(coef, [r1, r2, r3])


def _newton_polish(grad, x, steps: int = 5):
    """A few Newton steps on the interior coordinates (Hessian from central differences of
    the exact gradient), each kept only while the gradient shrinks: L-BFGS-B stops at ~1e-8
    relative on these flat surfaces, Newton converges quadratically from there."""
    x = np.array(x, float)
    for _ in range(steps):
        free = x > 0
        if not free.any():
            break
        g = grad(x)[free]
        h = 1e-5 * x[free]
        H = np.empty((free.sum(), free.sum()))
        for i, (k, hk) in enumerate(zip(np.flatnonzero(free), h)):
            up, down = x.copy(), x.copy()
            up[k] += hk
            down[k] -= hk
            H[:, i] = (grad(up)[free] - grad(down)[free]) / (2 * hk)
        H = (H + H.T) / 2
        if np.linalg.eigvalsh(H)[0] <= 0:
            break
        trial = x.copy()
        trial[free] = x[free] - np.linalg.solve(H, g)
        # near the optimum fun is flat below its rounding; the gradient still shrinks
        if np.any(trial < 0) or not np.linalg.norm(grad(trial)[free]) < np.linalg.norm(g):
            break
        x = trial
    return x


def _reml(y, w, I, J, ssw, n_total, start, interaction):
    """REML of the cell summaries with σ² profiled out (docs/formulas.md §6): the shared
    crossed criterion (``likelihood.gaussian.crossed_profiled``) in the ratios γ = σ_k²/σ²
    with its exact gradient (a finite-difference gradient stopped at 1e-6 relative, which a
    shift of the response could move). Returns (σ² γ, σ̂²)."""
    active = [0, 1, 2] if interaction else [0, 1]
    stats = _grid(y, w, I, J)
    # log_w_const: a constant of the rows' weights, which does not move the optimum
    stats.update(within_ss=ssw, within_df=n_total - I * J, log_w_const=0.0)

    def full(g):
        out = np.zeros(3)
        out[active] = g
        return out

    last = {}

    def at(g):  # criterion, sigma2_hat and gradient come together: evaluate once per point
        key = tuple(g)
        if key not in last:
            last.clear()
            last[key] = gaussian.crossed_profiled(full(g), stats)
        return last[key]

    def value(g):
        return at(g)[0]

    def gradient(g):
        return at(g)[2][active]

    from scipy import optimize  # loaded only for the REML path

    x0 = np.maximum(np.asarray(start, float)[active], 1e-3)
    best = None
    for scale in (1.0, 0.1, 10.0):  # a few starts: the surface is flat with few levels
        res = optimize.minimize(value, x0 * scale, jac=gradient, method="L-BFGS-B",
                                bounds=[(0.0, None)] * len(active), options={"ftol": 1e-15, "gtol": 1e-12})
        if best is None or res.fun < best.fun:
            best = res
    g = _newton_polish(gradient, best.x)
    sigma2 = at(g)[1]
    comps = np.zeros(3)
    comps[active] = g * sigma2
    comps[comps < 1e-10 * sigma2] = 0.0
    return comps, sigma2
