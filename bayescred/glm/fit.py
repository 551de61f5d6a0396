"""``bc.glm``: fit a generalised linear model at R ``glm`` / ``MASS::glm.nb`` parity.

The engine works on arrays (``fit_arrays``); ``glm`` builds them from a formula and a data
frame and dispatches on the family: the standard R families (IRLS as ``glm.fit``), the
negative binomial with theta estimated (``negbin``), Tweedie with the power given or
profiled (``tweedie``), the zero-truncated Poisson (``ztpoisson``), and the double GLM of
Smyth (1989) when ``dispersion`` is a formula (``dglm``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BayescredError, ConvergenceWarning, NotAFrameError
from . import design as _design
from .families import EPS, Family, FamilyError, make_family
from .irls import IRLSResult, irls
from .result import GLMFit


def _observed_weights(family: Family, y, mu, eta, prior):
    """-d^2 loglik / d eta^2 per row (up to the dispersion): the expected weight
    mu'^2/V minus (y - mu) * d/deta(mu'/V); equal to it for canonical links."""
    link = family.link
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    m1 = link.mu_eta(eta)
    m2 = (link.mu_eta(eta + h) - link.mu_eta(eta - h)) / (2 * h)
    v = family.variance(mu)
    hm = 1e-6 * np.maximum(1e-8, np.abs(mu))
    dv = (family.variance(mu + hm) - family.variance(mu - hm)) / (2 * hm)
    return prior * (m1**2 / v - (y - mu) * (m2 / v - m1**2 * dv / v**2))


def _dispersion(family: Family, res: IRLSResult, df_r: int, dispersion) -> tuple[float, str]:
    if isinstance(dispersion, (int, float)) and not isinstance(dispersion, bool):
        return float(dispersion), "fixed"
    if family.scale_free and dispersion in (None, "pearson"):
        return 1.0, "family"
    if df_r <= 0:
        return float("nan"), "pearson"
    if dispersion in (None, "pearson"):
        ww = res.working_weights
        pos = ww > 0
        return float(np.sum((ww * res.working_residuals**2)[pos]) / df_r), "pearson"
    if dispersion == "deviance":
        return res.deviance / df_r, "deviance"
    raise BayescredError(f"dispersion {dispersion!r} is not 'pearson', 'deviance', a number or a formula '~ ...'")


def null_deviance(y, weights, offset, family, intercept: bool, mu, epsilon, maxit) -> float:
    """R's null deviance: the intercept-only (offset-only) model's deviance; with an offset
    and an intercept it is refitted by IRLS, as ``glm`` does."""
    if intercept and np.any(offset != 0):
        res = irls(np.ones((len(y), 1)), y, weights, offset, family, mustart=mu, epsilon=epsilon, maxit=maxit)
        return res.deviance
    wtdmu = np.sum(weights * y) / np.sum(weights) if intercept else family.link.linkinv(offset)
    return float(np.sum(family.dev_resids(y, np.broadcast_to(wtdmu, y.shape), weights)))


def _warn_numerics(family: Family, res: IRLSResult, names: list[str]):
    kept = [n for n, k in zip(names, res.keep) if k]
    biggest = kept[int(np.argmax(np.abs(res.coef[res.keep])))] if kept else None
    if not res.converged:
        warnings.warn(f"IRLS did not converge in {res.iterations} iterations (largest coefficient: {biggest})",
                      ConvergenceWarning, stacklevel=3)
    eps = 10 * EPS
    if family.name in ("binomial", "quasibinomial") and np.any((res.mu > 1 - eps) | (res.mu < eps)):
        warnings.warn(f"fitted probabilities numerically 0 or 1 occurred (separation; look at {biggest})",
                      ConvergenceWarning, stacklevel=3)
    if family.name in ("poisson", "quasipoisson") and np.any(res.mu < eps):
        warnings.warn(f"fitted rates numerically 0 occurred (look at {biggest})", ConvergenceWarning, stacklevel=3)


def fit_arrays(y, X, names, family: Family, *, weights=None, offset=None, trials=None, intercept=None,
               dispersion=None, information="expected", epsilon=1e-8, maxit=25, formula="", transform=None,
               etastart=None, mustart=None, res: IRLSResult | None = None, final_information: bool = False) -> GLMFit:
    """Fit a GLM on arrays. ``trials``: binomial totals (cbind response); then y is the
    proportion and the prior weights are multiplied by the totals, as R.
    ``final_information``: expected information at the final estimate (instead of R's working
    weights of the last IRLS step), for families R's glm does not have."""
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    n = len(y)
    weights = np.ones(n) if weights is None else np.asarray(weights, float)
    offset = np.zeros(n) if offset is None else np.asarray(offset, float)
    names = list(names)
    if intercept is None:
        intercept = "(Intercept)" in names
    n_binom = np.ones(n)
    if trials is not None:
        if family.name not in ("binomial", "quasibinomial"):
            raise FamilyError("a cbind(successes, failures) response needs the binomial or quasibinomial family")
        n_binom = np.asarray(trials, float)
        if mustart is None and etastart is None:
            mustart = (n_binom * y + 0.5) / (n_binom + 1)
        weights = weights * n_binom
    if res is None:
        res = irls(X, y, weights, offset, family, mustart=mustart, etastart=etastart, epsilon=epsilon, maxit=maxit)
    _warn_numerics(family, res, names)
    rank = int(res.keep.sum())
    n_ok = int(np.sum(weights != 0))
    df_r = n_ok - rank
    df_null = n_ok - int(intercept)
    disp, kind = _dispersion(family, res, df_r, dispersion)
    unscaled = res.xtwx_inv
    if final_information and information == "expected":
        Xk = X[:, res.keep]
        w_final = weights * family.link.mu_eta(res.eta) ** 2 / family.variance(res.mu)
        unscaled = np.linalg.inv(Xk.T @ (Xk * w_final[:, None]))
    if information == "observed":
        wobs = _observed_weights(family, y, res.mu, res.eta, weights)
        Xk = X[:, res.keep]
        unscaled = np.linalg.inv(Xk.T @ (Xk * wobs[:, None]))
    elif information != "expected":
        raise BayescredError(f"information {information!r} is not 'expected' or 'observed'")
    kept = [nm for nm, k in zip(names, res.keep) if k]
    vcov = pd.DataFrame(disp * unscaled, index=kept, columns=kept)
    se = pd.Series(np.sqrt(np.diag(vcov.to_numpy())), index=kept).reindex(names)
    nulldev = null_deviance(y, weights, offset, family, bool(intercept), res.mu, epsilon, maxit)
    if family.aic is not None:
        fam_aic = float(family.aic(y, n_binom, res.mu, weights, res.deviance))
        aic = fam_aic + 2 * rank
        k = rank + int(family.extra_param)
        loglik = k - aic / 2
        bic = -2 * loglik + np.log(n_ok) * k
    else:
        loglik = aic = bic = float("nan")
    return GLMFit(formula=formula, family=family, coef=pd.Series(res.coef, index=names), se=se, vcov=vcov,
                  deviance=res.deviance, null_deviance=nulldev, df_residual=df_r, df_null=df_null, loglik=loglik,
                  aic=aic, bic=bic, dispersion=disp, dispersion_kind=kind, iterations=res.iterations,
                  converged=res.converged, nobs=n_ok, y=y, mu=res.mu, eta=res.eta, prior_weights=weights,
                  offset=offset, working_weights=res.working_weights, working_residuals=res.working_residuals,
                  transform=transform)


def glm(formula: str, data: pd.DataFrame, family: str = "gaussian", weights=None, offset=None, *, link=None,
        dispersion=None, information: str = "expected", theta: float | None = None,
        var_power: float | None = None, var_power_range: tuple[float, float] = (1.01, 1.99),
        dispersion_method: str = "reml", epsilon: float = 1e-8, maxit: int = 25, base_levels=None, factors=()) -> GLMFit:
    """Fit a GLM as R's ``glm`` (``MASS::glm.nb`` for ``family="negbin"``).

    family: gaussian, poisson, quasipoisson, binomial, quasibinomial, Gamma, inverse.gaussian,
    negbin (theta estimated unless ``theta`` is given), tweedie (``var_power`` given, or
    profiled by maximum likelihood over ``var_power_range``; log link unless ``link``),
    ztpoisson (zero-truncated Poisson, log link).
    weights / offset: column names (or arrays); ``offset(x)`` terms in the formula add up.
    dispersion: None or "pearson" (R's summary.glm), "deviance" (deviance / df), a number
    (fixed), or a formula ``"~ x1 + x2"`` for log(phi_i) (Smyth's double GLM, gaussian family;
    ``dispersion_method`` "reml" as R's dglm default, or "ml").
    information: "expected" (R) or "observed" for the standard errors.
    base_levels ({column: level}, R's relevel) and factors (numeric columns to treat as
    categorical) go to the shared formula parser (bayescred.formula).
    """
    if not isinstance(data, pd.DataFrame):
        raise NotAFrameError(f"bc.glm needs a pandas DataFrame, got {type(data).__name__}")
    d = _design.build(formula, data, weights=weights, offset=offset, base_levels=base_levels, factors=factors)
    fam = str(family)
    if d.trials is not None and fam not in ("binomial", "quasibinomial"):
        raise FamilyError(f"a cbind(successes, failures) response needs the binomial or quasibinomial family, "
                          f"not {fam}")
    common = dict(weights=d.weights, offset=d.offset, formula=formula, transform=d.transform,
                  intercept=d.intercept, epsilon=epsilon, maxit=maxit)
    if isinstance(dispersion, str) and "~" in dispersion:
        from .dglm import double_glm

        if fam != "gaussian":
            raise FamilyError("the double GLM (dispersion formula) is implemented for the gaussian family")
        zd = _design.build("~" + dispersion.split("~", 1)[1], data, base_levels=base_levels, factors=factors,
                           need_response=False)
        return double_glm(d.y, d.X, d.names, zd.X, zd.names, make_family("gaussian", link), method=dispersion_method,
                          information=information, **common)
    if fam in ("negbin", "negative.binomial", "nb"):
        from .negbin import glm_nb

        return glm_nb(d.y, d.X, d.names, theta=theta, link=link or "log", information=information, **common)
    if fam == "tweedie":
        from .tweedie import glm_tweedie

        return glm_tweedie(d.y, d.X, d.names, var_power=var_power, link=link, power_range=var_power_range,
                           dispersion=dispersion, information=information, **common)
    if fam in ("ztpoisson", "truncated_poisson"):
        from .ztpoisson import glm_ztpoisson

        return glm_ztpoisson(d.y, d.X, d.names, dispersion=dispersion, information=information, **common)
    return fit_arrays(d.y, d.X, d.names, make_family(fam, link), trials=d.trials, dispersion=dispersion,
                      information=information, **common)
