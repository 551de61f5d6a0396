"""The GLMM factories (poisson_lognormal, gamma_lognormal, binomial_logitnormal).

* Their log-density IS the GLMM's conditional likelihood: the per-risk ``loglik`` at a point
  equals scipy's densities summed over the raw rows (the factories aggregate cells).
* Their deterministics (premium, Z, k, R's intercept) follow their formulas.
* Marginal-vs-latent does not apply (no closed-form marginal): instead the marginal
  likelihood is integrated out of the factory's own ``loglik`` by adaptive Gauss–Hermite
  quadrature and maximised under flat priors — the posterior mode — and compared with
  glmer's Laplace (nAGQ = 1) and AGQ (nAGQ = 25) fits (R, live).
* SBC smoke (slow) through benchmarks/sbc.py, and a sampled DataTree that bc.compare reads.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import minimize

import bayescred as bc
from bayescred.errors import DataError, PriorError, RankDeficientError
from bayescred.models import binomial_logitnormal, gamma_lognormal, poisson_lognormal

FLAT = "flat"


# ---------------------------------------------------------------- data

def poisson_data(seed=1, J=30, sd=0.5):
    rng = np.random.default_rng(seed)
    e = rng.uniform(5, 60, (J, 3))
    zone = np.tile(["north", "south", "east"], (J, 1))
    eff = {"north": 0.0, "south": 0.3, "east": -0.2}
    u = rng.normal(0, sd, J)
    y = rng.poisson(e * 0.1 * np.exp(np.vectorize(eff.get)(zone) + u[:, None]))
    return pd.DataFrame({"co": np.repeat(np.arange(J), 3), "zone": zone.ravel(), "y": y.ravel(), "e": e.ravel(),
                         "x": rng.normal(2.0, 1.0, 3 * J)})


def gamma_data(seed=2, J=20):
    rng = np.random.default_rng(seed)
    zone = np.tile([0, 1], (J, 1))
    w = rng.integers(1, 15, (J, 2))
    mu = 900 * np.exp(0.25 * zone + rng.normal(0, 0.4, J)[:, None])
    y = rng.gamma(w / 1.5, mu * 1.5 / w)
    return pd.DataFrame({"co": np.repeat(np.arange(J), 2), "zone": zone.ravel(), "sev": y.ravel(), "n": w.ravel()})


def binomial_data(seed=3, J=20):
    rng = np.random.default_rng(seed)
    x = np.tile([0, 1], (J, 1))
    n = rng.integers(3, 40, (J, 2))
    p = 1 / (1 + np.exp(-(-1.0 + 0.6 * x + rng.normal(0, 0.6, J)[:, None])))
    return pd.DataFrame({"g": np.repeat(np.arange(J), 2), "x": x.ravel(), "s": rng.binomial(n, p).ravel(),
                         "n": n.ravel()})


def evaluate(model, point: dict, names):
    """Deterministics ``names`` at one point of the free variables (their own scale)."""
    import pymc as pm
    import xarray as xr

    ds = xr.Dataset({k: xr.DataArray(np.asarray(v, float)[None, None],
                                     dims=("chain", "draw", *model.named_vars_to_dims.get(k, ())))
                     for k, v in point.items()})
    out = pm.compute_deterministics(ds, model=model, var_names=list(names), progressbar=False)
    return {k: out[k].values[0, 0] for k in names}


# ---------------------------------------------------------------- structure and errors

def test_factors_are_coded_as_r_does():
    d = poisson_data()
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"])
    # R: factor levels sorted, first level the base -> east is the base, names <factor><level>
    assert list(m.coords["coef"]) == ["zonenorth", "zonesouth"]
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"], base={"zone": "north"},
                          covariates=["x"])
    assert list(m.coords["coef"]) == ["zoneeast", "zonesouth", "x"]
    assert list(m.coords["co"]) == list(range(30))
    assert {"z", "between_sd", "log_collective", "fixef"} <= {v.name for v in m.free_RVs}


def test_user_errors_are_named():
    d = poisson_data()
    with pytest.raises(PriorError, match="latent"):
        poisson_lognormal(d, group="co", claims="y", exposure="e", likelihood="marginal")
    with pytest.raises(DataError, match="not a level"):
        poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"], base={"zone": "west"})
    with pytest.raises(DataError, match="'e'"):
        poisson_lognormal(d.assign(e=-d["e"]), group="co", claims="y", exposure="e")
    with pytest.raises(PriorError, match="unknown prior"):
        poisson_lognormal(d, group="co", claims="y", exposure="e", priors={"lam": 1.0})
    with pytest.raises(RankDeficientError):
        poisson_lognormal(d.assign(zone2=d["zone"]), group="co", claims="y", exposure="e", fixed=["zone", "zone2"])
    b = binomial_data()
    with pytest.raises(DataError, match="rows 3"):
        binomial_logitnormal(b.assign(s=np.where(b.index == 3, b["n"] + 1, b["s"])), group="g", successes="s",
                             trials="n")
    with pytest.raises(DataError, match="'sev'"):
        gamma_lognormal(gamma_data().assign(sev=0.0), group="co", severity="sev", claims="n")


# ---------------------------------------------------------------- the likelihood is the GLMM's

def test_poisson_loglik_is_scipy_on_the_rows():
    d = poisson_data()
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"], covariates=["x"])
    rng = np.random.default_rng(0)
    a, beta, sd, z = -2.1, np.array([0.2, 0.35, -0.1]), 0.6, rng.normal(size=30)
    out = evaluate(m, {"log_collective": a, "fixef": beta, "between_sd": sd, "z": z},
                   ["loglik", "premium", "intercept", "Z", "k", "expected_claims"])
    xbar = np.average(d["x"], weights=d["e"])  # covariates centred at the exposure-weighted mean
    X = np.column_stack([d["zone"] == "north", d["zone"] == "south", d["x"] - xbar]).astype(float)
    eta = a + X @ beta + sd * z[d["co"]]
    mu = d["e"] * np.exp(eta)
    expected = pd.Series(stats.poisson.logpmf(d["y"], mu)).groupby(d["co"]).sum()
    np.testing.assert_allclose(out["loglik"], expected, rtol=1e-10)
    np.testing.assert_allclose(out["premium"], mu.groupby(d["co"]).sum() / d.groupby("co")["e"].sum(), rtol=1e-10)
    assert out["intercept"] == pytest.approx(a - beta[2] * xbar)
    m0 = (d["e"] * np.exp(a + X @ beta)).groupby(d["co"]).sum()
    k = np.exp(-sd**2 / 2) / np.expm1(sd**2)
    np.testing.assert_allclose(out["expected_claims"], m0, rtol=1e-10)
    assert out["k"] == pytest.approx(k)
    np.testing.assert_allclose(out["Z"], m0 / (m0 + k), rtol=1e-10)


def test_poisson_lognormal_k_is_buhlmanns_for_the_lognormal():
    # Var(R)/E(R) for R = exp(u), u ~ N(0, s²), checked by simulation of the moments
    s = 0.5
    r = np.exp(np.random.default_rng(5).normal(0, s, 2_000_000))
    k_mc = r.mean() / r.var()
    assert np.exp(-s**2 / 2) / np.expm1(s**2) == pytest.approx(k_mc, rel=5e-3)


def test_gamma_loglik_is_the_density_of_an_average_of_w_claims():
    d = gamma_data()
    m = gamma_lognormal(d, group="co", severity="sev", claims="n", fixed=["zone"])
    rng = np.random.default_rng(1)
    a, beta, sd, phi, z = 6.7, np.array([0.3]), 0.5, 1.3, rng.normal(size=20)
    out = evaluate(m, {"log_collective": a, "fixef": beta, "between_sd": sd, "dispersion": phi, "z": z},
                   ["loglik", "premium", "Z", "k"])
    mu = np.exp(a + beta[0] * d["zone"] + sd * z[d["co"]])
    shape = d["n"] / phi
    expected = pd.Series(stats.gamma.logpdf(d["sev"], shape, scale=mu / shape)).groupby(d["co"]).sum()
    np.testing.assert_allclose(out["loglik"], expected, rtol=1e-10)
    np.testing.assert_allclose(out["premium"], (d["n"] * mu).groupby(d["co"]).sum() / d.groupby("co")["n"].sum())
    k = phi * np.exp(sd**2) / np.expm1(sd**2)
    assert out["k"] == pytest.approx(k)
    w = d.groupby("co")["n"].sum()
    np.testing.assert_allclose(out["Z"], w / (w + k))
    # with one claim per row (no weights) it is the plain Gamma GLMM
    m1 = gamma_lognormal(d, group="co", severity="sev", fixed=["zone"])
    out1 = evaluate(m1, {"log_collective": a, "fixef": beta, "between_sd": sd, "dispersion": phi,
                                    "z": z}, ["loglik"])
    one = pd.Series(stats.gamma.logpdf(d["sev"], 1 / phi, scale=mu * phi)).groupby(d["co"]).sum()
    np.testing.assert_allclose(out1["loglik"], one, rtol=1e-10)


def test_binomial_loglik_is_scipy_on_the_rows():
    d = binomial_data()
    m = binomial_logitnormal(d, group="g", successes="s", trials="n", fixed=["x"])
    assert "Z" not in m.named_vars  # no closed-form Bühlmann credibility for the logit-normal
    rng = np.random.default_rng(2)
    a, beta, sd, z = -0.8, np.array([0.5]), 0.7, rng.normal(size=20)
    out = evaluate(m, {"logit_collective": a, "fixef": beta, "between_sd": sd, "z": z},
                   ["loglik", "premium", "collective"])
    p = 1 / (1 + np.exp(-(a + beta[0] * d["x"] + sd * z[d["g"]])))
    expected = pd.Series(stats.binom.logpmf(d["s"], d["n"], p)).groupby(d["g"]).sum()
    np.testing.assert_allclose(out["loglik"], expected, rtol=1e-10)
    np.testing.assert_allclose(out["premium"], (d["n"] * p).groupby(d["g"]).sum() / d.groupby("g")["n"].sum())
    assert out["collective"] == pytest.approx(1 / (1 + np.exp(-a)))


# ---------------------------------------------------------------- posterior mode vs Laplace

def marginal_loglik_fn(model, nodes: int = 25):
    """log integral of the factory's own conditional likelihood over the effects, by adaptive
    Gauss–Hermite quadrature per risk (the risks are independent given the parameters, and
    loglik_j depends on z_j alone, so the gradient and Hessian of sum_j loglik_j in z are
    each risk's own, exactly): the marginal likelihood under flat priors, as a function of
    (intercept, fixef..., log between_sd). glmer's nAGQ = 25 computes the same integral."""
    import pytensor

    vv = {v.name: v for v in model.value_vars}
    ll = model.replace_rvs_by_values([model["loglik"]])[0]
    z = vv["z"]
    h = ll - 0.5 * z**2 - 0.5 * np.log(2 * np.pi)
    g = pytensor.grad(h.sum(), z)
    H = pytensor.grad(g.sum(), z)
    intercept = "log_collective" if "log_collective" in vv else "logit_collective"
    inputs = [vv[intercept], vv["fixef"], vv["between_sd_log__"], z]
    f_h = pytensor.function(inputs, h, on_unused_input="ignore")
    f_gH = pytensor.function(inputs, [g, H], on_unused_input="ignore")
    x, w = np.polynomial.hermite.hermgauss(nodes)
    J = len(model.coords[model.named_vars_to_dims["z"][0]])

    def value(theta):
        a, beta, log_sd = theta[0], theta[1:-1], theta[-1]
        zh = np.zeros(J)
        for _ in range(100):
            gz, Hz = f_gH(a, beta, log_sd, zh)
            step = gz / Hz
            zh = zh - step
            if np.max(np.abs(step)) < 1e-12:
                break
        _, Hz = f_gH(a, beta, log_sd, zh)
        s = 1 / np.sqrt(-Hz)
        vals = np.array([f_h(a, beta, log_sd, zh + np.sqrt(2) * s * xk) + xk**2 for xk in x])
        top = vals.max(axis=0)
        return float(np.sum(np.log(np.sqrt(2) * s) + top + np.log(np.exp(vals - top).T @ w)))

    return value


def posterior_mode_flat(model, start):
    f = marginal_loglik_fn(model)
    res = minimize(lambda t: -f(t), start, method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-11, "maxiter": 20_000, "maxfev": 20_000})
    res = minimize(lambda t: -f(t), res.x, method="Nelder-Mead",  # restart: NM can stall
                   options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 20_000})
    return res.x, -res.fun


GLMER = r"""
suppressMessages(library(lme4)); library(jsonlite)
d <- read.csv("{csv}"); d$zone <- factor(d$zone)
out <- list()
for (q in c(1, 25)) {{
  f <- glmer(y ~ zone + offset(log(e)) + (1 | co), data = d, family = poisson, nAGQ = q,
             control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5), tolPwrss = 1e-10))
  out[[paste0("q", q)]] <- list(fixef = as.list(fixef(f)), sd = unname(getME(f, "theta")), loglik = as.numeric(logLik(f)))
}}
cat(toJSON(out, digits = NA, auto_unbox = TRUE))
"""


@pytest.mark.r
def test_poisson_lognormal_flat_prior_mode_vs_glmer_laplace_and_agq(rscript, tmp_path):
    """The factory's posterior mode under flat priors IS the marginal ML: it matches glmer
    with nAGQ = 25 (the same integral by the same quadrature) to the optimisers' tolerance;
    the Laplace fit (nAGQ = 1) differs by the error of the Laplace approximation, which is
    second order in 1/(expected claims per company). Measured here (30 companies, ~12
    expected claims each): mode - Laplace = -5.9e-4 (intercept), 4e-5 and 6e-6 (zones),
    +3.6e-3 on between_sd = 0.675 (0.5 %); the test allows 5x: 3e-3 and 3 %.
    bc.glmm's Laplace fit is held to glmer's by its own parity tests."""
    d = poisson_data(seed=11, J=30, sd=0.5)
    csv = tmp_path / "d.csv"
    d.to_csv(csv, index=False)
    out = subprocess.run([rscript, "-e", GLMER.format(csv=csv)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"],
                          priors={"log_collective": FLAT, "fixef": FLAT, "between_sd": FLAT})
    names = ["(Intercept)", *m.coords["coef"]]
    theta, ll = posterior_mode_flat(m, np.r_[np.log(d["y"].sum() / d["e"].sum()), np.zeros(2), np.log(0.3)])
    ours = dict(zip(names, theta[:-1]), sd=np.exp(theta[-1]))
    q25 = {**r["q25"]["fixef"], "sd": r["q25"]["sd"]}
    q1 = {**r["q1"]["fixef"], "sd": r["q1"]["sd"]}
    for key in ours:
        assert ours[key] == pytest.approx(q25[key], abs=2e-4, rel=2e-4), (key, ours[key], q25[key])
    # glmer's nAGQ > 1 logLik is built from deviance residuals: it leaves out the saturated
    # model's log-likelihood sum(y log y - y - log y!) (-112.31 here), which ours includes
    from scipy.special import gammaln, xlogy

    y = d["y"].to_numpy(float)
    saturated = float(np.sum(xlogy(y, y) - y - gammaln(y + 1)))
    assert ll - saturated == pytest.approx(r["q25"]["loglik"], abs=1e-4)
    gaps = {k: ours[k] - q1[k] for k in ours}
    print("posterior mode (flat) - glmer Laplace:", gaps, "Laplace sd", q1["sd"])
    assert all(abs(gaps[k]) < 3e-3 for k in names), gaps
    assert abs(gaps["sd"]) / q1["sd"] < 3e-2, gaps


# ---------------------------------------------------------------- SBC smoke

@pytest.fixture(scope="module")
def sbc():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sbc.py"
    spec = importlib.util.spec_from_file_location("bayescred_sbc_glmm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["poisson_lognormal", "gamma_lognormal", "binomial_logitnormal"])
def test_sbc_smoke(sbc, name):
    """As tests/test_sbc_smoke.py: 12 replicates, ranks among 99 posterior draws; a wrong
    likelihood sends the truth to one tail every time (P(all 12 in an outer fifth) = 2·0.2^12)."""
    ranks = sbc.ranks(name, 12, seed=3, draws=200, tune=200, chains=2)
    assert set(ranks) >= {"collective", "fixef[0]", "between"}
    for param, r in ranks.items():
        assert len(r) == 12
        assert not np.all(r < 20) and not np.all(r > 79), (name, param, r)
        assert sbc.uniformity_pvalue(r, bins=4) > 1e-4, (name, param, r)


# ---------------------------------------------------------------- sampling, compare, report

@pytest.fixture(scope="module")
def sampled():
    d = poisson_data(seed=4, J=25)
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"])
    return d, bc.sample(m, draws=300, tune=300, chains=2, random_seed=7)


class FakeGLMM:
    """bc.glmm's result protocol (ranef() and varcorr as lme4's), with given numbers."""

    def __init__(self, levels, values, sds, between, singular=False):
        self.singular = singular
        self._re = pd.DataFrame({"grp": "co", "level": [str(v) for v in levels], "term": "(Intercept)",
                                 "value": values, "cond_sd": sds, "pev_sd": sds * 1.1, "mse_sd": sds * 1.2})
        self.varcorr = pd.DataFrame({"grp": ["co"], "var1": ["(Intercept)"], "var2": [None], "vcov": [between],
                                     "sdcor": [np.sqrt(between)]})

    def ranef(self):
        return self._re


def test_sampled_tree_has_every_group(sampled):
    _, tree = sampled
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"} <= set(tree.children)
    post = tree["posterior"]
    assert post.attrs["bayescred_factory"] == "poisson_lognormal"
    assert post["u"].dims[-1] == "co" and post["fixef"].dims[-1] == "coef"
    assert tree["log_likelihood"]["y"].shape == (2, 300, 25)
    # observed data: each company's claim total; replicated totals scatter around it
    obs = tree["observed_data"]["y"].to_numpy()
    rep = tree["posterior_predictive"]["y"].to_numpy().reshape(-1, 25)
    assert np.mean((rep < obs).mean(axis=0)) == pytest.approx(0.5, abs=0.15)


def test_compare_reads_a_glmm_fit(sampled):
    _, tree = sampled
    u = tree["posterior"]["u"]
    levels = list(u["co"].to_numpy())
    med = u.median(("chain", "draw")).to_numpy()
    sd = u.std(("chain", "draw")).to_numpy()
    fit = FakeGLMM(levels, med, sd, between=0.2)
    cmp = bc.compare(fit, tree)
    assert cmp.quantity == "relativity"
    t = cmp.premiums
    np.testing.assert_allclose(t["eblup"], np.exp(med))
    np.testing.assert_allclose(t["cond_sd"], np.exp(med) * sd)  # delta method
    np.testing.assert_allclose(t["post_mean"], tree["posterior"]["relativity"].mean(("chain", "draw")))
    # posterior SD of exp(u) vs exp(median) x SD(u): close when SD(u) is small
    assert t["sd_ratio_cond_sd"].median() == pytest.approx(1.0, abs=0.25)
    vc = cmp.variance_components
    assert vc.loc["between", "reml"] == 0.2
    assert vc.loc["between", "unit"].startswith("variance of the log-scale effect")
    assert vc.loc["between", "post_mean"] == pytest.approx(float(tree["posterior"]["between"].mean()))
    assert "post_median" in cmp.credibility  # the factory's Bühlmann Z


def test_compare_refuses_a_glmm_fit_for_a_gaussian_posterior(sampled):
    _, tree = sampled
    other = tree.copy()
    other["posterior"].attrs["bayescred_factory"] = "buhlmann_straub"
    with pytest.raises(DataError, match="GLMM factory"):
        bc.compare(FakeGLMM([0], [0.0], np.array([0.1]), 0.1), other)
    missing = FakeGLMM([0], [0.0], np.array([0.1]), 0.1)
    missing._re["grp"] = "zone"
    with pytest.raises(DataError, match=r"\(1 \| co\)"):
        bc.compare(missing, tree)


def test_implied_credibility_with_the_posterior(sampled):
    d, tree = sampled
    # a GLM's company effects, stand-in: log(observed/expected) per company vs the base company 0
    m = tree["posterior"]["expected_claims"].median(("chain", "draw")).to_series()
    y = d.groupby("co")["y"].sum()
    effect = np.log((y + 0.5) / m)
    effect = effect - effect.iloc[0]
    out = bc.implied_credibility(effect, tree, factor="co", exposure="e", data=d)
    t = out.table
    assert {"Z_median", "Z_lower", "Z_upper"} <= set(t.columns)
    assert out.k_draws.shape == (600,)


def test_report_writes_for_a_glmm_comparison(sampled, tmp_path):
    """bc.report's writer takes any run-like record; with a GLMM comparison it renders every
    section (the catalogue runner itself knows only the credibility models)."""
    from types import SimpleNamespace

    from bayescred.report import write_report

    d, tree = sampled
    u = tree["posterior"]["u"]
    fit = FakeGLMM(list(u["co"].to_numpy()), u.median(("chain", "draw")).to_numpy(),
                   u.std(("chain", "draw")).to_numpy(), between=0.2)
    cmp = bc.compare(fit, tree)
    spec = SimpleNamespace(title="Poisson–lognormal", description="GLMM", dataset="simulated",
                           model="poisson_lognormal", arguments={"group": "co"})
    run = SimpleNamespace(spec=spec, comparison=cmp, posterior=tree, data=d, classical=None, eb_summary=cmp.eb,
                          checks=pd.DataFrame(columns=["quantity", "risk", "expected", "got", "tol", "ok", "source",
                                                       "note"]))
    text = write_report(run, tmp_path / "r.html").read_text()
    for anchor in ("summary", "tables", "plots", "diagnostics"):
        assert f'<section id="{anchor}">' in text
    assert "variance of the log-scale effect" in text


GLMER_BINOMIAL = r"""
suppressMessages(library(lme4)); library(jsonlite)
d <- read.csv("{csv}"); d$x <- factor(d$x)
f <- glmer(cbind(s, n - s) ~ x + (1 | g), data = d, family = binomial, nAGQ = 25,
           control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5), tolPwrss = 1e-10))
cat(toJSON(list(fixef = as.list(fixef(f)), sd = unname(getME(f, "theta"))), digits = NA, auto_unbox = TRUE))
"""


@pytest.mark.r
def test_binomial_logitnormal_flat_prior_mode_is_glmers_agq_fit(rscript, tmp_path):
    """As for the Poisson factory: the binomial factory's marginal likelihood (AGQ on its own
    loglik) is maximised where glmer's nAGQ = 25 fit is (cbind(successes, failures))."""
    d = binomial_data(seed=12, J=30)
    csv = tmp_path / "b.csv"
    d.to_csv(csv, index=False)
    out = subprocess.run([rscript, "-e", GLMER_BINOMIAL.format(csv=csv)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    m = binomial_logitnormal(d, group="g", successes="s", trials="n", fixed=["x"],
                             priors={"logit_collective": FLAT, "fixef": FLAT, "between_sd": FLAT})
    theta, _ = posterior_mode_flat(m, np.r_[-1.0, 0.0, np.log(0.5)])
    ours = {"(Intercept)": theta[0], "x1": theta[1], "sd": np.exp(theta[2])}
    for key, value in {**r["fixef"], "sd": r["sd"]}.items():
        assert ours[key] == pytest.approx(value, abs=2e-4, rel=2e-4), (key, ours[key], value)


def test_poisson_lognormal_flat_prior_mode_vs_bc_glmm():
    """The same check against bc.glmm, without R: the factory's flat-prior posterior mode
    (its own loglik, integrated by AGQ) equals bc.glmm's nAGQ = 25 fit, and differs from
    bc.glmm's Laplace fit (nAGQ = 1) by the Laplace error measured against glmer above
    (bc.glmm's Laplace fit is glmer's to 1e-4 by its own parity tests)."""
    d = poisson_data(seed=11, J=30, sd=0.5)
    m = poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"],
                          priors={"log_collective": FLAT, "fixef": FLAT, "between_sd": FLAT})
    theta, _ = posterior_mode_flat(m, np.r_[np.log(d["y"].sum() / d["e"].sum()), np.zeros(2), np.log(0.3)])
    ours = pd.Series(np.r_[theta[:-1], np.exp(theta[-1])], index=["(Intercept)", *m.coords["coef"], "sd"])

    def fitted(nagq):
        f = bc.glmm("y ~ zone + offset(log(e)) + (1 | co)", d, family="poisson", nAGQ=nagq)
        return pd.concat([f.fixef, pd.Series({"sd": float(f.varcorr["sdcor"].iloc[0])})])

    agq, laplace = fitted(25), fitted(1)
    np.testing.assert_allclose(ours, agq[ours.index], atol=2e-4, rtol=2e-4)
    gap = ours - laplace[ours.index]
    print("posterior mode (flat) - bc.glmm Laplace:", gap.to_dict())
    assert np.all(np.abs(gap.drop("sd")) < 3e-3) and abs(gap["sd"]) / laplace["sd"] < 3e-2, gap


def test_compare_with_bc_glmm(sampled):
    d, tree = sampled
    fit = bc.glmm("y ~ zone + offset(log(e)) + (1 | co)", d, family="poisson")
    cmp = bc.compare(fit, tree)
    re = fit.ranef().set_index("level")
    t = cmp.premiums
    np.testing.assert_allclose(t["eblup"], np.exp(re["value"].reindex(t.index.map(str))))
    np.testing.assert_allclose(t["cond_sd"], t["eblup"] * re["cond_sd"].reindex(t.index.map(str)).to_numpy())
    assert cmp.variance_components.loc["between", "reml"] == pytest.approx(float(fit.varcorr["vcov"].iloc[0]))
    # the posterior median relativities follow the conditional modes
    assert np.corrcoef(np.log(t["eblup"]), np.log(t["post_mean"]))[0, 1] > 0.95
    # the posterior SD counts the uncertainty about the variance: not below the plug-in SD
    assert t["sd_ratio_cond_sd"].median() > 0.95


def test_compare_matches_the_gamma_dispersion_by_name():
    """Gamma: glmer's residual variance is the dispersion (squared CV of one claim); it is
    matched with the factory's ``dispersion``. A hand-made posterior stands in for bc.sample."""
    import xarray as xr

    d = gamma_data()
    fit = bc.glmm("sev ~ factor(zone) + (1 | co)", d, family="Gamma", weights="n")
    rng = np.random.default_rng(0)
    levels = sorted(d["co"].unique())
    u = 0.3 * rng.standard_normal((2, 50, len(levels)))
    dims = ("chain", "draw")
    post = xr.Dataset({"u": xr.DataArray(u, dims=(*dims, "co"), coords={"co": levels}),
                       "relativity": xr.DataArray(np.exp(u), dims=(*dims, "co"), coords={"co": levels}),
                       "between": xr.DataArray(rng.gamma(5, 0.02, (2, 50)), dims=dims),
                       "dispersion": xr.DataArray(rng.gamma(20, 0.05, (2, 50)), dims=dims)},
                      attrs={"bayescred_factory": "gamma_lognormal"})
    cmp = bc.compare(fit, xr.DataTree.from_dict({"posterior": post}))
    vc = cmp.variance_components
    resid = fit.varcorr[fit.varcorr["grp"] == "Residual"]["vcov"].iloc[0]
    assert vc.loc["dispersion", "reml"] == pytest.approx(resid)
    assert vc.loc["dispersion", "unit"] == "squared coefficient of variation of one claim"
    assert vc.loc["dispersion", "post_mean"] == pytest.approx(float(post["dispersion"].mean()))
    assert list(cmp.premiums.index) == levels


def test_a_column_cannot_be_factor_and_covariate_or_group():
    d = poisson_data()
    with pytest.raises(DataError, match="'zone'"):
        poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["zone"], covariates=["zone"])
    with pytest.raises(DataError, match="'co'"):
        poisson_lognormal(d, group="co", claims="y", exposure="e", fixed=["co"])
