"""Crossed classification credibility (Dannenburg) as a Bayesian model (docs/formulas.md §6;
seed 002_112bee5238c97912.txt eqs 61-62, §3.3)."""

from __future__ import annotations

import narwhals.stable.v2 as nw
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .._arguments import check_number, column_arguments
from ..credibility._common import ZERO_SD, location, magnitude
from ..errors import DataError, DegenerateResponseError, EmptyDataError, TooFewPeriodsError, TooFewRisksError
from ..portfolio import summarise, validate
from . import priors as P
from ._base import ModelInfo, attach, labels, stack_draws, sum_log_weight, unstack_draws, records_arguments
from ._gaussian import check_likelihood
from ..likelihood.gaussian import (LOG2PI, crossed_conditional_means, crossed_credibility_factors, crossed_loglik,
                                   crossed_posterior)


def _cells(data, factors, response, weight, within_ss, within_df):
    """Cell statistics: from raw rows (summarise by both factors), or from cell summaries
    (``response`` = cell mean, ``weight`` = cell count or weight, plus the pooled
    ``within_ss`` on ``within_df`` degrees of freedom)."""
    a, b = factors
    column_arguments(factors=factors, response=response, weight=weight)
    if within_ss is None and within_df is None:
        frame = validate(data, groups=factors, numeric=response, positive=weight, min_groups=2)
        frame, loc = location(frame, response)  # centred response: sums of squares keep every digit
        size = magnitude(frame, response, loc)
        table = summarise(frame, by=factors, response=response, weight=weight, check=False)
        ss, df = float(table["within_ss"].sum()), int(table["n"].sum() - len(table))
        log_w = sum_log_weight(frame, factors, weight, table.index).sum() - np.log(table["weight"]).sum()
    else:
        if within_ss is None or within_df is None:
            raise DataError("cell summaries need both within_ss= and within_df=")
        if weight is None:
            raise DataError("cell summaries need weight= (the cell counts or weights)")
        within_ss = check_number(within_ss, "within_ss", minimum=0.0)
        within_df = check_number(within_df, "within_df", minimum=1.0, integer=True)
        frame = validate(data, groups=factors, numeric=response, positive=weight, min_groups=2)
        table = (frame.collect() if isinstance(frame, nw.LazyFrame) else frame).to_pandas()
        if table.duplicated(factors).any():
            rows = list(table.index[table.duplicated(factors)])
            raise DataError("cell summaries must have one row per cell", column=", ".join(factors), rows=rows)
        table = table.sort_values(factors).set_index(factors)
        table = table.rename(columns={response: "mean", weight: "weight"})
        size = float(table["mean"].abs().max())
        loc = float(np.sum(table["weight"] * table["mean"]) / table["weight"].sum())
        table["mean"] = table["mean"] - loc
        ss, df = float(within_ss), int(within_df)
        log_w = -np.log(table["weight"]).sum()  # each observation has unit weight: w_c = n_c
    if len(table) == 0:
        raise EmptyDataError("no cells")
    if df < 1:
        raise TooFewPeriodsError("every cell has a single observation: the within variance is not identified",
                                 column=", ".join(factors))
    if ss <= (ZERO_SD * size) ** 2 * (df + len(table)):
        raise DegenerateResponseError(
            "every cell's observations are equal (within-cell variance 0), so the Bayesian model has no "
            "proper posterior (the likelihood is unbounded as sigma2 -> 0); the classical fit gives the "
            "boundary answer",
            column=response,
        )
    keys = table.index.to_frame(index=False)
    out = {}
    for f in (a, b):
        levels, index = np.unique(keys[f].to_numpy(), return_inverse=True)
        if len(levels) < 2:
            raise TooFewRisksError(f"needs at least 2 levels, found {len(levels)}", column=f)
        out[f] = (labels(levels), index)
    cells = [f"{x}:{y}" for x, y in zip(labels(keys[a]), labels(keys[b]))]
    stats = {"mean": table["mean"].to_numpy(float), "weight": table["weight"].to_numpy(float),
             "within_ss": ss, "within_df": df, "log_w_const": float(log_w), "location": loc}
    return stats, out, cells


@records_arguments
def crossed(data, factors, response: str, weight: str | None = None, interaction: bool = True,
            within_ss: float | None = None, within_df: int | None = None, priors=None, likelihood: str = "marginal"):
    """PyMC model of y_ijt = m + a_i + b_j + c_ij + e_ijt with a ~ N(0, var_a), b ~ N(0, var_b),
    c ~ N(0, var_ab) (dropped when ``interaction=False``) and e ~ N(0, sigma2/w).

    Same data arguments as ``bc.credibility.crossed``: raw rows, or cell summaries (one row
    per cell with the cell mean as ``response`` and its count/weight as ``weight``) together
    with ``within_ss=`` and ``within_df=`` (pooled within-cell SS and its df; e.g. the
    ``credit_insurance`` dataset's ``.attrs``). Dims: ``term`` ([a, b, "a:b"]), one per
    factor, and ``cell`` ("i:j"). Variables: ``collective``; ``between`` (dim term: the
    variance of each random term); ``within``; ``k`` = within/between (dim term); ``Z`` (the
    weight of a cell's own mean in its premium: diag(C V_m^-1)) and ``premium`` per cell,
    m + C V_m^-1 (ybar - m) (docs/formulas.md §6).

    ``likelihood="marginal"`` integrates all effects out: V_m = D + F F' handled by Woodbury
    with a Cholesky factor of size (levels of a + levels of b), O(cells + levels^3) per
    gradient, and Z by the same factor, O(cells x levels^2). ``bc.sample`` then draws
    (a, b, c) from their exact joint conditional and adds
    them as ``u_<a>``, ``u_<b>``, ``u_<a>:<b>``, with each cell's ``premium``. The pointwise
    log-likelihood is per cell, conditional on the drawn effects (the marginal one does
    not factor over cells). ``likelihood="latent"``: explicit non-centred effects.

    Default priors (s = SD of the cell means, sigma_hat = sqrt(within_ss/within_df)):
    ``collective`` ~ Normal(weighted mean, 10 s); ``between_sd`` ~ HalfNormal(2.5 s) per
    term (no term's effects can spread much wider than the cell means do); ``within_sd`` ~
    HalfNormal(2.5 sigma_hat).
    """
    check_likelihood(likelihood)
    factors = list(factors)
    if len(factors) != 2 or factors[0] == factors[1]:
        raise DataError(f"factors must be two distinct columns, got {factors!r}")
    stats, levels, cells = _cells(data, factors, response, weight, within_ss, within_df)
    a, b = factors
    terms = [a, b] + ([f"{a}:{b}"] if interaction else [])
    x, w = stats["mean"], stats["weight"]
    spread = P.scale_of(x)
    sigma_hat = float(np.sqrt(stats["within_ss"] / stats["within_df"])) or spread
    centre = float(np.sum(w * x) / np.sum(w)) + stats["location"]
    params = [
        P.Param("collective", (), lambda: pm.Normal.dist(mu=P.from_data("collective_mu", centre),
                                                         sigma=P.from_data("collective_sigma", 10 * spread))),
        P.Param("between_sd", (len(terms),),
                lambda: pm.HalfNormal.dist(sigma=P.from_data("between_sd_sigma", np.full(len(terms), 2.5 * spread))),
                positive=True, dims="term"),
        P.Param("within_sd", (), lambda: pm.HalfNormal.dist(sigma=P.from_data("within_sd_sigma", 2.5 * sigma_hat)),
                positive=True),
    ]
    chosen = P.resolve(priors, params, "crossed")
    spec = {p.name: p for p in params}
    coords = {"term": terms, a: levels[a][0], b: levels[b][0], "cell": cells}
    ia, ib = levels[a][1], levels[b][1]

    with pm.Model(coords=coords) as model:
        d = {"mean": pm.Data("mean", x, dims="cell"), "weight": pm.Data("weight", w, dims="cell"),
             "within_ss": pm.Data("within_ss", stats["within_ss"]), "within_df": stats["within_df"],
             "log_w_const": stats["log_w_const"], "index_a": ia, "index_b": ib,
             "size_a": len(levels[a][0]), "size_b": len(levels[b][0])}
        loc = pm.Data("location", stats["location"])  # cell means are centred at it
        m = P.register("collective", chosen["collective"], spec["collective"])
        if "collective" not in model.named_vars:
            m = pm.Deterministic("collective", m)
        m_c = m - loc
        sd = P.register("between_sd", chosen["between_sd"], spec["between_sd"])
        between = pm.Deterministic("between", sd**2, dims="term")
        sigma = P.register("within_sd", chosen["within_sd"], spec["within_sd"])
        within = pm.Deterministic("within", sigma**2)
        pm.Deterministic("k", within / between, dims="term")
        var_ab = between[2] if interaction else pt.as_tensor(0.0)
        pm.Deterministic("Z", crossed_credibility_factors(pt, between[0], between[1], var_ab, within, d), dims="cell")
        if likelihood == "marginal":
            ll = crossed_loglik(pt, m_c, between[0], between[1], var_ab, within, d)
            pm.Potential("marginal_likelihood", ll)
            ea, eb, eab = crossed_conditional_means(pt, m_c, between[0], between[1], var_ab, within, d)
            pm.Deterministic("premium", m + ea[ia] + eb[ib] + eab, dims="cell")
        else:
            ua = pm.Deterministic(f"u_{a}", sd[0] * pm.Normal(f"u_raw_{a}", 0.0, 1.0, dims=a), dims=a)
            ub = pm.Deterministic(f"u_{b}", sd[1] * pm.Normal(f"u_raw_{b}", 0.0, 1.0, dims=b), dims=b)
            theta = m_c + ua[ia] + ub[ib]  # centred, as the cell means
            if interaction:
                theta = theta + pm.Deterministic(f"u_{a}:{b}", sd[2] * pm.Normal(f"u_raw_{a}:{b}", 0.0, 1.0, dims="cell"),
                                                 dims="cell")
            pm.Deterministic("premium", theta + loc, dims="cell")
            ll = -0.5 * (LOG2PI + pt.log(within / d["weight"]) + (d["mean"] - theta) ** 2 * d["weight"] / within)
            within_part = -0.5 * (d["within_df"] * (LOG2PI + pt.log(within)) - d["log_w_const"] + d["within_ss"] / within)
            pm.Deterministic("loglik", ll, dims="cell")
            pm.Potential("conditional_likelihood", ll.sum() + within_part)

    attach(model, ModelInfo(factory="crossed", likelihood=likelihood, observed=response,
                            augment=_augmenter(a, b, interaction, ia, ib, response, likelihood),
                            # per-cell quantities of the marginal model: computed after sampling (augment)
                            after=("Z", "premium") if likelihood == "marginal" else (),
                            # with few levels per factor the between SDs are wide and skewed:
                            # 0.9 left 3 divergences in 4,000 draws on credit_insurance, 0.95 none
                            target_accept=0.95))
    return model


def _augmenter(a, b, interaction, ia, ib, response, likelihood):
    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        x = np.asarray(model["mean"].get_value())
        w = np.asarray(model["weight"].get_value())
        loc = float(model["location"].get_value())
        coords = {dim: list(model.coords[dim]) for dim in (a, b, "cell")}
        within = stack_draws(posterior, "within")
        out = {"posterior": {}}
        if likelihood == "marginal":
            m = stack_draws(posterior, "collective")
            between = stack_draws(posterior, "between")
            var_ab = between[:, 2] if interaction else np.zeros(len(m))
            stats = {"index_a": ia, "index_b": ib, "size_a": len(coords[a]), "size_b": len(coords[b]), "weight": w, "mean": x}
            Z, (ea, eb, eab), (ua, ub, uab) = crossed_posterior(rng, m - loc, between[:, 0], between[:, 1], var_ab, within,
                                                                stats)
            theta = m[:, None] + ua[:, ia] + ub[:, ib] + uab
            out["posterior"]["Z"] = unstack_draws(Z, posterior, ["cell"], coords)
            out["posterior"]["premium_conditional_mean"] = unstack_draws(m[:, None] + ea[:, ia] + eb[:, ib] + eab, posterior,
                                                                         ["cell"], coords)
            out["posterior"][f"u_{a}"] = unstack_draws(ua, posterior, [a], coords)
            out["posterior"][f"u_{b}"] = unstack_draws(ub, posterior, [b], coords)
            if interaction:
                out["posterior"][f"u_{a}:{b}"] = unstack_draws(uab, posterior, ["cell"], coords)
            out["posterior"]["premium"] = unstack_draws(theta, posterior, ["cell"], coords)
            if log_likelihood:
                ll = -0.5 * (LOG2PI + np.log(within[:, None] / w) + (x - (theta - loc)) ** 2 * w / within[:, None])
                out["log_likelihood"] = {response: unstack_draws(ll, posterior, ["cell"], coords)}
        else:
            theta = stack_draws(posterior, "premium")
        if predictive:
            rep = theta + np.sqrt(within[:, None] / w) * rng.standard_normal(theta.shape)
            out["posterior_predictive"] = {response: unstack_draws(rep, posterior, ["cell"], coords)}
            out["observed_data"] = {response: xr.DataArray(x + loc, dims=("cell",), coords={"cell": coords["cell"]})}
        return out

    return augment
