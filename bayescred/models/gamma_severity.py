"""Gamma severity credibility as a Bayesian model (docs/formulas.md §12): prior × the exact
marginal likelihood of :mod:`bayescred.likelihood.gamma`, then exact draws of each risk's rate."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ..likelihood import gamma as kernel
from . import priors as P
from ._base import ModelInfo, attach, labels, records_arguments, stack_draws, unstack_draws
from ._gaussian import check_likelihood


@records_arguments
def gamma_severity(data, group: str, severity: str, claims: str | None = None, priors=None,
                   likelihood: str = "marginal"):
    """PyMC model of claim sizes Gamma(shape nu, rate lambda_i), lambda_i ~ Gamma(alpha, beta).

    Same data arguments as ``bc.credibility.gamma_severity``: one row per claim
    (``claims=None``) or per cell with ``severity`` the average claim and ``claims`` the number
    of claims. Parameters: ``log_collective`` (log of the collective mean claim
    mu = nu beta/(alpha - 1)), ``nu`` (the gamma shape of a claim: 1/CV² of a risk's claims)
    and ``phi`` = between/collective² = 1/(alpha - 2) (the squared CV of the risks' mean
    claims). Deterministics in Bühlmann–Straub units (per claim): ``collective``, ``between``
    = Var mu(Theta), ``within`` = E Var(X | Theta) = (collective² + between)/nu, ``k`` =
    (alpha - 1)/nu; ``alpha``, ``beta``; per risk (dim ``group``) ``Z`` = N_i/(N_i + k) and
    ``premium`` = E[nu/lambda_i | data, hyperparameters] = nu (beta + S_i)/(alpha + nu N_i - 1).

    ``likelihood="marginal"`` integrates lambda_i out (:func:`bayescred.likelihood.gamma.log_marginal`,
    a ``pm.Potential``); ``bc.sample`` then draws ``rate`` lambda_i from its exact conditional
    Gamma(alpha + nu N_i, beta + S_i) and ``premium`` = nu/lambda_i (the conditional mean is kept
    as ``premium_conditional_mean``). ``likelihood="latent"``: lambda_i sampled explicitly.

    Default priors: ``log_collective`` ~ Normal(log(claim-weighted mean severity), 2.5) (a
    factor e^2.5 = 12 either way); ``nu`` ~ LogNormal(log nu0, 2.5) with nu0 = mean²/(pooled
    within-risk variance per claim) (when no risk has two cells: the ML of nu without risk effects); ``phi`` ~ HalfNormal(1) (a
    coefficient of variation of the risks' mean claims up to about 1.5; phi = 0 is no
    heterogeneity).

    Claim sizes that do not vary (or vary too little for double precision: nu N > 1e11) raise
    :class:`~bayescred.errors.DegenerateResponseError`, as in ``gamma_severity_eb``.
    """
    check_likelihood(likelihood)
    c = kernel.cells(data, group, severity, claims)
    mean = c.amount.sum() / c.claims.sum()
    df = int((c.cells - 1).sum())
    pooled_nu, _ = kernel.without_effects(c)  # refuses claim sizes too uniform for a gamma likelihood
    nu0 = mean**2 * df / c.within_ss.sum() if df > 0 and c.within_ss.sum() > 0 else pooled_nu
    params = [
        P.Param("log_collective", (), lambda: pm.Normal.dist(mu=P.from_data("log_collective_mu", np.log(mean)),
                                                             sigma=2.5)),
        P.Param("nu", (), lambda: pm.LogNormal.dist(mu=P.from_data("nu_mu", np.log(nu0)), sigma=2.5), positive=True),
        P.Param("phi", (), lambda: pm.HalfNormal.dist(sigma=1.0), positive=True),
    ]
    chosen = P.resolve(priors, params, "gamma_severity")
    spec = {p.name: p for p in params}
    st = c.arrays()
    coords = {group: labels(c.levels)}

    with pm.Model(coords=coords) as model:
        d = {name: pm.Data(name, st[name], dims=group) for name in ("claims", "amount", "log_a", "log_b")}
        # the log Γ(n ν) table: its length (distinct claim counts per risk) varies between
        # portfolios of the same risks, so it has no named dim and pm.set_data may resize it
        for name in ("count_n", "count_cells", "count_risk"):
            d[name] = pm.Data(name, st[name])
        d["size"] = st["size"]
        collective = pm.Deterministic("collective", pt.exp(P.register("log_collective", chosen["log_collective"],
                                                                      spec["log_collective"])))
        nu, phi = (P.register(name, chosen[name], spec[name]) for name in ("nu", "phi"))
        if "nu" not in model.named_vars:  # fixed by priors=: still reported, and read by the draws
            nu = pm.Deterministic("nu", nu)
        alpha = pm.Deterministic("alpha", 2.0 + 1.0 / phi)
        beta = pm.Deterministic("beta", kernel.rate_of(nu, alpha, collective))
        for name, value in kernel.components(nu, alpha, collective).items():
            if name != "collective":
                pm.Deterministic(name, value)
        pm.Deterministic("Z", kernel.credibility_factor(nu, alpha, d), dims=group)
        if likelihood == "marginal":
            ll = kernel.log_marginal(pt, nu, alpha, beta, d)
            pm.Deterministic("loglik", ll, dims=group)
            pm.Potential("marginal_likelihood", ll.sum())
            pm.Deterministic("premium", kernel.premium(nu, alpha, beta, d), dims=group)
        else:
            rate = pm.Gamma("rate", alpha=alpha, beta=beta, dims=group)
            ll = kernel.log_conditional(pt, nu, rate, d)
            pm.Deterministic("loglik", ll, dims=group)
            pm.Potential("conditional_likelihood", ll.sum())
            pm.Deterministic("premium", nu / rate, dims=group)

    # with few risks (collective, phi) form a funnel: on Hachemeister's 5 states, 4 x 1000 draws
    # diverged 2, 5 and 4 times (3 seeds) at target_accept 0.9, 0, 1 and 0 times at 0.95
    attach(model, ModelInfo(factory="gamma_severity", likelihood=likelihood, observed=severity,
                            augment=_augmenter(group, severity, likelihood), target_accept=0.95,
                            renames={"premium": "premium_conditional_mean"} if likelihood == "marginal" else {}))
    return model


def _augmenter(group, severity, likelihood):
    def augment(model, posterior: xr.Dataset, rng, log_likelihood: bool, predictive: bool) -> dict:
        st = {"claims": np.asarray(model["claims"].get_value()), "amount": np.asarray(model["amount"].get_value())}
        coords = {group: list(model.coords[group])}
        nu = stack_draws(posterior, "nu")[:, None]
        out = {"posterior": {}}
        if likelihood == "marginal":
            alpha = stack_draws(posterior, "alpha")[:, None]
            beta = stack_draws(posterior, "beta")[:, None]
            rate = kernel.draw_rates(rng, nu, alpha, beta, st)
            out["posterior"]["rate"] = unstack_draws(rate, posterior, [group], coords)
            out["posterior"]["premium"] = unstack_draws(nu / rate, posterior, [group], coords)
        else:
            rate = stack_draws(posterior, "rate")
        if predictive:
            # the risk's average claim over its N_i claims: Gamma(nu N_i, N_i lambda_i)
            N = st["claims"]
            draws = rng.gamma(nu * N, 1.0 / (N * rate))
            out["posterior_predictive"] = {severity: unstack_draws(draws, posterior, [group], coords)}
            out["observed_data"] = {severity: xr.DataArray(st["amount"] / N, dims=(group,), coords=coords)}
        return out

    return augment

