"""The nested Gaussian credibility model behind ``buhlmann``, ``buhlmann_straub`` and
``hierarchical``: X_jt = m + (one effect per level) + e_jt, Var e_jt = sigma2/w_jt.

One level is Bühlmann–Straub (docs/formulas.md §2), several levels are Jewell's hierarchical
model (docs/formulas.md §3). The data enter only through each innermost risk's n, weight, weighted
mean, within sum of squares (``portfolio.summarise``) and sum of log weights.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .._arguments import column_arguments
from ..credibility._common import ZERO_SD, location, magnitude
from ..errors import DegenerateResponseError, TooFewPeriodsError, TooFewRisksError
from ..portfolio import summarise, validate
from . import priors as P
from ._base import SUMMARY_STATISTICS, ModelInfo, attach, labels, stack_draws, sum_log_weight, summary_columns, unstack_draws
from ..likelihood.gaussian import (
    credibility_factor,
    nested_collapse,
    nested_conditional_means,
    nested_posterior,
    nested_precisions,
    within_term,
    within_total,
    within_totals,
)

LIKELIHOODS = ("marginal", "latent")


def check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        from ..errors import PriorError  # a model-specification error, raised before compiling

        raise PriorError(f"likelihood must be 'marginal' or 'latent', got {likelihood!r}")


def nested_data(data, levels: list[str], response: str, weight: str | None):
    """Validate and reduce: innermost-risk statistics, the nesting and every level's labels."""
    column_arguments(group=levels, response=response, weight=weight)
    frame = validate(data, groups=levels, numeric=response, positive=weight, min_groups=2)
    frame, centre = location(frame, response)
    table = summarise(frame, by=levels, response=response, weight=weight, check=False)
    keys = table.index.to_frame(index=False) if len(levels) > 1 else pd.DataFrame({levels[0]: table.index})
    codes, names, parents = [], [], []
    for depth, level in enumerate(levels):
        # nodes of this level = distinct label paths down to it, in the (sorted) table's order
        code, uniq = pd.factorize(pd.MultiIndex.from_frame(keys[levels[: depth + 1]]))
        node_tuples = list(uniq)
        # a nested node is named by its path "sector:risk", as the classical and EB fits name it
        names.append(labels([t[-1] for t in node_tuples]) if depth == 0 else labels(node_tuples))
        if depth > 0:
            parent_of = np.zeros(len(node_tuples), dtype=int)
            parent_of[code] = codes[-1]
            parents.append(parent_of)
        codes.append(code)
    if len(names[0]) < 2:
        raise TooFewRisksError(f"needs at least 2 groups at level {levels[0]!r}, found {len(names[0])}", column=levels[0])
    df = int(table["n"].sum() - len(table))
    if df < 1:
        raise TooFewPeriodsError(
            "every risk has a single observation, so the within variance is not identified", column=levels[-1]
        )
    stats = {
        "n": table["n"].to_numpy(float),
        "weight": table["weight"].to_numpy(float),
        "mean": table["mean"].to_numpy(float),
        "within_ss": table["within_ss"].to_numpy(float),
        "sum_log_w": sum_log_weight(frame, levels, weight, table.index),
    }
    check_within(stats["within_ss"], stats["n"], stats["mean"], magnitude(frame, response, centre), response)
    return stats, names, parents, centre


def check_within(within_ss, n, means, size, response) -> None:
    """Refuse data whose within variance is 0 at the resolution of the data (``size`` =
    largest |response|): every risk's observations equal. The likelihood is unbounded as
    sigma2 -> 0 and a sampler would fail on it."""
    if np.sum(within_ss) > (ZERO_SD * size) ** 2 * np.sum(n):
        return
    what = "every response is equal" if np.ptp(means) == 0 else "every risk's observations are equal"
    raise DegenerateResponseError(
        f"{what}, so the within variance is 0 and the Bayesian model has no proper posterior "
        "(the likelihood is unbounded as sigma2 -> 0); the classical fit gives the boundary answer",
        column=response,
    )


def default_params(stats, levels: list[str], location: float = 0.0) -> list[P.Param]:
    """Weakly informative defaults scaled to the data (see the factories' docstrings);
    ``stats`` holds means centred at ``location``."""
    w, x = stats["weight"], stats["mean"]
    centre = float(np.sum(w * x) / np.sum(w)) + location
    df = stats["n"].sum() - len(x)
    sigma_hat = float(np.sqrt(stats["within_ss"].sum() / df))
    spread = P.scale_of(x) if len(x) > 1 else sigma_hat
    L = len(levels)
    shape = (L,) if L > 1 else ()
    return [
        P.Param("collective", (), lambda: pm.Normal.dist(mu=P.from_data("collective_mu", centre),
                                                         sigma=P.from_data("collective_sigma", 10 * spread))),
        P.Param("between_sd", shape, lambda: pm.HalfNormal.dist(sigma=P.from_data("between_sd_sigma",
                                                                                  np.full(shape, 2.5 * spread))),
                positive=True, dims="level" if L > 1 else None),
        P.Param("within_sd", (), lambda: pm.HalfNormal.dist(sigma=P.from_data("within_sd_sigma", 2.5 * sigma_hat)),
                positive=True),
    ]


def build(factory: str, data, levels: list[str], response: str, weight: str | None, priors, likelihood: str):
    """Validate data and priors, then build the PyMC model (marginal or latent)."""
    check_likelihood(likelihood)
    stats, names, parents, centre = nested_data(data, levels, response, weight)
    params = default_params(stats, levels, centre)
    chosen = P.resolve(priors, params, factory)
    L = len(levels)
    sizes = [len(n) for n in names]
    coords = {level: names[i] for i, level in enumerate(levels)}
    if L > 1:
        coords["level"] = list(levels)
    inner, top = levels[-1], levels[0]

    with pm.Model(coords=coords) as model:
        data_vars = {k: pm.Data(k, v, dims=inner) for k, v in stats.items()}
        totals = {k: pm.Data(k, v) for k, v in within_totals(stats).items()}  # sums over the risks
        loc = pm.Data("location", centre)  # the response is centred at it (shift-exact algebra)
        spec = {p.name: p for p in params}
        m = P.register("collective", chosen["collective"], spec["collective"])
        sd = P.register("between_sd", chosen["between_sd"], spec["between_sd"])
        sigma = P.register("within_sd", chosen["within_sd"], spec["within_sd"])
        if "collective" not in model.named_vars:
            pm.Deterministic("collective", m)
        between = pm.Deterministic("between", sd**2, dims="level" if L > 1 else None)
        within = pm.Deterministic("within", sigma**2)
        tau2 = [between[i] for i in range(L)] if L > 1 else [between]
        # k: EPV/VHM at the risk level; VHM ratios of adjacent levels above it (docs/formulas.md §3)
        ks = [tau2[i + 1] / tau2[i] for i in range(L - 1)] + [within / tau2[-1]]
        pm.Deterministic("k", pt.stack(ks) if L > 1 else ks[0], dims="level" if L > 1 else None)
        A, _ = nested_precisions(pt, tau2, within, data_vars, parents, sizes)
        for lv, level in enumerate(levels):
            suffix = "" if lv == L - 1 else f"_{level}"
            pm.Deterministic("Z" + suffix, credibility_factor(tau2[lv], A[lv]), dims=level)

        m_c = m - loc
        if likelihood == "marginal":
            ll, A_, B_ = nested_collapse(pt, m_c, tau2, within, data_vars, parents, sizes)
            means = nested_conditional_means(m_c, tau2, A_, B_, parents)
            for lv, level in enumerate(levels):
                suffix = "" if lv == L - 1 else f"_{level}"
                pm.Deterministic("premium" + suffix, means[lv] + loc, dims=level)
            pm.Deterministic("loglik", ll, dims=top)
            # the same sum, the risks' within terms added up once, from their data-only totals
            between = nested_collapse(pt, m_c, tau2, within, data_vars, parents, sizes, within=False)[0]
            pm.Potential("marginal_likelihood", between.sum() + within_total(pt, within, totals))
        else:
            node = m_c
            for lv, level in enumerate(levels):
                suffix = "" if lv == L - 1 else f"_{level}"
                z = pm.Normal("u_raw" + suffix, 0.0, 1.0, dims=level)
                u = pm.Deterministic("u" + suffix, (sd[lv] if L > 1 else sd) * z, dims=level)
                node = (node if lv == 0 else node[parents[lv - 1]]) + u
                pm.Deterministic("premium" + suffix, node + loc, dims=level)
            x, w = data_vars["mean"], data_vars["weight"]
            mean_term = -0.5 * (np.log(2 * np.pi) + pt.log(within / w) + (x - node) ** 2 * w / within)
            ll = within_term(pt, within, data_vars["n"], w, data_vars["within_ss"], data_vars["sum_log_w"]) + mean_term
            pm.Deterministic("loglik", ll, dims=inner)
            pm.Potential("conditional_likelihood", mean_term.sum() + within_total(pt, within, totals))

    suffixes = [f"_{lv}" for lv in levels[:-1]] + [""]
    info = ModelInfo(
        factory=factory,
        likelihood=likelihood,
        observed=response,
        augment=_augmenter(levels, response, parents, sizes, likelihood),
        after=tuple(f"{name}{sfx}" for name in ("Z", "premium") for sfx in suffixes) if likelihood == "marginal" else (),
        summarise=_summariser(inner) if likelihood == "marginal" and L == 1 else None,
    )
    attach(model, info)
    return model


def _hyperparameter_draws(model, posterior: xr.Dataset, L: int):
    """The data's location and, as (draws, 1) columns, the collective mean relative to it, each
    level's between variance and the within variance: what the exact conditional draws read."""
    loc = float(model["location"].get_value())
    m = stack_draws(posterior, "collective")[:, None] - loc
    between = stack_draws(posterior, "between")
    tau2 = [between[:, i:i + 1] for i in range(L)] if L > 1 else [between[:, None]]
    return loc, m, tau2, stack_draws(posterior, "within")[:, None]


def _augmenter(levels, response, parents, sizes, likelihood):
    L = len(levels)
    inner = levels[-1]

    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        stats = {k: np.asarray(model[k].get_value()) for k in ("n", "weight", "mean", "within_ss", "sum_log_w")}
        coords = {lv: list(model.coords[lv]) for lv in levels}
        loc, m, tau2, within = _hyperparameter_draws(model, posterior, L)
        out = {"posterior": {}}
        if likelihood == "marginal":
            A, B = nested_precisions(np, tau2, within, stats, parents, sizes)
            Z, means, node = nested_posterior(rng, m, tau2, A, B, parents)
            u = [node[lv] - (m if lv == 0 else node[lv - 1][:, parents[lv - 1]]) for lv in range(L)]
            for lv, level in enumerate(levels):  # premiums shifted back in place: no copies of draws x risks
                suffix = "" if lv == L - 1 else f"_{level}"
                means[lv] += loc
                node[lv] += loc
                out["posterior"]["Z" + suffix] = unstack_draws(Z[lv], posterior, [level], coords)
                out["posterior"][f"premium{suffix}_conditional_mean"] = unstack_draws(means[lv], posterior, [level], coords)
                out["posterior"]["premium" + suffix] = unstack_draws(node[lv], posterior, [level], coords)
                out["posterior"]["u" + suffix] = unstack_draws(u[lv], posterior, [level], coords)
            theta = node[-1]
        else:
            theta = stack_draws(posterior, "premium")
        if predictive:
            rep = rng.standard_normal(theta.shape)
            rep *= np.sqrt(within / stats["weight"])
            rep += theta
            out["posterior_predictive"] = {response: unstack_draws(rep, posterior, [inner], coords)}
            out["observed_data"] = {response: xr.DataArray(stats["mean"] + loc, dims=(inner,), coords={inner: coords[inner]})}
        return out

    return augment


SUMMARY_BLOCK = 50_000_000  # risks x draws in flight over all threads (0.4 GB a float64 array)
SUMMARY_THREADS = 8  # at most; a block is SUMMARY_BLOCK / SUMMARY_THREADS whatever the machine


def _summariser(risk: str):
    """``bc.sample(..., per_risk="summary")`` for one level (Bühlmann, Bühlmann–Straub): the
    same exact conditional draws as ``augment``, a block of risks at a time laid out (risks,
    draws) so each risk's draws are contiguous, reduced to ``SUMMARY_STATISTICS`` and dropped:
    memory is a few blocks, not every risk's draws. Blocks run on the machine's cores (numpy
    releases the GIL), each with its own random stream spawned from ``rng``, so the numbers do
    not depend on the number of threads."""

    def summarise(model, posterior: xr.Dataset, rng) -> xr.Dataset:
        stats = {k: np.asarray(model[k].get_value())[:, None] for k in ("weight", "mean")}
        loc, m, tau2, within = _hyperparameter_draws(model, posterior, 1)
        m, tau2, within = m.T, [tau2[0].T], within.T  # (1, draws): a risk's draws along a row
        n_risks = len(stats["mean"])
        out = {name: np.empty((n_risks, len(SUMMARY_STATISTICS))) for name in ("premium", "premium_conditional_mean", "Z")}
        block = max(1, SUMMARY_BLOCK // (m.shape[1] * SUMMARY_THREADS))
        blocks = [slice(start, start + block) for start in range(0, n_risks, block)]

        def one(rows, stream):
            A, B = nested_precisions(np, tau2, within, {k: v[rows] for k, v in stats.items()}, [], [])
            Z, means, node = nested_posterior(stream, m, tau2, A, B, [])
            out["Z"][rows] = summary_columns(Z[0])
            out["premium_conditional_mean"][rows] = summary_columns(means[0] + loc)
            out["premium"][rows] = summary_columns(node[0] + loc)

        with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, SUMMARY_THREADS))) as pool:
            list(pool.map(one, blocks, rng.spawn(len(blocks))))
        coords = {risk: list(model.coords[risk]), "statistic": list(SUMMARY_STATISTICS)}
        return xr.Dataset({name: xr.DataArray(v, dims=(risk, "statistic"), coords=coords) for name, v in out.items()})

    return summarise
