"""Poisson–gamma frequency credibility with exposure (seed 003_74058930f1b144d2.txt lines
193–233; docs/formulas.md §7 cases (a)–(b)).

Claims N_it | λ_i ~ Poisson(λ_i e_it), λ_i ~ Gamma(shape α, rate β). Per unit of exposure
the EPV is E λ = α/β and the VHM is Var λ = α/β², so k = β and Z_i = E_i/(E_i + k),
E_i = Σ_t e_it; the premium (a claim frequency) is Z_i N_i/E_i + (1 − Z_i)·collective,
which with known (α, β) is the posterior mean (α + N_i)/(β + E_i).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TooFewRisksError
from ..portfolio import summarise, validate
from .._arguments import column_arguments
from ._common import CredibilityFit, all_rows, between_unbiased, check_number, flag_zero_within, truncate

__all__ = ["poisson_gamma"]


def poisson_gamma(
    data,
    group: str,
    claims: str,
    exposure: str,
    *,
    alpha: float | None = None,
    beta: float | None = None,
) -> CredibilityFit:
    """Poisson–gamma (Bühlmann–Straub on claim frequencies with Poisson EPV) credibility.

    Without ``alpha``/``beta`` the structure is estimated from the portfolio: frequencies
    f_i = N_i/E_i with weights E_i, collective mean m̂ = ΣN/ΣE, ``within`` = m̂ (the
    Poisson EPV per unit exposure), ``between`` τ̂² = [Σ E_i (f_i − m̂)² − (J − 1) m̂] /
    [E − Σ E_i²/E] (unbiased, truncated at 0 with a flag), k = m̂/τ̂², Z_i = E_i/(E_i + k),
    premium Z_i f_i + (1 − Z_i) X_z with X_z = Σ Z_i f_i/Σ Z_i. Only one row per risk is
    needed: the within variance comes from the Poisson assumption.

    With ``alpha`` and ``beta`` (gamma prior, rate form) the result is the conjugate
    posterior mean (α + N_i)/(β + E_i): collective α/β, between α/β², within α/β, k = β.

    Units (docs/formulas.md §7, "Components and units"; the same names in every arm,
    :data:`bayescred.rating.UNITS`): ``collective`` and ``within`` in claims per unit
    exposure; ``between`` the variance of a risk's frequency, (claims per unit exposure)²;
    ``lam`` = between/collective², the relative variance of the risk effect u (frequency =
    collective·u, E u = 1; unitless: 1/α with a gamma prior), which the empirical-Bayes fit
    and the Bayesian factory estimate directly (NaN without claims). Rating factors are not
    taken here: this estimator sees one frequency per risk.
    """
    if (alpha is None) != (beta is None):
        raise ValueError("give both alpha= and beta= (gamma shape and rate), or neither")
    alpha = check_number(alpha, "alpha", minimum=0.0, strict=True)
    beta = check_number(beta, "beta", minimum=0.0, strict=True)
    column_arguments(group=group, claims=claims, exposure=exposure)
    frame = validate(data, groups=group, counts=claims, positive=exposure, min_groups=1)
    count = summarise(frame, by=group, response=claims, check=False)
    if len(count) < 2:
        raise TooFewRisksError(f"needs at least 2 risks, found {len(count)}", column=group, rows=all_rows(frame, group))
    expo = summarise(frame, by=group, response=exposure, check=False)
    N = (count["mean"] * count["n"]).to_numpy(float)
    E = (expo["mean"] * expo["n"]).to_numpy(float)
    f = N / E
    flagged: list = []
    raw = None
    if alpha is not None:
        m, between, within = alpha / beta, alpha / beta**2, alpha / beta
        z = E / (E + beta)
        collective, method = m, "conjugate prior"
    else:
        within = N.sum() / E.sum()
        if within == 0:  # no claims anywhere: the limiting premium is 0 for every risk
            flag_zero_within(flagged, "within (no claims in the portfolio)")
        raw = between_unbiased(f, E, within)
        between = truncate(raw, "between", flagged)
        if between > 0:
            z = E / (E + within / between)
            collective = float(z @ f / z.sum())
        else:
            z, collective = np.zeros_like(E), within
        method = "unbiased"
    table = pd.DataFrame(
        {"claims": N, "weight": E, "mean": f, "Z": z, "premium": z * f + (1 - z) * collective},
        index=count.index,
    )
    structure = {
        "collective": float(collective),
        "between": float(between),
        "lam": float(between / collective**2) if collective > 0 else np.nan,
        "within": float(within),
        "k": float(within / between) if between > 0 else np.inf,
        "between_raw": raw,
    }
    if alpha is not None:
        structure.update(alpha=float(alpha), beta=float(beta))
    return CredibilityFit(model="Poisson–gamma", method=method, structure=structure, table=table,
                          boundary=bool(flagged), boundary_parameters=flagged)
