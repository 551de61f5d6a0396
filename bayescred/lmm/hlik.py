"""Poisson–gamma HGLM by h-likelihood, as R's dhglm 2.0 fits it (Lee & Nelder).

Model (the same as :mod:`.poisson_gamma`)::

    y_ik | u_i ~ Poisson(mu_ik u_i),  log mu_ik = x_ik' beta + offset_ik,
    u_i ~ Gamma(mean 1, Var lam),  v_i = log u_i.

The h-likelihood is h = sum_ik log f(y_ik | v) + sum_i log f(v_i) with
log f(v) = (v - u)/lam - log(lam)/lam - log Gamma(1/lam). dhglm (``dhglmfit`` with the
defaults ``RespDist = "poisson"``, ``RandDist = "gamma"``, constant dispersion, ``REML =
TRUE``, ``dord = 1``) alternates three steps; this module repeats them step for step:

1. five mean-model sweeps, each one Newton step for v (dh/dv = Z'(y - mu) + (1 - u)/lam,
   -d2h/dv2 = Z'WZ + diag(u/lam), W = diag(mu)) and one GLS step for beta on the working
   response z = eta + (y - mu)/mu - offset with Sigma = Z diag(lam/u) Z' + W^-1;
2. lam from the adjusted profile h-likelihood p_{beta,v}(h) (Lee & Nelder's REML-type
   step): a gamma GLM, log link, on the deviance components
   d_i = 2(-log u_i - (1 - u_i)) + 2 lam/q with weights (1 - h_i - a_i)/2, i.e.
   lam = sum_i d_i / sum_i (1 - h_i - a_i). h_i is the leverage of the i-th pseudo-observation
   of v in the augmented GLM [[X, Z], [0, I]] with weights (W, u/lam), a_i dhglm's correction
   for the dependence of W on lam through v, and 2 lam/q (q = number of risks) the extra term
   dhglm adds for a gamma random effect — except, by a branch hard-coded in dhglm 2.0, when
   the data have exactly 32 rows (``lambda_correction=False`` reproduces that branch);
3. stop when q |Delta lam| <= ``tol`` (dhglm: its ``convergence = 1e-6`` applied to
   sum_i |Delta lam_i| / 10000, i.e. ``tol = 0.01``, after at least two rounds). This early
   stop moves the printed estimates in the third decimal; ``tol = 1e-10`` iterates to the
   fixed point of steps 1-2.

Reported as dhglm prints them: beta with SE sqrt(diag((X' Sigma^-1 X)^-1)); log lam with SE
1/sqrt(sum_i (1 - h_i - a_i)/2) (the gamma GLM's SE at dispersion 1); -2ML = -2 p_v(h) =
-2h + log det(-d2h/dv2 / 2 pi); -2RL = -2 p_{beta,v}(h) (the same with the joint Hessian
of (beta, v)); cAIC = -2 sum log f(y | v) + 2 pd with pd = tr(AA^-1 BB); the scaled deviance
and df = n - pd. dhglm's log f(v) carries a constant +0.0025 per risk, kept here so that -2ML,
-2RL match its output.

Reproduces seed 004_07f8365c92996b9b.txt's dhglm output to every printed digit (train,
fabric, medpar and the Swedish bus data; tests/test_hlik.py). Exact marginal ML
(:func:`~bayescred.lmm.poisson_gamma.poisson_gamma_eb`, the default) is a different
estimator: see :data:`WHY_THEY_DIFFER`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["HLikResult", "fit_hlik", "WHY_THEY_DIFFER"]

LAM_MIN = 1e-10  # below this the lam step has reached the Poisson boundary lam = 0

WHY_THEY_DIFFER = (
    "h-likelihood (dhglm) estimates lam from the adjusted profile h-likelihood p_beta,v(h): a first-order "
    "Laplace approximation to the marginal likelihood with a REML-type adjustment for estimating beta, plus "
    "dhglm's extra lam/q term (which alone adds about 2 lam / sum(1 - h_i - a_i) to lam: the third column "
    "leaves it out and iterates to the fixed point), stopped at dhglm's loose convergence rule. Exact ML "
    "integrates u out exactly (negative multinomial) and makes no REML adjustment. The Laplace error grows "
    "as risks have fewer claims, the REML adjustment and the lam/q term as risks are few, so the gap can "
    "go either way."
)


@dataclass(frozen=True)
class HLikResult:
    """Estimates as dhglm prints them (module docstring)."""

    beta: np.ndarray
    beta_vcov: np.ndarray  # (X' Sigma^-1 X)^-1 at the last sweep
    lam: float
    log_lam_se: float
    u: np.ndarray  # u_i = exp(v_i) at the last sweep
    ml: float  # -2 p_v(h)
    rl: float  # -2 p_beta,v(h)
    caic: float
    scaled_deviance: float
    df: float
    iterations: int
    converged: bool
    boundary: bool = False  # lam reached 0: no extra-Poisson variation (summaries are NaN)

    @property
    def beta_se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.beta_vcov))


def _group_sum(codes: np.ndarray, q: int, values: np.ndarray) -> np.ndarray:
    """Z' values for the indicator matrix Z of ``codes`` (rows of ``values`` summed by group)."""
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=q)
    out = np.zeros((q, values.shape[1]))
    np.add.at(out, codes, values)
    return out


def _poisson_start(X, off, y, iters: int = 50) -> np.ndarray:
    """Poisson GLM (dhglm's starting value) by IRLS."""
    mu = y + 0.1
    eta = np.log(mu)
    beta = np.zeros(X.shape[1])
    for _ in range(iters):
        z = eta - off + (y - mu) / mu
        new = np.linalg.solve((X.T * mu) @ X, (X.T * mu) @ z)
        done = np.max(np.abs(new - beta)) < 1e-12
        beta = new
        eta = X @ beta + off
        mu = np.exp(eta)
        if done:
            break
    return beta


def fit_hlik(
    X: np.ndarray,
    off: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    q: int,
    *,
    lambda_correction: bool = True,
    tol: float = 0.01,
    maxiter: int = 200,
) -> HLikResult:
    """dhglm's h-likelihood fit of the Poisson–gamma random-intercept model (module docstring).

    X (n, p) fixed-effect design, ``off`` log offset, ``y`` counts, ``codes`` the risk of each
    row in 0..q-1. Block formulas throughout (Z'WZ is diagonal), so the cost is O(n p^2 + q p^2).
    """
    n, p = X.shape
    beta = _poisson_start(X, off, y)
    v = np.zeros(q)
    lam = old_lam = 0.5
    rounds, change = 0, math.inf
    while rounds < maxiter and (rounds < 2 or change > tol):
        rounds += 1
        for _ in range(5):  # dhglm's Iter_mean
            eta = off + X @ beta + v[codes]
            mu = np.exp(eta)
            z1 = eta - off + (y - mu) / mu
            u_old = np.exp(v)
            w2 = u_old / lam
            m = _group_sum(codes, q, mu)  # diag(Z'WZ)
            dgn = m + w2  # -d2h/dv2 (diagonal)
            v = v + (_group_sum(codes, q, y - mu) + (1 - u_old) / lam) / dgn
            # GLS step: X' Sigma^-1 X by Woodbury, Sigma^-1 = W - W Z (Z'WZ + W2)^-1 Z'W
            C = _group_sum(codes, q, mu[:, None] * X)  # Z'WX
            A = (X.T * mu) @ X
            xsx = A - (C.T / dgn) @ C
            xsz = X.T @ (mu * z1) - (C.T / dgn) @ _group_sum(codes, q, mu * z1)
            cov_beta = np.linalg.inv(xsx)
            beta = cov_beta @ xsz
        u = np.exp(v)
        # leverages of the v pseudo-observations in [[X, Z], [0, I]] with weights (W, W2)
        S_inv = np.linalg.inv(A - (C.T / dgn) @ C)  # K2 beta block: the Schur complement
        K_zx = -(C / dgn[:, None]) @ S_inv  # K2 v-beta block
        K_zz = 1 / dgn + np.einsum("ij,ij->i", K_zx, C) * (-1 / dgn)  # diag of the K2 v block
        lev = w2 * K_zz
        # dhglm's a_i: dW/dlam through v, dv/dlam = (Z'WZ + W2)^-1 W2 v
        dW = mu * (w2 * v / dgn)[codes]
        H_xx = (X.T * dW) @ X
        H_zx = _group_sum(codes, q, dW[:, None] * X)
        H_zz = _group_sum(codes, q, dW)
        diag_beta = np.einsum("kl,lk->k", S_inv, H_xx) + np.einsum("lk,lk->k", K_zx, H_zx)
        diag_v = np.einsum("jl,jl->j", K_zx, H_zx) + K_zz * H_zz
        a = -diag_v - diag_beta.sum() / q
        dev = 2 * (-np.log(u) - (1 - u) + (lam / q if lambda_correction else 0.0))
        denom = 1 - np.minimum(lev, 0.99) - a
        resp = dev / denom
        resp = np.where(resp < 0, 1e-4, resp)
        weight = np.abs(denom) / 2
        lam = float(np.sum(weight * resp) / np.sum(weight))
        change = q * abs(lam - old_lam)
        old_lam = lam
        if lam < LAM_MIN:
            lam, change = 0.0, 0.0
            break
    converged = change <= tol
    if lam == 0.0:
        nan = math.nan
        return HLikResult(beta, cov_beta, 0.0, nan, np.ones(q), nan, nan, nan, nan, nan, rounds, True, boundary=True)
    # likelihood summaries at the last sweep, as dhglm evaluates them
    h_y = float(np.sum(y * np.log(mu) - mu - special.gammaln(y + 1)))
    h_v = float(np.sum(np.log(u) / lam - u / lam - math.log(lam) / lam - special.gammaln(1 / lam) + 0.0025))
    logdet_v = float(np.sum(np.log(dgn / (2 * np.pi))))
    _, logdet_s = np.linalg.slogdet((A - (C.T / dgn) @ C) / (2 * np.pi))
    pd_ = p + q - float(np.sum(w2 * K_zz))  # tr(AA^-1 BB), BB = AA - diag(0, W2)
    with np.errstate(divide="ignore", invalid="ignore"):
        yy = y + 1e-5
        dev_y = np.where(y == 0, 2 * mu, 2 * (yy * np.log(yy / mu) - (yy - mu)))
    return HLikResult(
        beta=beta,
        beta_vcov=cov_beta,
        lam=lam,
        log_lam_se=float(1 / math.sqrt(np.sum(weight))),
        u=u,
        ml=-2 * h_y - 2 * h_v + logdet_v,
        rl=-2 * h_y - 2 * h_v + logdet_v + float(logdet_s),
        caic=-2 * h_y + 2 * pd_,
        scaled_deviance=float(dev_y.sum()),
        df=n - pd_,
        iterations=rounds,
        converged=bool(converged),
    )
