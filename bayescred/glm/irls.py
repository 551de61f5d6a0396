"""Iteratively reweighted least squares, step for step as R's ``glm.fit``.

Start from the family's ``mustart``; at each iteration form the working response
z = eta - offset + (y - mu) / mu'(eta) and working weights w = prior * mu'(eta)^2 / V(mu),
solve the weighted least squares by a Cholesky factor of X'WX (one BLAS call for the
cross-product), halve the step while the deviance is not finite or the mean leaves its
domain, and stop when |dev - dev_old| / (|dev| + 0.1) < epsilon (R's rule, epsilon 1e-8).
As R, the covariance matrix and the dispersion use the working weights of the last
iteration (before its update) and the working residuals at the final mean.

Aliased columns (linearly dependent on earlier ones, R's pivoting rule) are found once on
the weighted design and dropped; their coefficients are reported as NaN (R's NA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ..errors import BayescredError
from .families import Family

_ALIAS_TOL = 1e-11  # squared relative norm of a column's residual on the earlier columns


class GLMFitError(BayescredError, ValueError):
    """IRLS could not find a valid fit (no valid starting values, or the step cannot be corrected)."""


@dataclass
class IRLSResult:
    coef: np.ndarray  # full length, NaN for aliased columns
    keep: np.ndarray  # bool, columns in the fit
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    working_weights: np.ndarray  # w^2 of the last iteration (0 where not informative)
    working_residuals: np.ndarray
    xtwx_inv: np.ndarray  # unscaled covariance of the kept coefficients
    iterations: int
    converged: bool
    boundary: bool


def crossprod(X: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """X' diag(w2) X by one BLAS rank-k update (syrk) of sqrt(w2) X, without copying X's layout."""
    Xs = X * np.sqrt(w2)[:, None]
    if Xs.flags.f_contiguous:
        upper = blas.dsyrk(1.0, Xs, trans=1, lower=0)
    else:
        upper = blas.dsyrk(1.0, np.ascontiguousarray(Xs).T, trans=0, lower=0)
    return np.triu(upper) + np.triu(upper, 1).T


def aliased_columns(A: np.ndarray) -> np.ndarray:
    """Columns kept (True) by a column-order Cholesky of the cross-product A = X'WX that drops a
    column whose residual on the kept earlier columns is negligible (R's limited pivoting in dqrdc2)."""
    p = A.shape[0]
    keep = np.zeros(p, bool)
    L = np.zeros((p, p))  # Cholesky factor of the kept columns, in kept coordinates
    k = 0
    for j in range(p):
        if A[j, j] <= 0:
            continue
        idx = np.flatnonzero(keep)
        lj = linalg.solve_triangular(L[:k, :k], A[idx, j], lower=True) if k else np.zeros(0)
        r = A[j, j] - lj @ lj
        if r > _ALIAS_TOL * A[j, j]:
            L[k, :k] = lj
            L[k, k] = np.sqrt(r)
            k += 1
            keep[j] = True
    return keep


def irls(X: np.ndarray, y: np.ndarray, weights: np.ndarray, offset: np.ndarray, family: Family, *,
         mustart: np.ndarray | None = None, etastart: np.ndarray | None = None,
         epsilon: float = 1e-8, maxit: int = 25) -> IRLSResult:
    """R's glm.fit on (X, y, prior weights, offset): see the module docstring."""
    link = family.link
    n, p = X.shape
    if etastart is not None:
        eta = np.asarray(etastart, float)
    else:
        if mustart is None:
            mustart = family.initialize(y, weights)
        eta = link.linkfun(mustart)
    mu = link.linkinv(eta)
    if not (link.valideta(eta) and family.validmu(mu)):
        raise GLMFitError(f"cannot find valid starting values for the {family.display} family; supply etastart")
    keep = None
    Xk = X
    devold = float(np.sum(family.dev_resids(y, mu, weights)))
    coefold = None
    start = np.zeros(p)
    conv = boundary = False
    w2 = np.zeros(n)
    chol = None
    it = 0
    for it in range(1, maxit + 1):
        m_eta = link.mu_eta(eta)
        var = family.variance(mu)
        good = (weights > 0) & (m_eta != 0)
        if np.any(var[good] == 0) or np.any(np.isnan(var[good])):
            raise GLMFitError(f"the variance function of the {family.display} family is 0 or NaN at iteration {it}")
        if not good.any():
            break
        if good.all():
            w2 = weights * m_eta**2 / var
            z = eta - offset + (y - mu) / m_eta
        else:
            w2 = np.where(good, weights * m_eta**2 / np.where(good, var, 1.0), 0.0)
            z = np.where(good, eta - offset + (y - mu) / np.where(good, m_eta, 1.0), 0.0)
        A = crossprod(Xk, w2)
        if keep is None:  # aliasing is judged once, on the first weighted design (as R's first QR)
            keep = aliased_columns(A) if p else np.zeros(0, bool)
            if not keep.all():
                Xk = np.asarray(X[:, keep], order="F")
                A = A[np.ix_(keep, keep)]
                start = np.zeros(int(keep.sum()))
        rhs = Xk.T @ (w2 * z)
        try:
            chol = linalg.cho_factor(A, lower=False, check_finite=False)
        except linalg.LinAlgError as exc:
            raise GLMFitError(f"the weighted design became singular at iteration {it}") from exc
        start = linalg.cho_solve(chol, rhs, check_finite=False)
        if not np.all(np.isfinite(start)):
            break
        eta = Xk @ start + offset
        mu = link.linkinv(eta)
        dev = float(np.sum(family.dev_resids(y, mu, weights)))
        boundary = False
        if not np.isfinite(dev) or not (link.valideta(eta) and family.validmu(mu)):
            if coefold is None:
                raise GLMFitError(f"no valid set of coefficients found for the {family.display} family; "
                                  "the starting values lead outside the mean's domain")
            for _ in range(maxit):
                start = (start + coefold) / 2
                eta = Xk @ start + offset
                mu = link.linkinv(eta)
                dev = float(np.sum(family.dev_resids(y, mu, weights)))
                if np.isfinite(dev) and link.valideta(eta) and family.validmu(mu):
                    break
            else:
                raise GLMFitError("step halving could not bring the deviance back to a finite value")
            boundary = True
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            break
        devold = dev
        coefold = start
    if keep is None:
        keep = np.ones(p, bool)
    m_eta = link.mu_eta(eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        wres = (y - mu) / m_eta
    inv = linalg.cho_solve(chol, np.eye(Xk.shape[1]), check_finite=False) if chol is not None else np.zeros((0, 0))
    coef = np.full(p, np.nan)
    coef[keep] = start
    return IRLSResult(coef, keep, eta, mu, dev if conv else float(np.sum(family.dev_resids(y, mu, weights))), w2,
                      wres, inv, it, conv, boundary)
