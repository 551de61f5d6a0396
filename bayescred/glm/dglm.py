"""Double GLM (Smyth 1989; R's ``dglm``): a gaussian mean model and a log-linear model for
the dispersion, fitted by alternation (seed 004 ch. 5, the diabetes joint GLM).

Mean: y_i ~ N(mu_i, phi_i / w_i), mu = X beta, fitted by weighted least squares with
weights w_i / phi_i. Dispersion: log phi = Z gamma, a gamma GLM (log link, dispersion fixed
at 2, since d_i = w_i (y_i - mu_i)^2 ~ phi_i chi^2_1) on the unit deviances. With
``method="reml"`` (dglm's default) the response is d_i / (1 - h_i) with prior weights
1 - h_i, h the leverages of the mean fit; ``"ml"`` uses d_i with weights 1. The two steps
alternate until -2 log-likelihood changes by less than 1e-12 relative.
Standard errors: (X' diag(w/phi) X)^-1 for beta; 2 (Z' diag(prior) Z)^-1 for gamma.
The mean model's residuals are standardised by phi_i (its prior weights are w_i / phi_i).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import special

from ..errors import BayescredError, ConvergenceWarning
from .families import make_family
from .fit import fit_arrays
from .irls import irls


def _m2loglik(y, mu, phi, w):
    var = phi / w
    return float(np.sum(np.log(2 * np.pi * var) + (y - mu) ** 2 / var))


def double_glm(y, X, names, Z, znames, family, *, weights, offset, method="reml", information="expected",
               epsilon=1e-8, maxit=25, formula="", transform=None, intercept=None, max_outer=200, tol=1e-12):
    """Fit the mean and dispersion models jointly; returns the mean model's GLMFit with the
    dispersion model table in ``dispersion_model`` and ``phi`` per row in ``extra``."""
    if method not in ("reml", "ml"):
        raise BayescredError(f"dispersion_method {method!r} is not 'reml' or 'ml'")
    y = np.asarray(y, float)
    n = len(y)
    gamma_log = make_family("Gamma", "log")
    phi = np.full(n, np.var(y))
    old = np.inf
    disp = None
    for _ in range(max_outer):
        mean = irls(X, y, weights / phi, offset, family, epsilon=epsilon, maxit=maxit)
        Xk = X[:, mean.keep]
        Xw = Xk * np.sqrt(weights / phi)[:, None]
        h = np.einsum("ij,jk,ik->i", Xw, mean.xtwx_inv, Xw)
        d = weights * (y - mean.mu) ** 2
        dresp, dw = (d / (1 - h), 1 - h) if method == "reml" else (d, np.ones(n))
        # the dispersion fit is iterated tighter than a user's GLM: its error feeds the next mean step
        disp = irls(Z, np.maximum(dresp, 1e-300), dw, np.zeros(n), gamma_log, epsilon=1e-12, maxit=100,
                    etastart=None if disp is None else disp.eta)
        phi = disp.mu
        mean = irls(X, y, weights / phi, offset, family, epsilon=epsilon, maxit=maxit)
        cur = _m2loglik(y, mean.mu, phi, weights)
        if abs(cur - old) <= tol * abs(cur):
            break
        old = cur
    else:
        warnings.warn("double GLM: the alternation did not converge", ConvergenceWarning, stacklevel=3)
    fit = fit_arrays(y, X, names, family, weights=weights / phi, offset=offset, dispersion=1.0,
                     information=information, epsilon=epsilon, maxit=maxit, formula=formula, transform=transform,
                     intercept=intercept, res=mean)
    gam = disp.coef[disp.keep]
    gse = np.sqrt(np.diag(2 * disp.xtwx_inv))
    tval = gam / gse
    zkept = [nm for nm, k in zip(znames, disp.keep) if k]
    fit.dispersion_model = pd.DataFrame({"Estimate": gam, "Std. Error": gse, "z value": tval,
                                         "Pr(>|z|)": 2 * special.ndtr(-np.abs(tval))}, index=zkept)
    fit.loglik = -cur / 2
    k = int(mean.keep.sum() + disp.keep.sum())
    fit.aic = cur + 2 * k
    fit.bic = cur + np.log(n) * k
    fit.extra = {"m2loglik": cur}
    fit.phi = phi
    return fit
