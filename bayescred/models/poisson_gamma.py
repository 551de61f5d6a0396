"""Poisson–gamma (multiplicative gamma risk effect) credibility as a Bayesian model
(docs/formulas.md §7 case (c); docs/reference-values.md §11.5-11.6; seed 004_07f8365c92996b9b.txt §6.3)."""

from __future__ import annotations

from collections.abc import Mapping

import narwhals.stable.v2 as nw
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.special import gammaln

from .. import rating
from .._arguments import column_arguments
from ..errors import DataError, FormulaError
from ..portfolio import validate
from . import priors as P
from ._base import ModelInfo, attach, labels, stack_draws, unstack_draws, records_arguments
from ._gaussian import check_likelihood
from ._marginal import poisson_gamma_loglik, pt_segsum


def _cells(data, group, claims, exposure, terms: rating.Terms):
    """Validate, then sum claims and exposure by (company, rating factors, covariate columns):
    the Poisson likelihood depends on the rows only through these cell totals, plus a
    parameter-free constant sum(y log e - log y!) kept for the exact log density."""
    columns = terms.variables
    frame = validate(data, groups=[group, *terms.factors], numeric=terms.covariate_columns, positive=exposure,
                     counts=claims, min_groups=2)
    keys = [group, *columns]
    rows = frame.select(*[nw.col(k) for k in keys], nw.col(claims).cast(nw.Float64).alias("y"),
                        nw.col(exposure).cast(nw.Float64).alias("e"))
    rows = rows.collect() if isinstance(rows, nw.LazyFrame) else rows
    rows = rows.to_pandas()
    rows["const"] = rows["y"] * np.log(rows["e"]) - gammaln(rows["y"] + 1.0)
    cells = rows.groupby(keys, sort=True, dropna=False).agg(y=("y", "sum"), e=("e", "sum"), const=("const", "sum"))
    return cells.reset_index()


def _design(cells, terms: rating.Terms, base) -> tuple[np.ndarray, list[str], rating.RatingDesign]:
    """The shared rating design (bayescred.rating: dummies for every factor, base = ``base``
    or the level with the largest exposure; rank checked) without its intercept column (the
    factory's ``log_collective``), covariates centred at their exposure-weighted mean (so
    ``collective`` is the base frequency there)."""
    coding = rating.design(cells, terms, exposure=cells["e"].to_numpy(float), base=base)
    X = coding.X[:, 1:].copy()
    n_cov = len(coding.covariate_columns)
    if n_cov:
        w = cells["e"].to_numpy(float)
        X[:, X.shape[1] - n_cov:] -= w @ X[:, X.shape[1] - n_cov:] / w.sum()
    return X, coding.names[1:], coding


@records_arguments
def poisson_gamma(data, group: str, claims: str, exposure: str, fixed=None, covariates=None, priors=None,
                  likelihood: str = "marginal", base=None):
    """PyMC model of y_ik ~ Poisson(u_i mu_ik), mu_ik = e_ik exp(log_collective + x_ik' fixef),
    u_i ~ Gamma(alpha, alpha) (mean 1, variance lam = 1/alpha).

    Same data arguments as ``bc.credibility.poisson_gamma`` (``claims`` counts and
    ``exposure`` per row), plus optional ``fixed``, ``base`` and ``covariates``, coded exactly
    as ``bayescred.lmm.poisson_gamma_eb`` codes them (one rule, :mod:`bayescred.rating`):
    every column in ``fixed`` is a rating factor, dummy (treatment) coded, **a numeric column
    too** (``zone = 1..7`` gets six dummies); its base level is ``base[factor]`` if given,
    otherwise the level with the largest total exposure (zone 4 / age 4 on the Swedish bus
    data); ``covariates`` are the linear terms (numeric columns or ``"log(x)"``), centred here
    at their exposure-weighted mean (so ``collective`` is the base frequency there). Dims:
    ``group`` and ``coef`` (the fixed-effect columns, named as the EB fit's ``fixef``:
    ``zone1``, ``bus.age0``); the coding (factors, base levels, columns) is recorded in the
    model's ModelInfo (``bayescred.models._base.info_of(model).coding``).

    Variables: ``collective`` (base frequency per unit exposure), ``fixef``, ``lam`` = Var(u),
    the relative variance of the risk effect (unitless), ``between`` = lam x collective², the
    variance of a risk's frequency in (claims per unit exposure)² (the classical VHM; only
    without rating factors and covariates, where the portfolio has one frequency:
    ``bayescred.rating.WHY_NO_BETWEEN``), ``alpha`` = 1/lam (= ``k`` in expected claims),
    ``expected_claims`` mu_i+ = sum_k mu_ik, ``Z`` = mu_i+/(mu_i+ + alpha) and ``premium``:
    the company's frequency per unit exposure, u_i mu_i+/e_i+. With no fixed effects the
    conditional posterior mean of the premium is (alpha + y_i+)/(alpha/collective + e_i+), the
    Gamma–Poisson credibility premium.

    ``likelihood="marginal"`` integrates u_i out (negative-multinomial per company,
    docs/reference-values.md §11.6): cost O(cells); ``bc.sample`` then draws u_i from its exact
    conditional Gamma(alpha + y_i+, alpha + mu_i+) (and renames the conditional-mean premium
    ``premium_conditional_mean``). ``likelihood="latent"``: u_i sampled explicitly.

    Default priors: ``log_collective`` ~ Normal(log(total claims/total exposure), 2.5) (a
    factor e^2.5 = 12 either way from the portfolio frequency); ``fixef`` ~ Normal(0, 2.5)
    for factors and Normal(0, 2.5/SD(x)) for covariates (relativities up to ~12); ``lam`` ~
    HalfNormal(1) (a coefficient of variation of the risk effect up to about 1.5 is
    plausible; lam = 0 is no heterogeneity).
    """
    check_likelihood(likelihood)
    column_arguments(group=group, claims=claims, exposure=exposure, fixed=fixed, covariates=covariates)
    if base is not None and not isinstance(base, Mapping):
        raise FormulaError(f"base= maps rating factors to levels, e.g. {{'zone': 4}}, got {type(base).__name__}")
    terms = rating.terms(fixed, covariates, group=group)
    cells = _cells(data, group, claims, exposure, terms)
    X, coef, coding = _design(cells, terms, base)
    n_cov = len(coding.covariate_columns)
    companies, company = np.unique(cells[group].to_numpy(), return_inverse=True)
    J = len(companies)
    y_plus = np.bincount(company, weights=cells["y"].to_numpy(), minlength=J)
    e_plus = np.bincount(company, weights=cells["e"].to_numpy(), minlength=J)
    freq = y_plus.sum() / e_plus.sum()
    if freq == 0:
        raise DataError("there are no claims at all: the frequency is not identified", column=claims)
    x_sd = np.array([1.0] * (len(coef) - n_cov) + [P.scale_of(X[:, len(coef) - n_cov + i]) for i in range(n_cov)])
    params = [
        P.Param("log_collective", (), lambda: pm.Normal.dist(mu=P.from_data("log_collective_mu", np.log(freq)),
                                                             sigma=2.5)),
        P.Param("fixef", (len(coef),), lambda: pm.Normal.dist(mu=0.0, sigma=P.from_data("fixef_sigma", 2.5 / x_sd)),
                dims="coef"),
        P.Param("lam", (), lambda: pm.HalfNormal.dist(sigma=1.0), positive=True),
    ]
    if not coef:
        params = [p for p in params if p.name != "fixef"]
    chosen = P.resolve(priors, params, "poisson_gamma")
    spec = {p.name: p for p in params}
    coords = {group: labels(companies), "cell": np.arange(len(cells))}
    if coef:
        coords["coef"] = coef

    with pm.Model(coords=coords) as model:
        d = {
            "claims": pm.Data("claims", cells["y"].to_numpy(float), dims="cell"),
            "exposure": pm.Data("exposure", cells["e"].to_numpy(float), dims="cell"),
            "claims_total": pm.Data("claims_total", y_plus, dims=group),
            "exposure_total": pm.Data("exposure_total", e_plus, dims=group),
            "log_const": pm.Data("log_const", np.bincount(company, weights=cells["const"].to_numpy(), minlength=J),
                                 dims=group),
            "company": company, "size": J,
        }
        intercept = P.register("log_collective", chosen["log_collective"], spec["log_collective"])
        pm.Deterministic("collective", pt.exp(intercept))
        eta = intercept + 0.0 * d["claims"]
        if coef:
            beta = P.register("fixef", chosen["fixef"], spec["fixef"])
            eta = eta + pt.as_tensor(X) @ beta
        lam = P.register("lam", chosen["lam"], spec["lam"])
        alpha = pm.Deterministic("alpha", 1.0 / lam)
        if not coef:  # one frequency for the portfolio: between = lam collective^2 (bayescred.rating)
            pm.Deterministic("between", lam * pt.exp(2.0 * intercept))
        pm.Deterministic("k", alpha)
        mu_plus = pm.Deterministic("expected_claims", pt_segsum(d["exposure"] * pt.exp(eta), company, J), dims=group)
        pm.Deterministic("Z", mu_plus / (mu_plus + alpha), dims=group)
        if likelihood == "marginal":
            ll, _ = poisson_gamma_loglik(pt, pt.gammaln, alpha, eta, d, pt_segsum)
            u = (alpha + d["claims_total"]) / (alpha + mu_plus)
            pm.Deterministic("loglik", ll, dims=group)
            pm.Potential("marginal_likelihood", ll.sum())
        else:
            u = pm.Gamma("u", alpha=alpha, beta=alpha, dims=group)
            ll = d["log_const"] + pt_segsum(d["claims"] * eta, company, J) + d["claims_total"] * pt.log(u) - u * mu_plus
            pm.Deterministic("loglik", ll, dims=group)
            pm.Potential("conditional_likelihood", ll.sum())
        pm.Deterministic("premium", u * mu_plus / d["exposure_total"], dims=group)

    attach(model, ModelInfo(factory="poisson_gamma", likelihood=likelihood, observed=claims,
                            augment=_augmenter(group, claims, likelihood),
                            renames={"premium": "premium_conditional_mean"} if likelihood == "marginal" else {},
                            coding=coding.coding()))
    return model


def _augmenter(group, claims, likelihood):
    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        y = np.asarray(model["claims_total"].get_value())
        e = np.asarray(model["exposure_total"].get_value())
        coords = {group: list(model.coords[group])}
        mu = stack_draws(posterior, "expected_claims")
        out = {"posterior": {}}
        if likelihood == "marginal":
            alpha = stack_draws(posterior, "alpha")[:, None]
            u = rng.gamma(alpha + y, 1.0 / (alpha + mu))
            out["posterior"]["u"] = unstack_draws(u, posterior, [group], coords)
            out["posterior"]["premium"] = unstack_draws(u * mu / e, posterior, [group], coords)
        else:
            u = stack_draws(posterior, "u")
        if predictive:
            out["posterior_predictive"] = {claims: unstack_draws(rng.poisson(u * mu).astype(float), posterior, [group], coords)}
            out["observed_data"] = {claims: xr.DataArray(y, dims=(group,), coords=coords)}
        return out

    return augment
