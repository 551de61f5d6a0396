"""Balanced Bühlmann credibility (seed 004_07f8365c92996b9b.txt lines 627–1031; docs/formulas.md §1).

Model X_jt = m + Ξ_j + ε_jt, j ≤ J risks, t ≤ T periods (the same T for every risk).
σ̂² = MSW, τ̂² = (MSB − MSW)/T (truncated at 0), Z = T/(T + σ̂²/τ̂²),
premium P_j = Z X̄_j + (1 − Z) X̄.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnbalancedError
from ._common import CredibilityFit, all_rows, check_number, check_variance, prepare, require_periods, zero_within
from .buhlmann_straub import fit_from_summary

__all__ = ["buhlmann"]


def buhlmann(
    data,
    group: str,
    response: str,
    *,
    between: float | None = None,
    within: float | None = None,
    collective: float | None = None,
) -> CredibilityFit:
    """Balanced Bühlmann credibility (every risk observed for the same T ≥ 2 periods).

    Returns a fit whose ``.structure`` holds ``collective`` (X̄), ``between`` (τ̂²,
    VHM), ``within`` (σ̂², EPV), ``k``, ``between_raw`` (before truncation) and ``icc``,
    and whose ``.anova`` holds the one-way ANOVA (SSB, MSB, SSW, MSW, F, p_value: the
    homogeneity test F = MSB/MSW ~ F(J − 1, J(T − 1))). ``between=``, ``within=``,
    ``collective=`` fix those parameters. Unequal numbers of periods raise
    :class:`UnbalancedError`; use :func:`buhlmann_straub` for those. All-equal responses
    within every risk give σ̂² = 0 (flagged, full credibility; F = inf, or NaN when the risks
    agree too).
    """
    between, within = check_variance(between, "between"), check_variance(within, "within")
    collective = check_number(collective, "collective")
    frame, stats = prepare(data, group, response, None)
    require_periods(frame, group, stats, 2, "the within variance needs two periods in each risk")
    if stats["n"].nunique() > 1:
        counts = ", ".join(f"{k}: {v}" for k, v in stats["n"].items())
        raise UnbalancedError(
            f"balanced Bühlmann needs the same number of periods in every risk ({counts}); "
            "use buhlmann_straub", column=group, rows=all_rows(frame, group),
        )
    J, T = len(stats), int(stats["n"].iloc[0])
    ssw = float(stats["within_ss"].sum())
    grand = float(stats["mean"].mean())
    ssb = float(T * ((stats["mean"] - grand) ** 2).sum())
    msb, msw = ssb / (J - 1), ssw / (J * (T - 1))
    fit = fit_from_summary(
        stats, within=msw if within is None else within, between=between, collective=collective,
        method="unbiased", tol=0.0, model="Bühlmann", fixed_within=within is not None,
    )
    from scipy.special import fdtrc  # F survival function; scipy.stats would cost ~0.5 s of import

    if not zero_within(msw, stats):
        F = msb / msw
    else:  # no within-risk variation: F is infinite (NaN when the risk means agree too)
        F = np.inf if msb > 0 else np.nan
    fit.anova = {
        "SSB": ssb, "MSB": msb, "df_between": J - 1,
        "SSW": ssw, "MSW": msw, "df_within": J * (T - 1),
        "F": F, "p_value": float(fdtrc(J - 1, J * (T - 1), F)) if np.isfinite(F) else (0.0 if F > 0 else np.nan),
    }
    return fit
