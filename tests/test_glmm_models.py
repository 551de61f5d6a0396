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
