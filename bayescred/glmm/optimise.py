"""glmer's two optimisation stages over the Laplace (or AGQ) deviance of ``pirls``.

Stage 1 (lme4's nAGQ = 0): minimise d(θ) with β and u both from PIRLS.
Stage 2 (nAGQ ≥ 1, lme4's default): minimise d(θ, β) with u from PIRLS, from stage 1's answer.

Optimiser: scipy's bounded L-BFGS-B (T_ii ≥ 0) with central-difference gradients — the
deviance is smooth and PIRLS converges to 1e-10, so differences are accurate, and L-BFGS-B
needs far fewer evaluations than glmer's derivative-free bobyqa / Nelder–Mead; no extra
dependency. Then Newton steps with a central-difference Hessian on the free components; the
Hessian at the optimum gives the fixed-effects covariance as glmer does (lme4 ``vcov.merMod``
with ``use.hessian``: the β block of 2H⁻¹).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ..errors import ConvergenceWarning
from .pirls import PIRLSError, RandomEffects, Response, agq_deviance, pirls

_FAIL = (PIRLSError, np.linalg.LinAlgError, FloatingPointError, ValueError)


@dataclass
class Problem:
    """Data of one GLMM fit and a warm start for PIRLS."""

    re: RandomEffects
    resp: Response
    X: np.ndarray
    n_agq: int = 1
    u: np.ndarray | None = None
    beta: np.ndarray | None = None

    def __post_init__(self):
        self.u = self.re.zeros() if self.u is None else self.u
        self.beta = np.zeros(self.X.shape[1]) if self.beta is None else self.beta

    def mode(self, theta, beta=None):
        """PIRLS at θ (joint in β when ``beta`` is None), warm-started; restarts cold on failure."""
        self.re.set_theta(theta)
        joint = beta is None
        b0 = self.beta if joint else np.asarray(beta, float)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            try:
                m = pirls(self.re, self.resp, self.X, b0, self.u, joint=joint)
            except _FAIL:
                start = self.resp.eta_start() if joint else None
                m = pirls(self.re, self.resp, self.X, b0, self.re.zeros(), joint=joint, eta_start=start)
        self.u = m.u
        if joint:
            self.beta = m.beta
        return m

    def fixed_information(self, theta, beta) -> np.ndarray:
        """S = X'WX − RZX'M⁻¹RZX at the mode for (θ, β) (lme4's RX'RX)."""
        m = self.mode(theta, beta)
        RZX = self.re.rhs(m.w, self.X)
        return self.X.T @ (self.X * m.w[:, None]) - self.re.inner(RZX, self.re.solve(RZX))

    def deviance_theta(self, theta) -> float:
        try:
            return self.mode(theta).laplace(self.resp)
        except _FAIL:
            return np.inf

    def deviance(self, pars) -> float:
        nt = self.re.n_theta
        try:
            m = self.mode(pars[:nt], pars[nt:])
            if self.n_agq > 1:
                return agq_deviance(self.re, self.resp, self.X, m, self.n_agq)
            return m.laplace(self.resp)
        except _FAIL:
            return np.inf


def _lbfgs(f, x0, lower):
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    with warnings.catch_warnings():  # differences across a point where PIRLS fails (inf)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = minimize(f, x0, method="L-BFGS-B", jac="3-point", bounds=bounds,
                       options={"ftol": 1e-13, "gtol": 1e-6, "maxiter": 1000, "maxls": 40})
    x = np.where(np.isfinite(lower) & (res.x < lower), lower, res.x)
    return x, res


def hessian(f, x, h=1e-4):
    """Central-difference gradient and Hessian (steps h·max(|x|, 1); the deviance is
    defined for T_ii < 0 too, so no bounds apply)."""
    d = len(x)
    hs = h * np.maximum(np.abs(x), 1.0)
    f0 = f(x)
    g, H = np.zeros(d), np.zeros((d, d))

    def at(*steps):
        y = x.copy()
        for i, s in steps:
            y[i] += s
        return f(y)

    for i in range(d):
        fp, fm = at((i, hs[i])), at((i, -hs[i]))
        g[i] = (fp - fm) / (2 * hs[i])
        H[i, i] = (fp - 2 * f0 + fm) / hs[i] ** 2
        for j in range(i):
            H[i, j] = H[j, i] = (at((i, hs[i]), (j, hs[j])) - at((i, hs[i]), (j, -hs[j]))
                                 - at((i, -hs[i]), (j, hs[j])) + at((i, -hs[i]), (j, -hs[j]))) / (4 * hs[i] * hs[j])
    return f0, g, H


def newton_polish(f, x, lower, iters: int = 4):
    """Newton steps on the components not held at a bound; returns x, f(x), the
    Hessian at x, and the last Newton decrement g'H⁻¹g (the deviance still to gain, ×2)."""
    fx, g, H = hessian(f, x)
    decrement = np.inf
    for _ in range(iters):
        free = ~((x <= lower) & (g > 0))
        if not free.any():
            return x, fx, H, 0.0
        Hf = H[np.ix_(free, free)]
        try:
            s = -np.linalg.solve(Hf, g[free])
        except np.linalg.LinAlgError:
            break
        if np.linalg.eigvalsh(Hf)[0] <= 0:
            break
        decrement = float(-g[free] @ s)
        if decrement < 1e-10:
            break
        t, moved = 1.0, False
        for _ in range(10):
            y = x.copy()
            y[free] += t * s
            y = np.maximum(y, lower)
            fy = f(y)
            if fy <= fx:
                x, moved = y, True
                break
            t /= 2
        if not moved:
            break
        if decrement < 1e-4:  # the Hessian barely moves over such a step: keep it
            break
        fx, g, H = hessian(f, x)
    return x, fx, H, decrement


def _minimum(H, x, lower) -> bool:
    """The Hessian is positive definite on the components not at a bound."""
    free = ~(x <= lower)
    if not free.any():
        return True
    return bool(np.linalg.eigvalsh(H[np.ix_(free, free)])[0] > 0)


@dataclass
class Optimum:
    theta: np.ndarray
    beta: np.ndarray
    deviance: float
    hessian: np.ndarray | None
    message: str | None


def single_thread():
    """BLAS on one thread: the products here are thin (n × p), and threads only contend."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def fit(problem: Problem, n_agq: int = 1, start: tuple | None = None, polish: bool = True) -> Optimum:
    """glmer's stages: θ with joint PIRLS, then (θ, β) unless ``n_agq == 0``. With ``start``
    = (θ, β) the first stage is skipped; ``polish=False`` skips the Newton steps and the
    Hessian (for bootstrap refits)."""
    re = problem.re
    lower_theta = np.array(re.theta_lower)
    problem.n_agq = n_agq
    if start is None:
        theta0 = np.array([1.0 if lo == 0 else 0.0 for lo in lower_theta])
        theta, _ = _lbfgs(problem.deviance_theta, theta0, lower_theta)
        problem.mode(theta)
        beta = problem.beta.copy()
    else:
        theta, beta = (np.asarray(v, float).copy() for v in start)
    if n_agq == 0:
        dev = problem.deviance_theta(theta)
        return Optimum(theta, problem.beta.copy(), dev, None, None if np.isfinite(dev) else "deviance not finite")
    lower = np.concatenate([lower_theta, np.full(len(beta), -np.inf)])
    # L-BFGS-B in whitened fixed effects β = β₁ + L⁻ᵀγ (LL' = X'WX − RZX'M⁻¹RZX at stage 1's
    # mode, half the deviance's Hessian in β): the coordinates are then on one scale.
    nt = re.n_theta
    Linv_t = np.linalg.inv(np.linalg.cholesky(problem.fixed_information(theta, beta))).T

    def whitened(z):
        return problem.deviance(np.concatenate([z[:nt], beta + Linv_t @ z[nt:]]))

    z, res = _lbfgs(whitened, np.concatenate([theta, np.zeros(len(beta))]), lower)
    x = np.concatenate([z[:nt], beta + Linv_t @ z[nt:]])
    if not polish:
        return Optimum(x[:nt], x[nt:], float(res.fun), None, None)
    x, fx, H, decrement = newton_polish(problem.deviance, x, lower)
    if not _minimum(H, x, lower) or decrement > 1e-4:
        # L-BFGS-B stopped off a minimum (a line search across a failed PIRLS, or a saddle
        # of the AGQ surface): a bounded Nelder–Mead from there, then L-BFGS-B and Newton again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            simplex = np.vstack([x] + [x + np.eye(len(x))[i] * 0.1 * max(abs(x[i]), 0.5) for i in range(len(x))])
            nm = minimize(problem.deviance, x, method="Nelder-Mead",
                          bounds=[(lo if np.isfinite(lo) else None, None) for lo in lower],
                          options={"initial_simplex": simplex, "xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
        if nm.fun < fx:
            x2, _ = _lbfgs(problem.deviance, nm.x, lower)
            x2, fx2, H2, dec2 = newton_polish(problem.deviance, x2, lower)
            if fx2 < fx:
                x, fx, H, decrement = x2, fx2, H2, dec2
    message = None
    if not np.isfinite(fx):
        message = "the deviance is not finite at the optimum"
    elif decrement > 1e-4 and np.isfinite(decrement):
        message = f"Newton decrement {decrement:.2g} > 1e-4 at the optimum: not converged"
    elif not _minimum(H, x, lower):
        message = "the Hessian of the deviance is not positive definite at the optimum"
    if message:
        warnings.warn(f"glmm: {message}", ConvergenceWarning, stacklevel=3)
    problem.deviance(x)  # leave the warm state at the optimum
    return Optimum(x[:nt], x[nt:], fx, H, message)
