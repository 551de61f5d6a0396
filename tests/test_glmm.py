"""bc.glmm without R: the quadrature against exact integrals, AGQ(1) = Laplace, equivalent
ways of writing the same model give the same fit, the block and sparse paths agree, predict
and ranef, the CLI, and errors that name the column."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

import bayescred as bc
from bayescred.cli import main
from bayescred.glmm.optimise import Problem
from bayescred.glmm.pirls import RandomEffects, agq_deviance, pirls


def _poisson_data(seed=1, J=12, n=150):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    expo = rng.uniform(0.5, 2, n)
    u = rng.normal(0, 0.7, J)
    y = rng.poisson(expo * np.exp(0.2 + 0.3 * x + u[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"G{v:02d}" for v in g], "expo": expo, "logexpo": np.log(expo),
                         "h": rng.choice(["a", "b", "c", "d"], n)})


def _binomial_data(seed=2, J=10, n=120):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    trials = rng.integers(1, 9, n)
    p = special.expit(-0.4 + 0.5 * x + rng.normal(0, 0.8, J)[g])
    s = rng.binomial(trials, p)
    return pd.DataFrame({"s": s, "f": trials - s, "trials": trials, "prop": s / trials, "x": x,
                         "g": [f"G{v}" for v in g]})


def _quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bc.errors.BoundaryWarning)
        return bc.glmm(*args, **kw)


def _exact_deviance_poisson(fit):
    """−2 log ∫ Π p(y | b) N(b; 0, σ²) db per level by quad (devres scale, lme4's AGQ one)."""
    prob = fit._problem
    re, resp, X = prob.re, prob.resp, prob.X
    sigma = fit.theta[0]
    fixed = resp.offset + X @ fit.fixef.to_numpy()
    total = 0.0
    for j in range(re.J):
        rows = re.codes == j
        y, f = resp.y[rows], fixed[rows]

        def integrand(v, y=y, f=f):  # v = u (spherical): b = σ v
            mu = np.exp(f + sigma * v)
            dev = np.sum(2 * (special.xlogy(y, y / mu) - (y - mu)))
            return np.exp(-0.5 * (dev + v * v)) / np.sqrt(2 * np.pi)

        val, _ = integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-13, limit=200)
        total += -2 * np.log(val)
    return total


def test_agq_converges_to_the_exact_integral():
    fit = _quiet("y ~ x + (1 | g)", _poisson_data(), family="poisson", offset="logexpo")
    prob = fit._problem
    x = np.concatenate([fit.theta, fit.fixef.to_numpy()])
    exact = _exact_deviance_poisson(fit)
    errors = []
    for n_agq in (1, 3, 7, 15, 25):
        prob.n_agq = n_agq
        m = prob.mode(x[:1], x[1:])
        errors.append(abs(agq_deviance(prob.re, prob.resp, prob.X, m, n_agq) - exact))
    assert errors[-1] < 1e-7 * exact
    assert errors[2] < errors[0] and errors[4] <= errors[2]


def test_agq_with_one_node_is_the_laplace_approximation():
    """lme4's AGQ deviance is on the deviance-residual scale: AGQ(1) = Laplace − aic + Σ devres."""
    fit = _quiet("y ~ x + (1 | g)", _poisson_data(), family="poisson", offset="logexpo")
    prob = fit._problem
    m = prob.mode(fit.theta, fit.fixef.to_numpy())
    agq1 = agq_deviance(prob.re, prob.resp, prob.X, m, 1)
    resdev = float(np.sum(prob.resp.devres(m.mu)))
    assert agq1 == pytest.approx(m.laplace(prob.resp) - prob.resp.aic(m.mu) + resdev, rel=1e-12)
    fit1 = _quiet("y ~ x + (1 | g)", _poisson_data(), family="poisson", offset="logexpo", nAGQ=1)
    assert fit1.loglik == pytest.approx(fit.loglik, rel=1e-12)


def test_agq_loglik_is_the_loglik_itself():
    """For nAGQ > 1 we report the log-likelihood (lme4's value plus the saturated part)."""
    data = _poisson_data()
    lap = _quiet("y ~ x + (1 | g)", data, family="poisson", offset="logexpo")
    agq = _quiet("y ~ x + (1 | g)", data, family="poisson", offset="logexpo", nAGQ=15)
    assert abs(agq.loglik - lap.loglik) < 0.05  # the Laplace error is small here
    assert agq.deviance_lme4 != pytest.approx(agq.deviance)
    assert -0.5 * _exact_deviance_poisson(agq) == pytest.approx(-0.5 * agq.deviance_lme4, rel=1e-8)


def test_cbind_equals_proportion_with_trial_weights():
    data = _binomial_data()
    a = _quiet("cbind(s, f) ~ x + (1 | g)", data, family="binomial")
    b = _quiet("prop ~ x + (1 | g)", data, family="binomial", weights="trials")
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6)
    np.testing.assert_allclose(a.fixef_se, b.fixef_se, rtol=1e-5)


def test_offset_argument_equals_offset_term():
    data = _poisson_data()
    a = _quiet("y ~ x + (1 | g)", data, family="poisson", offset="logexpo")
    b = _quiet("y ~ x + offset(log(expo)) + (1 | g)", data, family="poisson")
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-10)
    pa, pb = a.predict(type="response"), b.predict(type="response")
    np.testing.assert_allclose(pa.fit, pb.fit, rtol=1e-10)


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)", "y ~ x + (1 | g) + (0 + x | g)"])
@pytest.mark.parametrize("path", ["pairs", "dense", "sparse LU"])
def test_block_and_general_paths_agree(formula, path, monkeypatch):
    """The per-level block solver and each general one (Z'WZ by bincount, by sparse products
    with a dense Cholesky, or a sparse LU) give the same Laplace deviance."""
    import importlib

    pirls_module = importlib.import_module("bayescred.glmm.pirls")
    if path != "pairs":
        monkeypatch.setattr(pirls_module, "PAIRS_MAX", 0)
    if path == "sparse LU":
        monkeypatch.setattr(pirls_module, "DENSE_MAX", 0)
    fit = _quiet(formula, _poisson_data(), family="poisson", offset="logexpo")
    prob = fit._problem
    sparse = RandomEffects(prob.re.terms, block=False)
    x = np.concatenate([fit.theta, fit.fixef.to_numpy()])
    other = Problem(sparse, prob.resp, prob.X, n_agq=1)
    assert other.deviance(x) == pytest.approx(prob.deviance(x), rel=1e-11)
    assert other.deviance(x * 1.1) == pytest.approx(prob.deviance(x * 1.1), rel=1e-11)


def test_pirls_finds_the_mode_of_the_penalised_deviance():
    fit = _quiet("y ~ x + (1 | g)", _poisson_data(), family="poisson", offset="logexpo")
    prob = fit._problem
    prob.re.set_theta(fit.theta)
    m = pirls(prob.re, prob.resp, prob.X, fit.fixef.to_numpy(), prob.re.zeros(), joint=False)

    def pdev(u):
        mu = np.exp(prob.resp.offset + prob.X @ fit.fixef.to_numpy() + prob.re.zlam(u))
        return float(np.sum(prob.resp.devres(mu)) + np.sum(u * u))

    base = pdev(m.u)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert pdev(m.u + 1e-4 * rng.normal(size=m.u.shape)) > base


def test_predict_response_scale_and_new_levels():
    data = _poisson_data()
    fit = _quiet("y ~ x + (1 | g)", data, family="poisson", offset="logexpo")
    p = fit.predict(type="response")
    np.testing.assert_allclose(p.fit, np.exp(p.link), rtol=1e-12)
    np.testing.assert_allclose(p.cond_sd, fit.predict().cond_sd * p.fit, rtol=1e-12)  # delta method
    assert np.all(p.pev_sd >= p.cond_sd)
    new = pd.DataFrame({"x": [0.0, 0.5], "g": ["G00", "NEW"], "logexpo": [0.0, 0.0]})
    with pytest.raises(bc.errors.DataError, match="g"):
        fit.predict(new)
    q = fit.predict(new, allow_new_levels=True, type="link")
    b0 = fit.ranef().set_index("level").value["G00"]
    assert q.fit.iloc[0] == pytest.approx(fit.fixef["(Intercept)"] + b0, rel=1e-12)
    assert q.fit.iloc[1] == pytest.approx(fit.fixef["(Intercept)"] + 0.5 * fit.fixef["x"], rel=1e-12)
    assert q.cond_sd.iloc[1] == pytest.approx(fit.theta[0], rel=1e-12)  # the prior SD of a new level
    pop = fit.predict(new, re_form="~0", type="link")
    assert pop.cond_sd.iloc[0] == 0.0 and pop.pev_sd.iloc[0] > 0


def test_ranef_measures_and_seeded_bootstrap():
    data = _binomial_data(n=80)
    fit = _quiet("cbind(s, f) ~ x + (1 | g)", data, family="binomial")
    r = fit.ranef()
    assert list(r.columns) == ["grp", "level", "term", "value", "cond_sd", "pev_sd"]
    assert np.all(r.pev_sd >= r.cond_sd)
    with pytest.raises(ValueError, match="seed"):
        fit.ranef(measures=("mse_sd",))
    a = fit.ranef(measures=("cond_sd", "mse_sd"), bootstrap=8, seed=3)
    b = fit.ranef(measures=("cond_sd", "mse_sd"), bootstrap=8, seed=3)
    np.testing.assert_array_equal(a.mse_sd, b.mse_sd)
    assert np.all(np.isfinite(a.mse_sd)) and np.all(a.mse_sd > 0)
    np.testing.assert_allclose(a.cond_sd, r.cond_sd)  # the fit is left as it was


def test_gamma_fit_has_a_residual_row_and_negbin_estimates_theta():
    rng = np.random.default_rng(5)
    data = _poisson_data()
    data["sev"] = rng.gamma(3.0, np.exp(1 + 0.2 * data.x) / 3.0)
    fit = _quiet("sev ~ x + (1 | g)", data, family="Gamma")
    assert fit.varcorr.grp.iloc[-1] == "Residual" and fit.sigma > 0
    assert "t value" in fit.summary()
    nb = _quiet("y ~ x + (1 | g)", data, family="negative_binomial", offset="logexpo")
    assert nb.nb_theta > 0 and nb.n_params == 4


def test_crossed_terms_fit():
    data = _poisson_data()
    fit = _quiet("y ~ x + (1 | g) + (1 | h)", data, family="poisson", offset="logexpo")
    assert list(fit.varcorr.grp) == ["g", "h"]
    assert len(fit.ranef()) == 12 + 4
    assert np.isfinite(fit.predict().pev_sd).all()


def test_errors_name_the_column():
    data = _poisson_data()
    with pytest.raises(bc.errors.MissingColumnError, match="nope"):
        bc.glmm("y ~ nope + (1 | g)", data, family="poisson")
    with pytest.raises(bc.errors.FormulaError, match="binomial"):
        bc.glmm("cbind(y, y) ~ x + (1 | g)", data, family="poisson")
    with pytest.raises(bc.errors.FormulaError, match="single, scalar"):
        bc.glmm("y ~ x + (1 + x | g)", data, family="poisson", nAGQ=5)
    bad = data.assign(y=-data.y - 1)
    with pytest.raises(bc.errors.BayescredError):
        bc.glmm("y ~ x + (1 | g)", bad, family="poisson")
    with pytest.raises(bc.errors.NonPositiveError, match="x"):
        bc.glmm("x ~ 1 + (1 | g)", data, family="Gamma")
    with pytest.raises(bc.errors.FormulaError, match="family"):
        bc.glmm("y ~ x + (1 | g)", data, family="tweedie-ish")


def test_cli_glmm_json(tmp_path, capsys):
    path = tmp_path / "d.csv"
    _poisson_data().to_csv(path, index=False)
    assert main(["glmm", "y ~ x + (1 | g)", "--data", str(path), "--family", "poisson", "--offset", "logexpo",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("fixef", "fixef_se", "varcorr", "loglik", "aic", "ranef"):
        assert key in out
    assert set(out["varcorr"][0]) == {"grp", "var1", "var2", "vcov", "sdcor"}
    fit = _quiet("y ~ x + (1 | g)", _poisson_data(), family="poisson", offset="logexpo")
    assert out["loglik"] == pytest.approx(fit.loglik, rel=1e-10)
    assert main(["glmm", "y ~ x + (1 | g)", "--data", str(path), "--family", "poisson", "--nagq", "3"]) == 0
    assert "Adaptive Gauss-Hermite" in capsys.readouterr().out


def test_gamma_severity_on_the_bus_data_converges_to_glmers_fit(shared_data):
    """Gamma (log link) severities of the Swedish bus companies, weighted by claim counts:
    Fisher scoring oscillated about the mode here and PIRLS stopped after 100 iterations;
    a half step when a step reverses the last one damps it. Reference: lme4 1.1-31,
    glmer(sev ~ factor(zone) + (1|co.id), family = Gamma("log"), weights = clm.cnt) on the
    332 cleaned rows with claims and a positive cost: SD(co.id) 2.5706, residual SD 1.5856,
    logLik -15840.41, intercept 9.9027249 (glmer's default tolerances; its optimum is flat)."""
    bus = bc.datasets.clean_bus(bc.datasets.load("bus", data_dir=shared_data))
    d = bus[(bus["clm.cnt"] > 0) & (bus["tot.cost"] > 0)].assign(sev=lambda f: f["tot.cost"] / f["clm.cnt"])
    fit = bc.glmm("sev ~ factor(zone) + (1 | `co.id`)", d, family="Gamma", weights="clm.cnt")
    sd = fit.varcorr.set_index("grp")["sdcor"]
    assert sd["co.id"] == pytest.approx(2.5706, abs=2e-3) and sd["Residual"] == pytest.approx(1.5856, abs=2e-3)
    assert fit.loglik == pytest.approx(-15840.41, rel=1e-6)
    assert fit.fixef["(Intercept)"] == pytest.approx(9.9027249, abs=5e-3)
