"""Gamma severity credibility, classical arm (docs/formulas.md §12 and §2).

Claim sizes of risk i are gamma with mean μ(Θ_i); the distribution-free credibility estimator
of the mean claim is Bühlmann–Straub on the average claim sizes with the numbers of claims as
weights: Z_i = N_i/(N_i + k), premium Z_i x̄_i + (1 − Z_i) X_z. Under the gamma model the
premium is the exact (conjugate) posterior mean, and the moment estimates below also give the
gamma parameters ν = (μ² + between)/within and α = 2 + μ²/between.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..likelihood.gamma import cells
from ._common import CredibilityFit, check_number, pooled_within
from .buhlmann_straub import fit_from_summary

__all__ = ["gamma_severity"]

_METHODS = ("unbiased", "iterative")


def gamma_severity(data, group: str, severity: str, claims: str | None = None, method: str = "unbiased", *,
                   tol: float = 1e-13) -> CredibilityFit:
    """Gamma severity credibility premiums per risk (the mean claim size of each risk).

    ``data``: one row per claim (``claims=None``) or one row per cell with ``severity`` the
    average claim and ``claims`` the number of claims (≥ 1). The structure is Bühlmann–Straub's
    on the claim sizes with weights = numbers of claims (docs/formulas.md §2; ``method`` as in
    :func:`bayescred.credibility.buhlmann_straub`):

    * ``within`` E Var(X | Θ) per claim, ``between`` Var μ(Θ), ``k`` = within/between,
      ``collective`` the credibility-weighted mean X_z;
    * ``nu`` = (X_z² + between)/within and ``alpha`` = 2 + X_z²/between: the gamma model's
      shape of a claim and of the risk effect that have these moments (docs/formulas.md §12);
      ``alpha`` is infinite when between = 0.

    ``.table``: per risk ``n`` (cells), ``weight`` (claims), ``mean`` x̄_i, ``Z``, ``premium``.
    A between variance estimated ≤ 0 is truncated to 0 and flagged (``.boundary``), as in
    Bühlmann–Straub.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    tol = check_number(tol, "tol", minimum=0.0, strict=True)
    c = cells(data, group, severity, claims)
    stats = pd.DataFrame({"n": c.cells, "weight": c.claims, "mean": c.mean, "within_ss": c.within_ss}, index=c.levels)
    stats.attrs["magnitude"] = c.magnitude
    within = pooled_within(stats, c.frame, group)
    fit = fit_from_summary(stats, within=within, between=None, collective=None, method=method, tol=tol,
                           model="Gamma severity")
    s = fit.structure
    m2, between = s["collective"] ** 2, s["between"]
    s["nu"] = (m2 + between) / s["within"] if s["within"] > 0 else np.inf
    s["alpha"] = 2.0 + m2 / between if between > 0 else np.inf
    return fit
