"""GLM families and links as R's ``stats::family`` objects (plus MASS and statmod ones).

Each family carries what R's ``glm.fit`` asks of it: the variance function, unit deviances
(``dev.resids``), ``aic`` (R's ``family$aic``, *without* the ``2 * rank`` term), a starting
value for the mean (``initialize``) and validity checks used for step halving. Links follow
``stats::make.link``, including its clamping of the inverse logit, probit, cloglog and log
links at machine epsilon, so that iterations reproduce R's to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import special

from ..errors import BayescredError

EPS = np.finfo(float).eps
_THRESH = 30.0
_PROBIT_THRESH = -special.ndtri(EPS)


class FamilyError(BayescredError, ValueError):
    """A family or link name that R's glm does not accept, or a response it cannot model."""


@dataclass(frozen=True)
class Link:
    """A link function g(mu) = eta with inverse and derivative d mu / d eta."""

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]
    valideta: Callable[[np.ndarray], bool] = lambda eta: True


def _logit_inv(eta):
    e = np.exp(np.clip(eta, -_THRESH, _THRESH))
    e = np.where(eta < -_THRESH, EPS, np.where(eta > _THRESH, 1 / EPS, e))
    return e / (1 + e)


def _logit_mu_eta(eta):
    e = np.exp(np.clip(eta, -_THRESH, _THRESH))
    out = e / (1 + e) ** 2
    return np.where((eta > _THRESH) | (eta < -_THRESH), EPS, out)


def _probit_inv(eta):
    return special.ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


def _cloglog_inv(eta):
    return np.clip(-np.expm1(-np.exp(eta)), EPS, 1 - EPS)


def _cloglog_mu_eta(eta):
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta) * np.exp(-np.exp(eta)), EPS)


def _power_link(lam: float) -> Link:
    """R's ``power(lambda)``: eta = mu^lambda (lambda = 0 is the log link)."""
    if lam == 0:
        return LINKS["log"]
    if lam == 1:
        return LINKS["identity"]
    return Link(
        f"mu^{lam:g}",
        lambda mu: mu**lam,
        lambda eta: np.maximum(eta, EPS) ** (1 / lam),
        lambda eta: np.maximum(eta, EPS) ** (1 / lam - 1) / lam,
    )


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), EPS), lambda eta: np.maximum(np.exp(eta), EPS)),
    "inverse": Link("inverse", lambda mu: 1 / mu, lambda eta: 1 / eta, lambda eta: -1 / eta**2,
                    lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta != 0))),
    "logit": Link("logit", lambda mu: np.log(mu / (1 - mu)), _logit_inv, _logit_mu_eta),
    "probit": Link("probit", special.ndtri, _probit_inv,
                   lambda eta: np.maximum(np.exp(-0.5 * eta**2) / np.sqrt(2 * np.pi), EPS)),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv, _cloglog_mu_eta),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta**2, lambda eta: 2 * eta,
                 lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0))),
    "1/mu^2": Link("1/mu^2", lambda mu: 1 / mu**2, lambda eta: 1 / np.sqrt(eta), lambda eta: -1 / (2 * eta**1.5),
                   lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0))),
}


def _ylogy(y, mu):
    """y * log(y / mu), 0 where y = 0 (R's y_log_y)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _finite(x) -> bool:
    return bool(np.all(np.isfinite(x)))


@dataclass(frozen=True)
class Family:
    """What glm.fit needs of a family. ``aic`` is R's ``family$aic`` (None: quasi family).

    ``scale_free``: dispersion fixed at 1 (poisson, binomial, negative binomial).
    ``extra_param``: the dispersion counts as a parameter in logLik (gaussian, Gamma, IG).
    """

    name: str
    link: Link
    variance: Callable[[np.ndarray], np.ndarray]
    dev_resids: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    aic: Callable | None
    initialize: Callable[[np.ndarray, np.ndarray], np.ndarray]
    validmu: Callable[[np.ndarray], bool] = _finite
    scale_free: bool = False
    extra_param: bool = False
    label: str = ""
    params: dict = field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.name


# ------------------------------------------------------------------ deviances
def _gaussian_dev(y, mu, wt):
    return wt * (y - mu) ** 2


def _poisson_dev(y, mu, wt):
    # xlogy(0, 0) = 0, so a zero count contributes 2 wt mu, as R's poisson()$dev.resids
    return 2 * wt * (special.xlogy(y, y / mu) - (y - mu))


def _binomial_dev(y, mu, wt):
    return 2 * wt * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))


def _gamma_dev(y, mu, wt):
    with np.errstate(divide="ignore"):
        return -2 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)


def _ig_dev(y, mu, wt):
    return wt * (y - mu) ** 2 / (y * mu**2)


# ------------------------------------------------------------------ aic (R family$aic)
def _gaussian_aic(y, n, mu, wt, dev):
    nobs = len(y)
    with np.errstate(divide="ignore"):
        return nobs * (np.log(2 * np.pi * dev / nobs) + 1) + 2 - np.sum(np.log(wt))


def _poisson_logpmf(y, mu):
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
    return np.where(np.abs(y - np.round(y)) > 1e-7 * np.maximum(1, np.abs(y)), -np.inf, lp)


def _poisson_aic(y, n, mu, wt, dev):
    return -2 * np.sum(_poisson_logpmf(y, mu) * wt)


def _binomial_aic(y, n, mu, wt, dev):
    m = n if np.any(n > 1) else wt
    k, size = np.round(m * y), np.round(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        logpmf = (special.gammaln(size + 1) - special.gammaln(k + 1) - special.gammaln(size - k + 1)
                  + special.xlogy(k, mu) + special.xlog1py(size - k, -mu))
        factor = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
    return -2 * np.sum(np.where(factor > 0, factor * logpmf, 0.0))


def _gamma_aic(y, n, mu, wt, dev):
    disp = dev / np.sum(wt)
    shape = 1 / disp
    scale = mu * disp
    logpdf = (shape - 1) * np.log(y) - y / scale - special.gammaln(shape) - shape * np.log(scale)
    return -2 * np.sum(logpdf * wt) + 2


def _ig_aic(y, n, mu, wt, dev):
    sw = np.sum(wt)
    return sw * (1 + np.log(dev / sw * 2 * np.pi)) + 3 * np.sum(np.log(y) * wt) + 2


# ------------------------------------------------------------------ initialize
def _init_nonneg(name):
    def init(y, wt):
        if np.any(y < 0):
            raise FamilyError(f"the {name} family needs a non-negative response; it has negative values")
        return y + 0.1

    return init


def _init_positive(name):
    def init(y, wt):
        if np.any(y <= 0):
            raise FamilyError(f"the {name} family needs a strictly positive response")
        return y.copy()

    return init


def _init_binomial(y, wt):
    if np.any((y < 0) | (y > 1)):
        raise FamilyError("a binomial response must be a proportion in [0, 1] (or use cbind(successes, failures))")
    return (wt * y + 0.5) / (wt + 1)


_ALLOWED = {
    "gaussian": ("identity", {"identity", "log", "inverse"}),
    "binomial": ("logit", {"logit", "probit", "cloglog", "log"}),
    "quasibinomial": ("logit", {"logit", "probit", "cloglog", "log"}),
    "poisson": ("log", {"log", "identity", "sqrt"}),
    "quasipoisson": ("log", {"log", "identity", "sqrt"}),
    "Gamma": ("inverse", {"inverse", "identity", "log"}),
    "inverse.gaussian": ("1/mu^2", {"1/mu^2", "inverse", "identity", "log"}),
}


def _link(family: str, link: str | None) -> Link:
    default, allowed = _ALLOWED[family]
    name = link or default
    if name not in allowed or name not in LINKS:
        raise FamilyError(f"link {name!r} is not available for the {family} family; use one of {sorted(allowed)}")
    return LINKS[name]


def make_family(name: str, link: str | None = None) -> Family:
    """One of R's standard families by name (``"Gamma"`` and ``"gamma"`` both accepted)."""
    key = {"gamma": "Gamma", "inverse_gaussian": "inverse.gaussian", "inversegaussian": "inverse.gaussian",
           "normal": "gaussian"}.get(name, name)
    if key not in _ALLOWED:
        raise FamilyError(f"unknown family {name!r}; use one of {sorted(_ALLOWED)} or negbin, tweedie, ztpoisson")
    lk = _link(key, link)
    if key == "gaussian":
        def init_gaussian(y, wt):
            if (lk.name == "inverse" and np.any(y == 0)) or (lk.name == "log" and np.any(y <= 0)):
                raise FamilyError(f"cannot start the gaussian family with the {lk.name} link: "
                                  f"the response has values outside its domain")
            return y.copy()

        return Family("gaussian", lk, np.ones_like, _gaussian_dev, _gaussian_aic, init_gaussian, extra_param=True)
    if key in ("poisson", "quasipoisson"):
        return Family(key, lk, lambda mu: mu, _poisson_dev, _poisson_aic if key == "poisson" else None,
                      _init_nonneg(key), validmu=lambda mu: _finite(mu) and bool(np.all(mu > 0)),
                      scale_free=key == "poisson")
    if key in ("binomial", "quasibinomial"):
        return Family(key, lk, lambda mu: mu * (1 - mu), _binomial_dev, _binomial_aic if key == "binomial" else None,
                      _init_binomial, validmu=lambda mu: _finite(mu) and bool(np.all((mu > 0) & (mu < 1))),
                      scale_free=key == "binomial")
    if key == "Gamma":
        return Family("Gamma", lk, lambda mu: mu**2, _gamma_dev, _gamma_aic, _init_positive("Gamma"),
                      extra_param=True)
    return Family("inverse.gaussian", lk, lambda mu: mu**3, _ig_dev, _ig_aic, _init_positive("inverse.gaussian"),
                  extra_param=True)


def negative_binomial(theta: float, link: str = "log") -> Family:
    """MASS::negative.binomial(theta): Var = mu + mu^2 / theta, dispersion 1."""
    if link not in ("log", "identity", "sqrt"):
        raise FamilyError(f"link {link!r} is not available for the negative binomial family; use log, identity or sqrt")
    th = float(theta)

    def dev(y, mu, wt):
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2 * wt * (y * np.log(np.maximum(1, y) / mu) - (y + th) * np.log((y + th) / (mu + th)))

    def aic(y, n, mu, wt, d):
        term = ((y + th) * np.log(mu + th) - y * np.log(mu) + special.gammaln(y + 1) - th * np.log(th)
                + special.gammaln(th) - special.gammaln(th + y))
        return 2 * np.sum(term * wt)

    def init(y, wt):
        if np.any(y < 0):
            raise FamilyError("the negative binomial family needs a non-negative response; it has negative values")
        return y + (y == 0) / 6

    return Family("negbin", LINKS[link], lambda mu: mu + mu**2 / th, dev, aic, init,
                  validmu=lambda mu: _finite(mu) and bool(np.all(mu > 0)), scale_free=True,
                  label=f"Negative Binomial({th:.4f})", params={"theta": th})


def tweedie(var_power: float, link_power: float = 0.0) -> Family:
    """statmod::tweedie(var.power, link.power): Var = phi * mu^p (aic is NA, as statmod)."""
    p = float(var_power)
    if 0 < p < 1:
        raise FamilyError(f"Tweedie var.power {p} is not allowed (no distribution has 0 < p < 1)")

    def dev(y, mu, wt):
        y1 = y + 0.1 * (y == 0)
        theta = np.log(y1 / mu) if p == 1 else (y1 ** (1 - p) - mu ** (1 - p)) / (1 - p)
        kappa = np.log(y1 / mu) if p == 2 else (y ** (2 - p) - mu ** (2 - p)) / (2 - p)
        return 2 * wt * (y * theta - kappa)

    def init(y, wt):
        if np.any(y < 0):
            raise FamilyError("the Tweedie family needs a non-negative response; it has negative values")
        if p >= 2 and np.any(y <= 0):
            raise FamilyError(f"the Tweedie family with var.power {p} >= 2 needs a strictly positive response")
        return y + 0.1 * (y == 0)

    return Family("Tweedie", _power_link(link_power), lambda mu: mu**p, dev, None, init,
                  validmu=lambda mu: _finite(mu) and bool(np.all(mu > 0)),
                  label=f"Tweedie(var.power = {p:g}, link.power = {link_power:g})",
                  params={"var_power": p, "link_power": float(link_power)})
