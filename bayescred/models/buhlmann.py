"""Bühlmann (unweighted) credibility as a Bayesian model (docs/formulas.md §1; seed
004_07f8365c92996b9b.txt lines 627-1031)."""

from __future__ import annotations

from ._base import records_arguments
from ._gaussian import build


@records_arguments
def buhlmann(data, group: str, response: str, priors=None, likelihood: str = "marginal"):
    """PyMC model of X_jt = m + u_j + e_jt, u_j ~ N(0, tau2), e_jt ~ N(0, sigma2): the
    Bühlmann–Straub model with unit weights (see :func:`buhlmann_straub` for the variables,
    the two likelihoods and the default priors, which are the same with w_jt = 1:
    collective ~ Normal(mean, 10 s), between_sd ~ HalfNormal(2.5 s), within_sd ~
    HalfNormal(2.5 sigma_hat)). Same data arguments as ``bc.credibility.buhlmann``; the
    design need not be balanced. Z_j = T_j/(T_j + k)."""
    return build("buhlmann", data, [group], response, None, priors, likelihood)
