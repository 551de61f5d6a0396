"""``bc.compare_models``: one table comparing fitted models, as seed 004 Table 6.2.

For each fit (an :class:`~bayescred.lmm.LMMFit`, a GLM from :func:`bayescred.glm`, or a
:class:`~bayescred.lmm.PoissonGammaFit`): the number of parameters k, the log-likelihood and
its basis, AIC = -2 logLik + 2k, BIC = -2 logLik + k log n, and the prediction errors

    MSPE = mean (y - y-hat)^2,   MAPE = mean |y - y-hat|

on the training rows (y-hat: the fitted values, conditional on the random effects for mixed
models) and, with ``validation``, on new rows (mixed models predict with the estimated
random effects of the levels seen in the fit, 0 / u = 1 for new levels).

Likelihoods are comparable only on the same basis. A REML log-likelihood depends on the
fixed-effects design, so AIC/BIC of REML fits with different fixed effects, or of a REML
fit next to ML fits, cannot be compared (lme4's ``anova`` refits such models by ML; seed 004
Table 6.2 mixes them, docs/reference-values.md erratum E20). Such a table carries
``attrs["comparable"] = False`` and a warning saying why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._callable import make_callable
from .errors import ArgumentError, BayescredError, ComparabilityWarning, MissingColumnError
from .glm import GLMFit
from .lmm import LMMFit, PoissonGammaFit

__all__ = ["compare_models"]


def _lhs(formula: str) -> str:
    return formula.split("~", 1)[0].strip()


def _describe(fit, convention: str) -> dict:
    """k, logLik, basis, AIC, BIC, fixed-effect names, training y and y-hat of one fit."""
    if isinstance(fit, LMMFit):
        ic = fit.information_criteria(convention)
        return dict(
            kind="LMM", basis=fit.method, k=int(ic["n_params"]), loglik=ic["loglik"], aic=ic["aic"], bic=ic["bic"],
            fixed=tuple(fit.fixef.index), y=np.asarray(fit._fixed.y, float), fitted=fit.fitted().to_numpy(),
            response=_lhs(fit.formula),
        )  # fmt: skip
    if isinstance(fit, GLMFit):
        finite = math.isfinite(fit.aic)
        k = int(round((fit.aic + 2 * fit.loglik) / 2)) if finite else int(fit.coef.notna().sum())
        return dict(
            kind=f"GLM ({fit.family.name})", basis="ML" if finite else "quasi (none)", k=k, loglik=fit.loglik,
            aic=fit.aic, bic=fit.bic, fixed=tuple(fit.coef.index), y=np.asarray(fit.y, float),
            fitted=fit.fitted(), response=_lhs(fit.formula),
        )  # fmt: skip
    if isinstance(fit, PoissonGammaFit):
        d = fit._d
        u = fit.ranef()["u"].to_numpy()
        fitted = np.exp(d.X @ fit.fixef.to_numpy() + d.off) * u[d.codes]
        basis = "ML (marginal)" if fit.method == "ml" else "marginal at h-likelihood estimates"
        return dict(
            kind=f"Poisson-gamma ({fit.method})", basis=basis, k=len(fit.fixef) + 1, loglik=fit.loglik, aic=fit.aic,
            bic=fit.bic, fixed=tuple(fit.fixef.index), y=d.y, fitted=fitted, response=fit._design.claims,
        )  # fmt: skip
    raise BayescredError(f"compare_models takes LMMFit, GLM and PoissonGammaFit fits, got {type(fit).__name__}")


def _predict(fit, data: pd.DataFrame) -> np.ndarray:
    if isinstance(fit, LMMFit):
        return fit.predict(data)["premium"].to_numpy()
    if isinstance(fit, GLMFit):
        return fit.predict(data, type="response")
    return fit.predict(data)["premium"].to_numpy()


def compare_models(
    fits: Mapping[str, object] | Sequence[object],
    validation: pd.DataFrame | None = None,
    response: str | None = None,
    *,
    convention: str = "lme4",
) -> pd.DataFrame:
    """One row per fit: kind, basis, k, loglik, aic, bic, mspe_train, mape_train and, with
    ``validation``, mspe_validation and mape_validation (module docstring).

    ``fits``: a dict name -> fit (or a list, named fit1, fit2, ...). ``response``: the
    validation column to compare predictions with; default each fit's response when it is a
    plain column name. ``convention``: "lme4" or "nlme" for the BIC of REML fits
    (:meth:`LMMFit.information_criteria`).
    """
    if convention not in ("lme4", "nlme"):
        raise ArgumentError(f"convention must be 'lme4' or 'nlme', got {convention!r}")
    named = dict(fits) if isinstance(fits, Mapping) else {f"fit{i + 1}": f for i, f in enumerate(fits)}
    if not named:
        raise BayescredError("compare_models needs at least one fit")
    rows, fixed = {}, {}
    for name, fit in named.items():
        info = _describe(fit, convention)
        fixed[name] = (info["basis"], info["fixed"])
        resid = info["y"] - info["fitted"]
        row = {k: info[k] for k in ("kind", "basis", "k", "loglik", "aic", "bic")}
        row.update(mspe_train=float(np.mean(resid**2)), mape_train=float(np.mean(np.abs(resid))))
        if validation is not None:
            column = response or info["response"]
            if column not in validation.columns:
                raise MissingColumnError(
                    f"validation has no response column for fit {name!r}; give response= (a column of validation)",
                    column,
                )
            err = validation[column].to_numpy(float) - _predict(fit, validation)
            row.update(mspe_validation=float(np.mean(err**2)), mape_validation=float(np.mean(np.abs(err))))
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["comparable"], table.attrs["why"] = _comparable(fixed)
    if not table.attrs["comparable"]:
        warnings.warn(table.attrs["why"], ComparabilityWarning, stacklevel=2)
    return table


def _comparable(fixed: dict) -> tuple[bool, str]:
    """Are the likelihoods on one basis? REML needs the same fixed effects in every fit."""
    bases = {basis for basis, _ in fixed.values()}
    reml = [name for name, (basis, _) in fixed.items() if basis == "REML"]
    if reml and len(bases) > 1:
        return False, (
            f"REML fits ({', '.join(reml)}) are compared with fits on another likelihood basis "
            f"({', '.join(sorted(bases - {'REML'}))}): their AIC/BIC are not comparable; refit by ML (method='ML')"
        )
    designs = {f for _, f in fixed.values()}
    if reml and len(designs) > 1:
        return False, (
            "REML fits with different fixed effects: their REML likelihoods are not comparable "
            "(lme4's anova refits them by ML); refit by ML (method='ML')"
        )
    if any(basis.startswith("quasi") for basis in bases):
        return False, "quasi-likelihood fits have no likelihood, so no AIC/BIC"
    return True, ""


make_callable(__name__)  # bc.compare_models(...) calls the function; the module stays importable
