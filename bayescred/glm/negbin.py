"""Negative binomial GLM with theta estimated, step for step as ``MASS::glm.nb``.

Var(y) = mu + mu^2 / theta. Start from a Poisson fit, estimate theta by Newton's method on
its score (``theta.ml``), then alternate an IRLS fit for beta at the current theta and a
theta update until |L_m0 - L_m| / d1 + |delta theta| / d2 < epsilon (d1 = sqrt(2 max(1,
df.residual)), d2 = 1). The log-likelihood is
sum w [lgamma(theta + y) - lgamma(theta) - lgamma(y + 1) + theta log theta + y log mu
- (theta + y) log(theta + mu)], AIC = -2 loglik + 2 (rank + 1); SE(theta) = 1 / sqrt(info).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from ..errors import ConvergenceWarning
from .families import make_family, negative_binomial
from .fit import fit_arrays
from .irls import irls


def nb_loglik(theta, mu, y, w) -> float:
    """MASS glm.nb's loglik(n, th, mu, y, w)."""
    return float(np.sum(w * (special.gammaln(theta + y) - special.gammaln(theta) - special.gammaln(y + 1)
                             + theta * np.log(theta) + y * np.log(mu + (y == 0)) - (theta + y) * np.log(theta + mu))))


def theta_ml(y, mu, w, limit: int = 25, eps: float = np.finfo(float).eps ** 0.25) -> tuple[float, float]:
    """MASS::theta.ml: Newton iterations on the score of theta; (theta, SE)."""
    n = np.sum(w)

    def score(th):
        return np.sum(w * (special.digamma(th + y) - special.digamma(th) + np.log(th) + 1 - np.log(th + mu)
                           - (y + th) / (mu + th)))

    def info(th):
        return np.sum(w * (-special.polygamma(1, th + y) + special.polygamma(1, th) - 1 / th + 2 / (mu + th)
                           - (y + th) / (mu + th) ** 2))

    t0 = n / np.sum(w * (y / mu - 1) ** 2)
    it, delta, i = 0, 1.0, np.nan
    while (it := it + 1) < limit and abs(delta) > eps:
        t0 = abs(t0)
        i = info(t0)
        delta = score(t0) / i
        t0 = t0 + delta
    if t0 < 0:
        warnings.warn("theta estimate truncated at zero", ConvergenceWarning, stacklevel=3)
        t0 = 0.0
    if it == limit:
        warnings.warn("theta.ml: iteration limit reached", ConvergenceWarning, stacklevel=3)
    return float(t0), float(np.sqrt(1 / i))


def glm_nb(y, X, names, *, weights, offset, theta=None, link="log", information="expected", epsilon=1e-8,
           maxit=25, formula="", transform=None, intercept=None):
    """Fit as glm.nb (theta estimated) or as glm(family = negative.binomial(theta)) when given."""
    common = dict(weights=weights, offset=offset, information=information, epsilon=epsilon, maxit=maxit,
                  formula=formula, transform=transform, intercept=intercept)
    if theta is not None:
        return fit_arrays(y, X, names, negative_binomial(theta, link), **common)
    y = np.asarray(y, float)
    pois = make_family("poisson", link)
    res = irls(X, y, weights, offset, pois, epsilon=epsilon, maxit=maxit)
    mu = res.mu
    th, th_se = theta_ml(y, mu, weights, limit=maxit)
    fam = negative_binomial(th, link)
    d1 = np.sqrt(2 * max(1, np.sum(weights != 0) - res.keep.sum()))
    d2 = delta = 1.0
    lm = nb_loglik(th, mu, y, weights)
    lm0 = lm + 2 * d1
    it = 0
    while (it := it + 1) <= maxit and abs(lm0 - lm) / d1 + abs(delta) / d2 > epsilon:
        fam_fit = fam
        res = irls(X, y, weights, offset, fam, etastart=fam.link.linkfun(mu), epsilon=epsilon, maxit=maxit)
        t0 = th
        th, th_se = theta_ml(y, mu, weights, limit=maxit)
        fam = negative_binomial(th, link)
        mu = res.mu
        delta = t0 - th
        lm0, lm = lm, nb_loglik(th, mu, y, weights)
    if it > maxit:
        warnings.warn("glm.nb: alternation limit reached", ConvergenceWarning, stacklevel=3)
    # as glm.nb, the fit (deviance, weights) is the last IRLS at the theta before the final update
    fit = fit_arrays(y, X, names, fam_fit, res=res, **common)
    fit.theta, fit.theta_se = th, th_se
    fit.loglik = lm
    rank = int(res.keep.sum())
    fit.aic = -2 * lm + 2 * rank + 2
    fit.bic = -2 * lm + np.log(fit.nobs) * (rank + 1)
    return fit
