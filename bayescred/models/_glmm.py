"""The one builder behind the GLMM factories (``poisson_lognormal``, ``gamma_lognormal``,
``binomial_logitnormal``): a GLM with rating factors plus a normal random intercept per risk
on the link scale, sampled latent and non-centred (there is no closed-form marginal to
sample instead).

    eta_c = intercept + x_c' fixef + u_risk(c),   u_j = between_sd * z_j,   z_j ~ N(0, 1)

No marginal likelihood and no exact conditional draws exist here (the effects do not
integrate out in closed form, nor is u_j | y a known distribution), so ``likelihood`` is
"latent" only. Factors are coded by the one formula parser (``bayescred.formula``) with R's treatment
rule, as ``bc.lmm``/``bc.glmm``/``bc.glm`` (base = the first level in sorted order, or
``base={column: level}``); numeric covariates
are centred at their weighted mean inside the sampler, and ``intercept`` reports the
uncentred (R's) intercept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..errors import DataError, PriorError, RankDeficientError
from .. import formula as fm
from ..portfolio import as_list
from . import priors as P
from ._base import ModelInfo, attach, labels, stack_draws, unstack_draws
from ..likelihood.arrays import segsum


@dataclass(frozen=True)
class Family:
    """What differs between the factories: the cell table, link, log-likelihood per cell,
    the premium's weight, extra parameters and the simulator of the observed totals."""

    name: str
    link: str  # "log" or "logit"
    observed: str  # name of the per-risk observed total in the DataTree (the user's column)
    observed_cell: str  # the pm.Data name of the cell response
    weight: str  # cell column weighting the premium and the covariate centring
    loglik: Callable  # (eta, d, extra) -> per-cell log density (pytensor)
    simulate: Callable  # (rng, mean, cells, extra) -> per-cell simulated (draws, cells) values
    observed_total: Callable  # (per-cell values, cells) -> per-risk observed statistic (numpy)
    extra: tuple = ()  # extra P.Param of the family (e.g. the gamma dispersion)
    centre: float = 0.0  # default prior centre of the intercept on the link scale


def inverse_link(link: str, eta, xp=np):
    if link == "log":
        return xp.exp(eta)
    return 1.0 / (1.0 + xp.exp(-eta))


def check_latent(likelihood: str, factory: str) -> None:
    if likelihood != "latent":
        raise PriorError(f"{factory}: likelihood must be 'latent' (the normal random effect has no closed-form "
                         f"marginal likelihood), got {likelihood!r}")


def check_columns(group: str, fixed: list, covariates: list) -> None:
    clash = sorted(set(fixed) & set(covariates)) + [group] * (group in fixed + covariates)
    if clash:
        raise DataError("a column cannot be both a factor and a covariate, nor the group", column=clash[0])


def design(cells: pd.DataFrame, fixed: list, covariates: list, base: dict | None, weight: np.ndarray):
    """The fixed-effects columns of ``~ factors + covariates`` from the one formula parser
    (``bayescred.formula``: R's treatment coding and names, base = first sorted level unless
    ``base={column: level}``), without the intercept; covariates centred at their weighted
    mean. Returns X, coefficient names (``zone2``, ``x``) and the covariates' centres."""
    if not fixed and not covariates:
        if base:
            raise DataError(f"base levels given for columns that are not factors in fixed=: {sorted(base)}")
        return np.zeros((len(cells), 0)), [], np.zeros(0)
    stray = sorted(set(base or {}) - set(fixed))
    if stray:
        raise DataError(f"base levels given for columns that are not factors in fixed=: {stray}")
    terms = " + ".join(f"`{c}`" for c in [*fixed, *covariates])
    fd = fm.fixed_design(f"~ {terms}", cells, factors=fixed, base_levels=base)
    X, names = fd.X[:, 1:].copy(), list(fd.names[1:])  # the intercept is log_collective
    centres = []
    for i in range(len(covariates)):
        j = X.shape[1] - len(covariates) + i
        centres.append(float(np.sum(X[:, j] * weight) / np.sum(weight)))
        X[:, j] -= centres[-1]
    if X.shape[1] and np.linalg.matrix_rank(np.column_stack([np.ones(len(X)), X])) < X.shape[1] + 1:
        raise RankDeficientError(f"fixed-effect columns are linearly dependent: {', '.join(names)}")
    return X, names, np.array(centres)


def build(factory: str, family: Family, cells: pd.DataFrame, data_columns: dict, group: str, fixed: list,
          covariates: list, base, priors, risk_stats: dict):
    """The PyMC model. ``cells``: one row per (risk, rating cell) or per row (gamma), with
    the family's columns; ``data_columns``: name -> cell column held as ``pm.Data``;
    ``risk_stats``: per-risk constants (name -> array) held as ``pm.Data`` over the group."""
    weight = cells[family.weight].to_numpy(float)
    X, coef, centres = design(cells, fixed, covariates, base, weight)
    risks, risk = np.unique(cells[group].to_numpy(), return_inverse=True)
    J = len(risks)
    if J < 2:
        raise DataError(f"needs at least 2 risks, found {J}", column=group)
    n_factor = len(coef) - len(covariates)
    x_sd = np.array([1.0] * n_factor + [P.scale_of(X[:, n_factor + i]) for i in range(len(covariates))])
    intercept_name = "log_collective" if family.link == "log" else "logit_collective"
    params = [
        P.Param(intercept_name, (), lambda: pm.Normal.dist(mu=P.from_data(f"{intercept_name}_mu", family.centre),
                                                           sigma=2.5)),
        P.Param("fixef", (len(coef),), lambda: pm.Normal.dist(mu=0.0, sigma=P.from_data("fixef_sigma", 2.5 / x_sd)),
                dims="coef"),
        P.Param("between_sd", (), lambda: pm.HalfNormal.dist(sigma=1.0), positive=True),
        *family.extra,
    ]
    if not coef:
        params = [p for p in params if p.name != "fixef"]
    chosen = P.resolve(priors, params, factory)
    spec = {p.name: p for p in params}
    coords = {group: labels(risks), "cell": np.arange(len(cells))}
    if coef:
        coords["coef"] = coef
        coords["coef_r"] = ["(Intercept)", *coef]

    with pm.Model(coords=coords) as model:
        d = {name: pm.Data(name, cells[col].to_numpy(float), dims="cell") for name, col in data_columns.items()}
        d.update({name: pm.Data(name, np.asarray(v, float), dims=group) for name, v in risk_stats.items()})
        d["design"] = pm.Data("design", X, dims=("cell", "coef")) if coef else None
        d["risk"] = pm.Data("cell_risk", risk.astype("int64"), dims="cell")
        a = P.register(intercept_name, chosen[intercept_name], spec[intercept_name])
        pm.Deterministic("collective", inverse_link(family.link, a, pt))
        eta = a + 0.0 * d[next(iter(data_columns))]
        if coef:
            beta = P.register("fixef", chosen["fixef"], spec["fixef"])
            eta = eta + d["design"] @ beta
            # R's parametrisation: covariates uncentred
            pm.Deterministic("intercept", a - pt.sum(beta[n_factor:] * centres) if len(centres) else a)
        sd = P.register("between_sd", chosen["between_sd"], spec["between_sd"])
        pm.Deterministic("between", sd**2)
        extra = {p.name: P.register(p.name, chosen[p.name], p) for p in family.extra}
        z = pm.Normal("z", 0.0, 1.0, dims=group)
        u = pm.Deterministic("u", sd * z, dims=group)
        pm.Deterministic("relativity", pt.exp(u), dims=group)
        eta_full = eta + u[d["risk"]]
        ll = segsum(pt, family.loglik(eta_full, d, extra), d["risk"], J)
        pm.Deterministic("loglik", ll, dims=group)
        pm.Potential("conditional_likelihood", ll.sum())
        w = d[_data_name(data_columns, family.weight)]
        mean = inverse_link(family.link, eta_full, pt)
        pm.Deterministic("premium", segsum(pt, w * mean, d["risk"], J) / segsum(pt, w, d["risk"], J), dims=group)
        model_extra(family, model, d, eta, sd, extra, J, group)

    attach(model, ModelInfo(factory=factory, likelihood="latent", observed=family.observed,
                            augment=_augmenter(family, group, intercept_name, data_columns, cells),
                            target_accept=0.95))
    return model


def _data_name(data_columns: dict, column: str) -> str:
    return next(name for name, col in data_columns.items() if col == column)


def model_extra(family: Family, model, d, eta, sd, extra, J, group) -> None:
    """Bühlmann's linear credibility of the model, where its moments are known in closed
    form: for R = exp(u), E R = exp(s²/2), Var R = exp(s²)(exp(s²) - 1).

    * Poisson: N_i | R ~ Poisson(m_i R), m_i = sum_c e_c exp(eta_c) (``expected_claims``):
      Z_i = m_i Var R / (m_i Var R + E R) = m_i / (m_i + k), k = exp(-s²/2) / (exp(s²) - 1);
    * Gamma: per claim, Y/mu | R has mean R and variance phi R²: EPV = phi exp(2 s²),
      Z_i = w_i / (w_i + k), k = phi exp(s²) / (exp(s²) - 1) (w_i: the risk's claim count);
    * binomial: the logit-normal has no closed-form moments: no Z, k.
    """
    s2 = sd**2
    if family.name == "poisson":
        m = pm.Deterministic("expected_claims", segsum(pt, d["exposure"] * pt.exp(eta), d["risk"], J), dims=group)
        k = pm.Deterministic("k", pt.exp(-s2 / 2) / pt.expm1(s2))
        pm.Deterministic("Z", m / (m + k), dims=group)
    elif family.name == "gamma":
        k = pm.Deterministic("k", extra["dispersion"] * pt.exp(s2) / pt.expm1(s2))
        w = d["claims_total"]
        pm.Deterministic("Z", w / (w + k), dims=group)


def _augmenter(family: Family, group: str, intercept_name: str, data_columns: dict, cells: pd.DataFrame):
    """Posterior predictive of each risk's observed statistic (simulated cell by cell from
    the draws' linear predictors) and the observed values."""

    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        if not predictive:
            return {}
        coords = {group: list(model.coords[group])}
        J = len(coords[group])
        risk = np.asarray(model["cell_risk"].get_value())
        eta = stack_draws(posterior, intercept_name)[:, None] + stack_draws(posterior, "u")[:, risk]
        if "fixef" in posterior:
            eta = eta + stack_draws(posterior, "fixef") @ np.asarray(model["design"].get_value()).T
        values = {name: np.asarray(model[name].get_value()) for name in data_columns}
        extra = {p.name: stack_draws(posterior, p.name)[:, None] for p in family.extra}
        sim = family.simulate(rng, inverse_link(family.link, eta), values, extra)
        total = family.observed_total(sim, values, risk, J)
        observed = family.observed_total(values[family.observed_cell], values, risk, J)
        return {"posterior_predictive": {family.observed: unstack_draws(total, posterior, [group], coords)},
                "observed_data": {family.observed: xr.DataArray(observed, dims=(group,), coords=coords)}}

    return augment


def cell_table(frame, keys: list[str], columns: dict, aggregate: bool) -> pd.DataFrame:
    """The validated rows as pandas with ``columns`` (new name -> function of the rows),
    summed by ``keys`` when ``aggregate`` (the likelihood depends on the rows only through
    these cell totals)."""
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    rows = frame.to_pandas()
    out = rows[keys].copy()
    for name, values in columns.items():
        out[name] = values(rows)
    if not aggregate:
        return out.reset_index(drop=True)
    return out.groupby(keys, sort=True, dropna=False).sum().reset_index()


def as_keys(group, fixed, covariates):
    fixed, covariates = as_list(fixed), as_list(covariates)
    check_columns(group, fixed, covariates)
    return fixed, covariates
