"""Tweedie GLMs: Var(y) = phi * mu^p, the actuarial pure-premium model (1 < p < 2).

The density for 1 < p < 2 is the compound Poisson–gamma: N ~ Poisson(lambda) claims with
lambda = mu^(2-p) / (phi (2-p)), each Gamma(shape gamma = (2-p)/(p-1), scale
tau = phi (p-1) mu^(p-1)). Dunn & Smyth (2005, Statistics and Computing 15:267) write it as
f(y) = W(y, phi, p) / y * exp[(y theta - kappa) / phi] with theta = mu^(1-p)/(1-p),
kappa = mu^(2-p)/(2-p) and W = sum_j z^j / (j! Gamma(j gamma)),
log z = gamma log y - (1 + gamma) log phi - log(2-p) - gamma log(p-1);
f(0) = exp(-lambda). The series is summed in log space around its largest term
j_max = y^(2-p) / (phi (2-p)) until the terms fall e^-37 below it (their recipe).

``glm_tweedie`` with the power given is R's ``glm(family = statmod::tweedie(p, 0))``, with
the log-likelihood and AIC of ``tweedie::tweedie_AIC`` (phi = deviance / sum(w), log density
times the prior weight, AIC counting phi). With the power not given it is profiled: for each
p the coefficients come from IRLS, phi maximises the likelihood (phi_i = phi / w_i), and p
maximises the profile likelihood (as ``tweedie::tweedie.profile``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, special

from ..errors import BayescredError, BoundaryWarning
from .families import tweedie
from .fit import fit_arrays
from .irls import irls

_DROP = 37.0  # series terms below max * e^-37 are negligible (Dunn & Smyth 2005)
_CELLS = 4_000_000  # rows x series terms evaluated at once


def _series_logw(y: np.ndarray, phi: np.ndarray, p: float) -> np.ndarray:
    """log W(y, phi, p) for y > 0 and 1 < p < 2."""
    g = (2 - p) / (p - 1)
    logz = g * np.log(y) - (1 + g) * np.log(phi) - np.log(2 - p) - g * np.log(p - 1)
    jmax = np.maximum(1.0, np.round(y ** (2 - p) / (phi * (2 - p))))
    half = np.ceil(10 * np.sqrt(jmax / (1 + g)) + 10)
    out = np.empty_like(y)
    while True:
        order = np.argsort(half)
        done = True
        start = 0
        while start < len(y):
            width = int(half[order[min(len(y) - 1, start)]])
            rows = max(1, _CELLS // (2 * width + 1))
            idx = order[start:start + rows]
            width = int(half[idx].max())
            j = jmax[idx, None] + np.arange(-width, width + 1)[None, :]
            valid = j >= 1
            jj = np.where(valid, j, 1.0)
            terms = np.where(valid, jj * logz[idx, None] - special.gammaln(jj + 1) - special.gammaln(jj * g), -np.inf)
            top = terms.max(axis=1)
            edge_hi = terms[:, -1]
            edge_lo = np.where(valid[:, 0], terms[:, 0], -np.inf)
            short = (edge_hi > top - _DROP) | (edge_lo > top - _DROP)
            if short.any():
                half[idx[short]] *= 2
                done = False
            out[idx] = special.logsumexp(terms, axis=1)
            start += len(idx)
        if done:
            return out


def log_density(y, mu, phi, p: float) -> np.ndarray:
    """log f(y; mu, phi, p) of the Tweedie distribution (1 < p < 2 by series; p = 0, 1, 2, 3
    in closed form: normal, over-dispersed Poisson on the y/phi lattice, gamma, inverse Gaussian)."""
    y, mu = np.asarray(y, float), np.asarray(mu, float)
    phi = np.broadcast_to(np.asarray(phi, float), y.shape).astype(float)
    if p == 0:
        return -0.5 * np.log(2 * np.pi * phi) - (y - mu) ** 2 / (2 * phi)
    if p == 1:
        k = y / phi
        return special.xlogy(k, mu / phi) - mu / phi - special.gammaln(k + 1) - np.log(phi)
    if p == 2:
        a = 1 / phi
        return a * np.log(a / mu) + (a - 1) * np.log(y) - a * y / mu - special.gammaln(a)
    if p == 3:
        return -0.5 * np.log(2 * np.pi * phi * y**3) - (y - mu) ** 2 / (2 * phi * y * mu**2)
    if not 1 < p < 2:
        raise BayescredError(f"the Tweedie log-likelihood is implemented for 1 < p < 2 and p in (0, 1, 2, 3), not {p}")
    out = -mu ** (2 - p) / (phi * (2 - p))  # log f(0) = -lambda
    pos = y > 0
    if pos.any():
        yp, mp, fp = y[pos], mu[pos], phi[pos]
        theta = mp ** (1 - p) / (1 - p)
        kappa = mp ** (2 - p) / (2 - p)
        out = out.copy()
        out[pos] = _series_logw(yp, fp, p) - np.log(yp) + (yp * theta - kappa) / fp
    return out


def phi_ml(y, mu, w, p: float) -> float:
    """Maximum-likelihood dispersion for given means (phi_i = phi / w_i)."""
    start = np.sum(w * (y - mu) ** 2 / mu**p) / len(y)

    def nll(lphi):
        return -np.sum(log_density(y, mu, np.exp(lphi) / w, p))

    r = optimize.minimize_scalar(nll, bounds=(np.log(start) - 5, np.log(start) + 5), method="bounded",
                                 options={"xatol": 1e-10})
    return float(np.exp(r.x))


def glm_tweedie(y, X, names, *, weights, offset, var_power=None, link=None, power_range=(1.01, 1.99),
                dispersion=None, information="expected", epsilon=1e-8, maxit=25, formula="", transform=None,
                intercept=None):
    """Tweedie GLM with link mu^link_power (log unless ``link`` is "identity"); see the module docstring."""
    link_power = {None: 0.0, "log": 0.0, "identity": 1.0}.get(link)
    if link_power is None:
        raise BayescredError(f"Tweedie link {link!r} is not 'log' or 'identity'")
    common = dict(weights=weights, offset=offset, dispersion=dispersion, information=information, epsilon=epsilon,
                  maxit=maxit, formula=formula, transform=transform, intercept=intercept)
    y = np.asarray(y, float)
    if var_power is not None:
        fit = fit_arrays(y, X, names, tweedie(var_power, link_power), **common)
        phi = fit.deviance / np.sum(weights)
        fit.loglik = float(np.sum(weights * log_density(y, fit.mu, phi, float(var_power))))
        k = int(fit.coef.notna().sum()) + 1
        fit.aic = -2 * fit.loglik + 2 * k
        fit.bic = -2 * fit.loglik + np.log(fit.nobs) * k
        fit.var_power, fit.tweedie_phi = float(var_power), float(phi)
        return fit
    lo, hi = power_range
    if not 1 < lo < hi < 2:
        raise BayescredError(f"var_power_range {power_range} must lie inside (1, 2)")

    def profile(p):
        res = irls(X, y, weights, offset, tweedie(p, link_power), epsilon=epsilon, maxit=maxit)
        phi = phi_ml(y, res.mu, weights, p)
        return -np.sum(log_density(y, res.mu, phi / weights, p)), res, phi

    r = optimize.minimize_scalar(lambda p: profile(p)[0], bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-6})
    p_hat = float(r.x)
    if min(p_hat - lo, hi - p_hat) < 1e-3:
        warnings.warn(f"the Tweedie power estimate {p_hat:.4f} sits at the edge of var_power_range {power_range}; "
                      "the likelihood may peak outside it", BoundaryWarning, stacklevel=3)
    nll, res, phi = profile(p_hat)
    fit = fit_arrays(y, X, names, tweedie(p_hat, link_power), res=res, **common)
    fit.loglik = -float(nll)
    k = int(fit.coef.notna().sum()) + 2
    fit.aic = -2 * fit.loglik + 2 * k
    fit.bic = -2 * fit.loglik + np.log(fit.nobs) * k
    fit.var_power, fit.tweedie_phi = p_hat, phi
    return fit
