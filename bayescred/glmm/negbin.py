"""Negative-binomial GLMM with its shape θ estimated, as lme4's ``glmer.nb``.

y | b ~ NB(μ, θ), Var = μ + μ²/θ, log μ = offset + Xβ + Zb. glmer.nb fits the Poisson GLMM,
takes MASS's ``theta.ml`` on its fitted means as a start, and maximises the Laplace
log-likelihood profiled over (β, covariance parameters) in log θ (R ``optimize`` on
log θ₀ ± 3). We do the same with a bounded Brent search to 1e-7 in log θ, warm-starting
each refit from the previous one. AIC counts θ as a parameter (lme4: df = p + nθ + 1).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from .family import negative_binomial


def theta_ml(y, mu, wt, limit: int = 25, eps: float = 1e-10) -> float:
    """MASS::theta.ml: Newton iterations for the NB shape given the means."""
    n = np.sum(wt)
    t0 = n / np.sum(wt * (y / mu - 1) ** 2)
    for _ in range(limit):
        t0 = abs(t0)
        score = np.sum(wt * (special.digamma(t0 + y) - special.digamma(t0) + np.log(t0) + 1
                             - np.log(t0 + mu) - (y + t0) / (mu + t0)))
        info = np.sum(wt * (-special.polygamma(1, t0 + y) + special.polygamma(1, t0) - 1 / t0
                            + 2 / (mu + t0) - (y + t0) / (mu + t0) ** 2))
        delta = score / info
        t0 += delta
        if abs(delta) <= eps:
            break
    return float(max(t0, 1e-8))


def glmm_nb(formula, data, weights=None, offset=None, nAGQ: int = 1):  # noqa: N803
    from .model import GLMMFit, glmm
    from .optimise import fit, single_thread

    pois = glmm(formula, data, family="poisson", weights=weights, offset=offset, nAGQ=nAGQ)
    problem = pois._problem
    resp = problem.resp
    th0 = theta_ml(resp.y, pois._mode.mu, resp.wt)
    state = {"start": (pois.theta, pois.fixef.to_numpy())}

    def refit(log_th):
        resp.family = negative_binomial(float(np.exp(log_th)))
        opt = fit(problem, nAGQ, start=state["start"], polish=False)
        state["start"] = (opt.theta, opt.beta)
        return opt.deviance

    with single_thread():
        res = optimize.minimize_scalar(refit, bounds=(np.log(th0) - 3, np.log(th0) + 3), method="bounded",
                                       options={"xatol": 1e-7})
        resp.family = negative_binomial(float(np.exp(res.x)))
        opt = fit(problem, nAGQ, start=state["start"])
        out = GLMMFit(problem, opt, list(pois.fixef.index), formula, nAGQ)
    out.n_params += 1
    out.aic += 2
    out.bic += np.log(out.nobs)
    out.df_resid -= 1
    out.nb_theta = resp.family.params["theta"]
    out._data, out._fixed = pois._data, pois._fixed
    out._offset_arg = offset
    return out
