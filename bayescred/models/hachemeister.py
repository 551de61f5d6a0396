"""Hachemeister regression credibility as a Bayesian model (docs/formulas.md §4; seed
004_07f8365c92996b9b.txt eqs 3.24-3.32 and eq. 4.2)."""

from __future__ import annotations

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .._arguments import column_arguments
from ..credibility._common import location
from ..credibility.hachemeister import STRUCTURES, _residual_ss
from ..errors import ConstantCovariateError, DegenerateResponseError, InvalidArgumentError, PriorError, TooFewPeriodsError
from ..portfolio import cross_products, validate
from . import priors as P
from ._base import ModelInfo, attach, labels, stack_draws, sum_log_weight, unstack_draws, records_arguments
from ._gaussian import check_likelihood
from ..likelihood import regression
from ..likelihood.gaussian import LOG2PI, _mat, inv2, mm2, mv2, regression_blocks, regression_loglik

CENTERINGS = ("origin", "global", "group")


def _stats(data, group, time, response, weight, centering):
    if centering not in CENTERINGS:
        raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")
    column_arguments(group=group, time=time, response=response, weight=weight)
    frame = validate(data, groups=group, numeric=[response, time], positive=weight, min_groups=2)
    frame, loc = location(frame, response)  # centred response: the quadratic forms keep every digit
    cp = cross_products(frame, group, response, [time], weight, check=False)
    M, b, w = cp["QWQ"], cp["QWy"], cp["weight"]
    t_mean = M[:, 0, 1] / w
    spread = M[:, 1, 1] / w - t_mean**2
    if np.all(spread <= 1e-12 * np.maximum(1.0, M[:, 1, 1] / w)) and np.ptp(t_mean) == 0:
        raise ConstantCovariateError("time is constant over the whole portfolio: the trend is not identified", time)
    if np.sum(np.maximum(cp["n"] - 2, 0)) < 1:
        raise TooFewPeriodsError("no risk has more than 2 periods: the within variance is not identified", group)
    if not np.any(_residual_ss(frame, group, response, [time], weight)[cp["n"] > 2] > 0):
        raise DegenerateResponseError(
            "every risk's responses lie exactly on a line in time (within variance 0), so the Bayesian "
            "model has no proper posterior; the classical fit gives the boundary answer",
            column=response,
        )
    centre = {"origin": np.zeros_like(w), "global": np.full_like(w, M[:, 0, 1].sum() / w.sum()), "group": t_mean}[centering]
    # Q' = Q T_j, T_j = [[1, -c_j], [0, 1]]: centring transforms the cross-products exactly
    T = np.zeros_like(M)
    T[:, 0, 0] = T[:, 1, 1] = 1.0
    T[:, 0, 1] = -centre
    M = np.einsum("jab,jbc,jcd->jad", T.transpose(0, 2, 1), M, T)
    b = np.einsum("jba,jb->ja", T, b)
    out = frame.select(nw.col(time).max().alias("t"))
    t_last = float((out.collect() if isinstance(out, nw.LazyFrame) else out).item(0, "t"))
    index = pd.Index(cp["levels"], name=group)
    stats = {
        "M": M, "b": b, "c": cp["yWy"], "n": cp["n"].astype(float), "weight": w,
        "sum_log_w": sum_log_weight(frame, group, weight, index),
        "t_next": (t_last + 1.0) - centre,
    }
    return stats, labels(cp["levels"]), loc


def _default_params(stats, loc: float, structure: str) -> list[P.Param]:
    M, b, n = stats["M"], stats["b"], stats["n"]
    ok = (n >= 3) & (np.abs(np.linalg.det(M)) > 1e-12 * np.abs(M[:, 0, 0] * M[:, 1, 1]))
    B = np.linalg.solve(M[ok], b[ok][..., None])[..., 0]
    rss = stats["c"][ok] - np.einsum("ja,ja->j", b[ok], B)
    sigma_hat = float(np.sqrt(max(rss.sum(), 0.0) / (n[ok] - 2).sum())) or 1.0
    w = stats["weight"][ok]
    centre = (w[:, None] * B).sum(0) / w.sum() + np.array([loc, 0.0])
    spread = np.array([P.scale_of(B[:, k]) for k in range(2)])
    correlation = [
        P.Param("between_corr", (), lambda: None, bounds=(-1.0, 1.0), fixable_only=True),
        P.Param("lkj_eta", (), lambda: None, positive=True, fixable_only=True),
    ] if structure == "correlated" else []
    return [
        P.Param("collective", (2,), lambda: pm.Normal.dist(mu=P.from_data("collective_mu", centre),
                                                           sigma=P.from_data("collective_sigma", 10 * spread)),
                dims="coef"),
        P.Param("between_sd", (2,), lambda: pm.HalfNormal.dist(sigma=P.from_data("between_sd_sigma", 2.5 * spread)),
                positive=True, dims="coef"),
        *correlation,
        P.Param("within_sd", (), lambda: pm.HalfNormal.dist(sigma=P.from_data("within_sd_sigma", 2.5 * sigma_hat)),
                positive=True),
    ]


def _stack2(e):
    """Four entries back to a (..., 2, 2) tensor."""
    return pt.stack([pt.stack([e[0], e[1]], axis=-1), pt.stack([e[2], e[3]], axis=-1)], axis=-2)


@records_arguments
def hachemeister(data, group: str, time: str, response: str, weight: str | None = None, centering: str = "origin",
                 priors=None, likelihood: str = "marginal", *, structure: str = "diagonal"):
    """PyMC model of Hachemeister's regression credibility: X_jt = (1, t) beta_j + e_jt,
    beta_j ~ N(beta, U), e_jt ~ N(0, sigma2/w_jt), time centred as ``centering`` says
    ("origin": t as given; "global": t minus the portfolio's weighted centre of gravity;
    "group": each risk's own).

    ``structure`` (docs/formulas.md §4, "Covariance structure"; the same option as
    ``bc.credibility.hachemeister(structure=)`` and the mixed models ``(1 + t || risk)`` /
    ``(1 + t | risk)``): "diagonal" (default) U = diag(between_sd**2), intercept and trend
    independent a priori and a posteriori, no correlation parameter; "correlated" a full
    2 x 2 U with the LKJ correlation below. Diagonal is the default because it is the
    textbook model (Bühlmann–Gisler 2005 p. 209, seed 004 Tables 3.4–3.6) and actuar's
    ``cm(regformula=, adj.intercept = TRUE)``. The model records it with its other
    arguments: ``bayescred.models._base.info_of(model).arguments["structure"]``, which
    ``bc.sample`` writes to the posterior's ``attrs["bayescred_arguments"]`` (JSON).

    Same data arguments as ``bc.credibility.hachemeister``. Dims: ``group``, ``coef`` and
    ``coef_`` (= ["intercept", time]). Variables: ``collective`` (beta, dim coef),
    ``between`` (U, coef x coef_), ``between_sd``, ``between_corr`` (correlated only), ``within`` (sigma2),
    ``k`` (the matrix sigma2 U^-1), ``A`` (credibility matrix per risk,
    A_j = (U M_j + sigma2 I)^-1 U M_j, M_j = Q_j'W_jQ_j), ``risk_coef`` (beta_j) and
    ``premium`` = (1, t_next) beta_j at the period after the last one observed.

    ``likelihood="marginal"`` integrates beta_j out from each risk's cross-products
    (Q'WQ, Q'Wy, y'Wy): O(risks) per gradient; ``risk_coef``/``premium`` in the model are
    the credibility estimates A_j B_j + (I - A_j) beta at each draw (``bc.sample`` renames
    them ``*_conditional_mean`` and adds exact draws from N(that, sigma2 (U M_j + sigma2 I)^-1 U)).
    ``likelihood="latent"``: beta_j = beta + L z_j, L the Cholesky factor of U, z_j ~ N(0, I).

    Default priors (B_j = stand-alone WLS fits of the risks with >= 3 periods, s_k = their SD
    per coefficient, sigma_hat = pooled residual SD):
    ``collective`` ~ Normal(weighted mean of B_j, 10 s) per coefficient; ``between_sd`` ~
    HalfNormal(2.5 s) (no risk's coefficient can sit much farther from the collective than
    the stand-alone fits scatter); ``within_sd`` ~ HalfNormal(2.5 sigma_hat); the correlation
    ~ LKJ(eta = ``lkj_eta`` = 2), which in 2-D is (1 + rho)/2 ~ Beta(2, 2): it keeps |rho| off
    1 (the boundary lme4 hits on these data, docs/reference-values.md E6) without ruling it out.
    ``between_corr`` and ``lkj_eta`` (correlated only) can only be fixed (numbers).
    """
    check_likelihood(likelihood)
    if structure not in STRUCTURES:
        raise InvalidArgumentError(f"structure must be one of {STRUCTURES}, got {structure!r}", column="structure")
    fixed_corr = [k for k in ("between_corr", "lkj_eta") if k in (priors or {})]
    if structure == "diagonal" and fixed_corr:
        raise PriorError(f"prior {', '.join(map(repr, fixed_corr))}: structure='diagonal' has no correlation "
                         "between intercept and trend; pass structure='correlated' to set it")
    stats, names, loc = _stats(data, group, time, response, weight, centering)
    params = _default_params(stats, loc, structure)
    chosen = P.resolve(priors, params, "hachemeister")
    correlated = structure == "correlated"
    corr_fixed = correlated and chosen["between_corr"] is not None
    eta = float(chosen["lkj_eta"]) if correlated and chosen["lkj_eta"] is not None else 2.0
    spec = {p.name: p for p in params}
    coef = ["intercept", str(time)]
    coords = {group: names, "coef": coef, "coef_": coef}

    with pm.Model(coords=coords) as model:
        d = {k: pm.Data(k, v, dims={"M": (group, "coef", "coef_"), "b": (group, "coef")}.get(k, group))
             for k, v in stats.items()}
        loc = pm.Data("location", loc)  # the response is centred at it: intercepts move by it
        beta = P.register("collective", chosen["collective"], spec["collective"])
        if "collective" not in model.named_vars:
            beta = pm.Deterministic("collective", beta, dims="coef")
        sd = P.register("between_sd", chosen["between_sd"], spec["between_sd"])
        if not correlated:
            rho = pt.as_tensor(0.0)  # U = diag(between_sd**2)
        elif corr_fixed:
            rho = pt.as_tensor(float(chosen["between_corr"]))
        else:
            # LKJ(eta) on a 2 x 2 correlation matrix is exactly (1 + rho)/2 ~ Beta(eta, eta)
            rho = 2.0 * pm.Beta("between_corr_unit", eta, eta) - 1.0
        # L = [[l00, 0], [l10, l11]], U = L L' entry by entry: the log density reads these scalars,
        # never a stacked matrix, so its gradient has no join/split to compile
        l00, l10, l11 = sd[0], rho * sd[1], pt.sqrt(1 - rho**2) * sd[1]
        if "between_sd" not in model.named_vars:
            pm.Deterministic("between_sd", sd, dims="coef")
        if correlated:
            pm.Deterministic("between_corr", rho)
        off = l00 * l10
        Ue = (l00**2, off, off, l10**2 + l11**2)
        pm.Deterministic("between", _stack2(Ue), dims=("coef", "coef_"))
        sigma = P.register("within_sd", chosen["within_sd"], spec["within_sd"])
        within = pm.Deterministic("within", sigma**2)
        Me = _mat(d["M"])
        pm.Deterministic("k", _stack2(tuple(within * x for x in inv2(Ue))), dims=("coef", "coef_"))
        H, E = regression_blocks(Ue, within, Me)
        pm.Deterministic("A", _stack2(mm2(E, Me)), dims=(group, "coef", "coef_"))
        x_next = (1.0, d["t_next"])
        bstats = {"M": Me, "b": (d["b"][:, 0], d["b"][:, 1]), "c": d["c"], "n": d["n"], "sum_log_w": d["sum_log_w"]}
        if likelihood == "marginal":
            beta_c = (beta[0] - loc, beta[1])  # centred, as the cross-products
            ll, _, _, dev = regression_loglik(pt, beta_c, Ue, within, bstats)
            shift = mv2(E, dev)
            theta = (beta[0] + shift[0], beta[1] + shift[1])
            pm.Deterministic("loglik", ll, dims=group)
            # the same sum as one Op with its own gradient: what the sampler compiles (likelihood.regression)
            pm.Potential("marginal_likelihood", regression.loglik_total(pt, beta_c, (Ue[0], Ue[1], Ue[3]), within, d))
        else:
            z = pm.Normal("u_raw", 0.0, 1.0, dims=(group, "coef"))
            u = pm.Deterministic("u", pt.stack([l00 * z[:, 0], l10 * z[:, 0] + l11 * z[:, 1]], axis=-1), dims=(group, "coef"))
            tc = ((beta[0] - loc) + u[:, 0], beta[1] + u[:, 1])  # centred, as the cross-products
            theta = (tc[0] + loc, tc[1])
            Mt = mv2(Me, tc)
            quad = d["c"] - 2 * (tc[0] * bstats["b"][0] + tc[1] * bstats["b"][1]) + tc[0] * Mt[0] + tc[1] * Mt[1]
            ll = -0.5 * (d["n"] * (LOG2PI + pt.log(within)) - d["sum_log_w"] + quad / within)
            pm.Deterministic("loglik", ll, dims=group)
            pm.Potential("conditional_likelihood", ll.sum())
        pm.Deterministic("risk_coef", pt.stack(theta, axis=-1), dims=(group, "coef"))
        pm.Deterministic("premium", x_next[0] * theta[0] + x_next[1] * theta[1], dims=group)

    attach(model, ModelInfo(
        factory="hachemeister", likelihood=likelihood, observed=response, augment=_augmenter(group, response, likelihood),
        # the per-risk quantities of the marginal model are computed after sampling, vectorised
        # (augment), not carried through every draw by the sampler
        after=("A", "risk_coef", "premium") if likelihood == "marginal" else (),
    ))
    return model


def _augmenter(group, response, likelihood):
    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        M = np.asarray(model["M"].get_value())
        b = np.asarray(model["b"].get_value())
        w = np.asarray(model["weight"].get_value())
        t_next = np.asarray(model["t_next"].get_value())
        loc = float(model["location"].get_value())
        coords = {group: list(model.coords[group]), "coef": list(model.coords["coef"]), "coef_": list(model.coords["coef_"])}
        beta = stack_draws(posterior, "collective")
        within = stack_draws(posterior, "within")[:, None]
        out = {"posterior": {}}
        if likelihood == "marginal":
            U = stack_draws(posterior, "between")
            Ue = tuple(x[:, None] for x in _mat(U))
            Me = _mat(M)
            _, E = regression_blocks(Ue, within, Me)
            Mb = mv2(Me, (beta[:, :1] - loc, beta[:, 1:]))
            dev = (b[:, 0] - Mb[0], b[:, 1] - Mb[1])
            shift = mv2(E, dev)
            mean = (beta[:, :1] + shift[0], beta[:, 1:] + shift[1])
            A = np.stack(np.broadcast_arrays(*mm2(E, Me)), axis=-1)  # entries 00, 01, 10, 11, as _stack2
            out["posterior"]["A"] = unstack_draws(A.reshape(*A.shape[:-1], 2, 2), posterior, [group, "coef", "coef_"], coords)
            out["posterior"]["risk_coef_conditional_mean"] = unstack_draws(np.stack(mean, axis=-1), posterior, [group, "coef"], coords)
            out["posterior"]["premium_conditional_mean"] = unstack_draws(mean[0] + t_next * mean[1], posterior, [group], coords)
            c00, c01, c11 = within * E[0], within * 0.5 * (E[1] + E[2]), within * E[3]
            l00 = np.sqrt(np.maximum(c00, 0.0))
            l10 = np.divide(c01, l00, out=np.zeros_like(c01), where=l00 > 0)
            l11 = np.sqrt(np.maximum(c11 - l10**2, 0.0))
            z0, z1 = rng.standard_normal(l00.shape), rng.standard_normal(l00.shape)
            theta = (mean[0] + l00 * z0, mean[1] + l10 * z0 + l11 * z1)
            coef = np.stack(theta, axis=-1)
            out["posterior"]["risk_coef"] = unstack_draws(coef, posterior, [group, "coef"], coords)
            out["posterior"]["u"] = unstack_draws(coef - beta[:, None, :], posterior, [group, "coef"], coords)
            out["posterior"]["premium"] = unstack_draws(theta[0] + t_next * theta[1], posterior, [group], coords)
        else:
            coef = stack_draws(posterior, "risk_coef")
            theta = (coef[..., 0], coef[..., 1])
        if predictive:
            # the weighted mean response of each risk: N((M_j[0, :]/w_j) beta_j, sigma2/w_j)
            mu = (M[:, 0, 0] * (theta[0] - loc) + M[:, 0, 1] * theta[1]) / w + loc
            rep = mu + np.sqrt(within / w) * rng.standard_normal(mu.shape)
            out["posterior_predictive"] = {response: unstack_draws(rep, posterior, [group], coords)}
            out["observed_data"] = {response: xr.DataArray(b[:, 0] / w + loc, dims=(group,), coords={group: coords[group]})}
        return out

    return augment

