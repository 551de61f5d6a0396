"""Zero-truncated Poisson GLM (seed 004 §6.2 and its Appendix C: length of stay, never 0).

P(Y = y) = lambda^y e^-lambda / (y! (1 - e^-lambda)), y = 1, 2, ...; log lambda = x'beta.
The mean is mu = lambda / (1 - e^-lambda) and the variance mu (1 + lambda - mu). Inverting the
mean gives lambda = mu + W0(-mu e^-mu) (Lambert's W, principal branch), so the model is a GLM
in mu with link eta = log(mu + W0(-mu e^-mu)) and variance function mu (1 + lambda(mu) - mu):
R-style IRLS (Fisher scoring, which is Newton's method here: the truncated Poisson is an
exponential family with canonical parameter log lambda) gives the maximum-likelihood fit.
Deviance: 2 sum w [l(y; lambda~) - l(y; lambda)] with the saturated lambda~ = lambda(y)
(l -> 0 for y = 1). Standard errors: the inverse Fisher information at the estimate.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .families import EPS, Family, FamilyError, Link
from .fit import fit_arrays


def rate_from_mean(mu) -> np.ndarray:
    """lambda such that lambda / (1 - e^-lambda) = mu (mu > 1), by Lambert's W."""
    mu = np.asarray(mu, float)
    return mu + np.real(special.lambertw(-mu * np.exp(-mu), 0))


def mean_from_rate(lam) -> np.ndarray:
    lam = np.asarray(lam, float)
    return lam / -np.expm1(-lam)


def _loglik_terms(y, lam):
    """log P(Y = y) for the zero-truncated Poisson."""
    return special.xlogy(y, lam) - lam - np.log(-np.expm1(-lam)) - special.gammaln(y + 1)


def _saturated(y):
    lam = rate_from_mean(np.where(y > 1, y, 2.0))
    return np.where(y > 1, _loglik_terms(y, np.where(y > 1, lam, 1.0)), 0.0)


def _mu_eta(eta):
    lam = np.exp(eta)
    mu = mean_from_rate(lam)
    return np.maximum(mu * (1 + lam - mu), EPS)


def _variance(mu):
    return np.maximum(mu * (1 + rate_from_mean(mu) - mu), EPS)


def _init(y, wt):
    if np.any(y < 1) or np.any(np.abs(y - np.round(y)) > 1e-8):
        raise FamilyError("the zero-truncated Poisson family needs whole-number responses of at least 1")
    return y + 0.1


ZTPOISSON = Family(
    "ztpoisson",
    Link("log(lambda)", lambda mu: np.log(rate_from_mean(mu)), lambda eta: mean_from_rate(np.exp(eta)), _mu_eta),
    _variance,
    lambda y, mu, wt: 2 * wt * (_saturated(y) - _loglik_terms(y, rate_from_mean(mu))),
    lambda y, n, mu, wt, dev: -2 * np.sum(wt * _loglik_terms(y, rate_from_mean(mu))),
    _init,
    validmu=lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 1)),
    scale_free=True,
    label="zero-truncated Poisson",
)


def glm_ztpoisson(y, X, names, **common):
    """Maximum-likelihood zero-truncated Poisson regression (log link on lambda)."""
    return fit_arrays(y, X, names, ZTPOISSON, final_information=True, **common)
