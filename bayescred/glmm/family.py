"""Exponential families for the GLMM engine, with what lme4's glmer asks of each.

Each family gives the link (``linkfun``, ``linkinv``, ``mu_eta``), the variance function,
the deviance residuals and the ``aic`` term (−2 log-likelihood, R's ``family()$aic``),
and the starting means (R's ``family()$initialize``). Formulas as R's ``stats::family``
and lme4's src/glmFamily.cpp (for negative binomial with known θ as MASS::negative.binomial).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

_EPS = np.finfo(float).eps


def _ylogy(y, mu):
    """y log(y/mu), 0 where y = 0 (mu > 0 always: the inverse links clamp it)."""
    return y * np.log(np.where(y > 0, y, 1.0) / mu)


@dataclass(frozen=True)
class Link:
    name: str

    def linkfun(self, mu):
        if self.name == "log":
            return np.log(mu)
        if self.name == "logit":
            return special.logit(mu)
        if self.name == "identity":
            return np.asarray(mu, float)
        raise ValueError(self.name)

    def linkinv(self, eta):
        if self.name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if self.name == "logit":  # R clamps to [eps, 1 - eps]
            return np.clip(special.expit(eta), _EPS, 1 - _EPS)
        return np.asarray(eta, float)

    def mu_eta(self, eta):
        if self.name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if self.name == "logit":
            e = np.exp(-np.abs(eta))
            return np.maximum(e / (1 + e) ** 2, _EPS)
        return np.ones_like(eta)


class Family:
    """Base: subclasses set ``name``, ``has_scale`` and the distribution pieces."""

    name = ""
    has_scale = False  # lme4's useSc: a dispersion (σ) is estimated

    def __init__(self, link: str):
        self.link = Link(link)

    def __repr__(self) -> str:
        return f"{self.name}(link = {self.link.name!r})"

    def n_params(self) -> int:
        """Parameters of the family counted in AIC besides β and θ (σ for Gamma)."""
        return int(self.has_scale)


class Poisson(Family):
    name = "poisson"

    def __init__(self, link: str = "log"):
        super().__init__(link)

    def variance(self, mu):
        return mu

    def dev_resid(self, y, mu, wt):
        return 2 * wt * (_ylogy(y, mu) - (y - mu))

    def aic(self, y, n, mu, wt, dev):
        logp = special.xlogy(y, mu) - mu - special.gammaln(y + 1)  # dpois(y, mu, log = TRUE)
        return -2.0 * float(np.sum(logp * wt))

    def mustart(self, y, wt):
        return y + 0.1


class Binomial(Family):
    name = "binomial"

    def __init__(self, link: str = "logit"):
        super().__init__(link)

    def variance(self, mu):
        return mu * (1 - mu)

    def dev_resid(self, y, mu, wt):
        return 2 * wt * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))

    def aic(self, y, n, mu, wt, dev):
        m = n if np.any(n > 1) else wt
        yy, mm = np.round(m * y), np.round(m)
        coef = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
        return -2.0 * float(np.sum(coef * stats.binom.logpmf(yy, mm, mu)))

    def mustart(self, y, wt):
        return (wt * y + 0.5) / (wt + 1)


class Gamma(Family):
    name = "Gamma"
    has_scale = True

    def __init__(self, link: str = "log"):
        super().__init__(link)

    def variance(self, mu):
        return mu**2

    def dev_resid(self, y, mu, wt):
        return -2 * wt * (np.log(y / mu) - (y - mu) / mu)

    def aic(self, y, n, mu, wt, dev):
        """R's Gamma()$aic: the dispersion is the mean deviance, dev / Σ wt."""
        disp = dev / np.sum(wt)
        return -2.0 * float(np.sum(wt * stats.gamma.logpdf(y, 1 / disp, scale=mu * disp))) + 2.0

    def mustart(self, y, wt):
        return y.copy()


class NegativeBinomial(Family):
    """Negative binomial with known shape θ (Var = μ + μ²/θ), MASS::negative.binomial."""

    name = "Negative Binomial"

    def __init__(self, theta: float, link: str = "log"):
        super().__init__(link)
        self.theta = float(theta)
        self.name = f"Negative Binomial({self.theta:.4g})"

    def variance(self, mu):
        return mu + mu**2 / self.theta

    def dev_resid(self, y, mu, wt):
        th = self.theta
        return 2 * wt * (_ylogy(y, mu) - (y + th) * np.log((y + th) / (mu + th)))

    def aic(self, y, n, mu, wt, dev):
        th = self.theta
        term = ((y + th) * np.log(mu + th) - y * np.log(mu) + special.gammaln(y + 1) - th * np.log(th)
                + special.gammaln(th) - special.gammaln(th + y))
        return 2.0 * float(np.sum(term * wt))

    def mustart(self, y, wt):
        return y + (y == 0) / 6.0


FAMILIES = {"poisson": Poisson, "binomial": Binomial, "gamma": Gamma}


def get_family(family) -> Family:
    """A family object from a name ('poisson', 'binomial', 'Gamma') or an instance."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str) and family.lower() in FAMILIES:
        return FAMILIES[family.lower()]()
    from ..errors import FormulaError

    raise FormulaError(f"family must be one of poisson, binomial, Gamma or negative_binomial, got {family!r}")
