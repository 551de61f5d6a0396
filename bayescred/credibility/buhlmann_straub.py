"""Bühlmann–Straub credibility (seed 004_07f8365c92996b9b.txt eqs 3.14–3.23; docs/formulas.md §2).

Model X_jt = m + Ξ_j + ε_jt, Var Ξ_j = τ² (between, VHM), Var ε_jt = σ²/w_jt (within, EPV).
Premium P_j = Z_j X_j + (1 − Z_j) X_z with Z_j = w_j / (w_j + k), k = σ²/τ² and the
credibility-weighted collective X_z = Σ Z_j X_j / Σ Z_j. This is the BLUP β̂ + û_j of the
LMM ``y ~ 1 + (1 | group)`` with weights, at the same (τ², σ²).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import (
    CredibilityFit,
    between_unbiased,
    bichsel_straub,
    check_number,
    check_variance,
    flag_zero_within,
    pooled_within,
    prepare,
    truncate,
    zero_within,
)

__all__ = ["buhlmann_straub"]

_METHODS = ("unbiased", "iterative")


def buhlmann_straub(
    data,
    group: str,
    response: str,
    weight: str | None = None,
    method: str = "unbiased",
    *,
    between: float | None = None,
    within: float | None = None,
    collective: float | None = None,
    tol: float = 1e-13,
) -> CredibilityFit:
    """Bühlmann–Straub credibility premiums per risk.

    Structure parameters (actuar ``cm(~group, ..., method=)`` names in brackets):

    * ``within`` σ̂² = Σ_jt w_jt (X_jt − X_j)² / Σ_j (T_j − 1)  [``s2``];
    * ``between`` τ̂²: ``method="unbiased"`` (eq. 3.23, actuar's default; the same as
      Ohlsson's in one level) or ``"iterative"`` (Bichsel–Straub pseudo-estimator
      τ² ← Σ Z_j (X_j − X_z)²/(J − 1), started at the unbiased value)  [``a``];
    * a negative τ̂² is truncated to 0 with a :class:`BoundaryWarning`: then Z_j = 0 and
      the collective is the weighted mean X_ww (as actuar);
    * ``collective`` X_z [``means$portfolio``], ``k`` = σ²/τ², ``weighted_mean`` X_ww
      (eq. 3.21), ``between_raw`` (the unbiased value before truncation), ``icc``.

    ``between=``, ``within=`` fix the structure parameters instead of estimating them;
    ``collective=`` gives a known collective premium m (inhomogeneous credibility,
    P_j = Z_j X_j + (1 − Z_j) m). Weights must be strictly positive (a zero weight is refused
    with :class:`~bayescred.errors.ZeroWeightError`, as in every arm).

    Boundaries (``.boundary``, BoundaryWarning): τ̂² ≤ 0 gives Z = 0 (complete pooling);
    σ̂² = 0 (every risk's observations equal) gives Z = 1 (full credibility) where τ̂² > 0.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    between, within = check_variance(between, "between"), check_variance(within, "within")
    collective = check_number(collective, "collective")
    tol = check_number(tol, "tol", minimum=0.0, strict=True)
    frame, stats = prepare(data, group, response, weight)
    fixed_within = within is not None
    if within is None:
        within = pooled_within(stats, frame, group)
    return fit_from_summary(
        stats, within=within, between=between, collective=collective, method=method, tol=tol,
        model="Bühlmann–Straub", fixed_within=fixed_within,
    )


def fit_from_summary(stats, *, within, between, collective, method, tol, model, fixed_within=False) -> CredibilityFit:
    """The Bühlmann–Straub fit from per-risk (weight, mean) and the within variance.

    ``stats`` holds means centred at ``stats.attrs["location"]`` (see ``prepare``); the
    location is added back to every mean and premium."""
    c = float(stats.attrs.get("location", 0.0))
    w = stats["weight"].to_numpy(float)
    x = stats["mean"].to_numpy(float)
    flagged: list = []
    raw = None
    if not fixed_within and zero_within(within, stats):
        within = 0.0
        flag_zero_within(flagged)
    if between is None:
        raw = between_unbiased(x, w, within)
        between = truncate(raw, "between", flagged)
        if method == "iterative" and between > 0:
            between = bichsel_straub(x, w, within, start=between, tol=tol)
            between = truncate(between, "between", flagged)
    between = float(between)
    if between > 0:
        z = w / (w + within / between)
        fitted_collective = float(z @ x / z.sum())
    else:
        z = np.zeros_like(w)
        fitted_collective = float(w @ x / w.sum())
    m = fitted_collective if collective is None else float(collective) - c
    table = pd.DataFrame(
        {"n": stats["n"].to_numpy(), "weight": w, "mean": x + c, "Z": z, "premium": z * x + (1 - z) * m + c},
        index=stats.index,
    )
    structure = {
        "collective": m + c,
        "between": between,
        "within": float(within),
        "k": float(within / between) if between > 0 else np.inf,
        "between_raw": raw,
        "weighted_mean": float(w @ x / w.sum()) + c,
        "icc": between / (between + within) if between + within > 0 else 0.0,
    }
    return CredibilityFit(
        model=model, method=method if raw is not None else "fixed structure", structure=structure,
        table=table, boundary=bool(flagged), boundary_parameters=flagged,
    )
