"""bc.glm without R: published values, identities between equivalent models, the Tweedie
series density, the zero-truncated Poisson, the double GLM, errors, residuals and the CLI.
The live R comparisons are in tests/test_glm_r.py."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize

import bayescred as bc
from bayescred.cli import main
from bayescred.errors import BayescredError, ConvergenceWarning, MissingColumnError
from bayescred.glm import tweedie as tw
from bayescred.glm import ztpoisson as zt


@pytest.fixture(scope="module")
def fabric(shared_data):
    return pd.read_csv(shared_data / "fabric.csv")


@pytest.fixture(scope="module")
def diabetes(shared_data):
    return pd.read_csv(shared_data / "diabetes_lars.csv").rename(columns={"map": "abp"})


def _counts(seed=1, n=400):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"x": rng.normal(size=n), "f": rng.choice(["a", "b", "c"], n),
                      "e": rng.uniform(0.5, 2.0, n)})
    eff = d.f.map({"a": 0.0, "b": 0.4, "c": -0.3}).to_numpy()
    d["y"] = rng.poisson(d.e * np.exp(0.3 + 0.5 * d.x + eff))
    return d


# ------------------------------------------------------------------ published values
def test_fabric_poisson_and_negbin_as_printed(fabric):
    """REFERENCE-VALUES §12 (seed 004 lines 3276-3308; exact NB2 ML values marked D)."""
    p = bc.glm("y ~ log(x)", fabric, family="poisson")
    np.testing.assert_allclose(p.coef, [-4.1730, 0.9969], atol=5e-5)
    np.testing.assert_allclose(p.se, [1.1352, 0.1759], atol=5e-5)
    assert (round(p.null_deviance, 3), round(p.deviance, 3), round(p.aic, 2)) == (103.714, 64.537, 191.84)
    assert (p.df_null, p.df_residual) == (31, 30)
    nb = bc.glm("y ~ log(x)", fabric, family="negbin")
    np.testing.assert_allclose(nb.coef, [-3.795137, 0.937760], rtol=1e-5)
    assert nb.se.iloc[0] == pytest.approx(1.4577, abs=5e-5)
    assert nb.theta == pytest.approx(8.667407, rel=1e-5)
    assert nb.theta_se == pytest.approx(4.17, abs=5e-3)
    assert 2 * nb.loglik == pytest.approx(-175.38743, rel=1e-5)
    assert nb.aic == pytest.approx(181.39, abs=5e-3)


def test_train_poisson_with_offset_as_printed(shared_data):
    """REFERENCE-VALUES §12 (seed 004 lines 3478-3491)."""
    t = pd.read_csv(shared_data / "train_collisions.csv")
    fit = bc.glm("y ~ x + offset(log(t))", t, family="poisson")
    np.testing.assert_allclose(fit.coef, [-4.21142, -0.03292], atol=5e-6)
    np.testing.assert_allclose(fit.se, [0.15892, 0.01076], atol=5e-6)
    assert (round(fit.null_deviance, 3), round(fit.deviance, 3), round(fit.aic, 2)) == (47.376, 37.853, 133.52)
    assert fit.deviance / fit.df_residual == pytest.approx(1.402, abs=5e-4)
    offset_column = bc.glm("y ~ x", t.assign(lt=np.log(t.t)), family="poisson", offset="lt")
    np.testing.assert_allclose(offset_column.coef, fit.coef, rtol=1e-12)


# printed (seed 004 lines 3571-3786, REFERENCE-VALUES §14). The criterion -2ML agrees to 2e-6;
# the estimates agree to a small fraction of their SE but not to every printed digit (e.g.
# reduced-model sex -157.87 vs printed -157.0): dhglm stops its alternation earlier than we do
# (our -2ML is lower than or equal to the printed one), and the printed table was reassembled from
# scrambled columns. An independent statsmodels alternation gives 4737.267, as we do.
DIABETES = {
    "full": ("y ~ age+sex+bmi+abp+tc+ldl+hdl+tch+ltg+glu", "~ age+sex+bmi+abp+tc+ldl+hdl+tch+ltg+glu", 4737.276,
             [151.721, 12.249, -241.175, 475.325, 344.574, -555.372, 277.509, 1.285, 150.522, 651.564, 60.692],
             [2.583, 54.655, 56.167, 67.734, 62.717, 341.346, 276.958, 167.371, 142.311, 135.923, 60.032],
             [7.905, -2.710, -4.613, 1.861, 4.357, -15.799, 16.515, -3.058, -6.654, 8.042, 2.310],
             [0.06813, 1.58187, 1.62120, 1.76060, 1.73308, 11.28435, 9.20588, 5.73781, 4.31590, 4.62341, 1.74794]),
    "reduced": ("y ~ sex+bmi+abp+ltg", "~ sex+abp", 4793.995, [152.2, -157.0, 585.8, 312.6, 551.0],
                [2.641, 56.783, 64.444, 64.841, 63.952], [8.020, -3.031, 2.880], [0.06765, 1.46589, 1.46782]),
}


@pytest.mark.parametrize("model", DIABETES)
def test_diabetes_joint_glm(diabetes, model):
    mean, disp, m2ll, beta, beta_se, gamma, gamma_se = DIABETES[model]
    fit = bc.glm(mean, diabetes, dispersion=disp)
    assert fit.extra["m2loglik"] == pytest.approx(m2ll, rel=1e-5)
    assert fit.extra["m2loglik"] <= m2ll + 1e-3
    assert -2 * fit.loglik == pytest.approx(fit.extra["m2loglik"])
    assert np.all(np.abs(fit.coef.to_numpy() - beta) <= 0.15 * np.array(beta_se))
    # SEs depend on the fitted phi_i, so they inherit the estimates' gap (up to 0.6 % in the full model)
    np.testing.assert_allclose(fit.se, beta_se, rtol=1e-2 if model == "full" else 2e-3)
    dm = fit.dispersion_model
    assert np.all(np.abs(dm["Estimate"].to_numpy() - gamma) <= 0.03 * np.array(gamma_se))
    np.testing.assert_allclose(dm["Std. Error"], gamma_se, rtol=2e-3)
    # printed "scaled deviance 431.000 / 437.000" = df: with REML weights sum d_i / phi_i = n - p
    assert fit.deviance == pytest.approx(fit.df_residual, abs=5e-4)
    # the dispersion intercept's SE is sqrt(2 / (n - p)): REML weights 1 - h sum to n - p
    assert dm["Std. Error"].iloc[0] == pytest.approx(np.sqrt(2 / fit.df_residual), rel=2e-3)


def test_double_glm_ml_maximises_the_likelihood(diabetes):
    ml = bc.glm("y ~ sex+bmi+abp+ltg", diabetes, dispersion="~ sex+abp", dispersion_method="ml")
    reml = bc.glm("y ~ sex+bmi+abp+ltg", diabetes, dispersion="~ sex+abp")
    assert ml.extra["m2loglik"] < reml.extra["m2loglik"]
    X = np.column_stack([np.ones(len(diabetes)), diabetes[["sex", "bmi", "abp", "ltg"]]])
    Z = np.column_stack([np.ones(len(diabetes)), diabetes[["sex", "abp"]]])
    y = diabetes.y.to_numpy(float)

    def m2ll(par):
        b, g = par[:5], par[5:]
        phi = np.exp(Z @ g)
        return np.sum(np.log(2 * np.pi * phi) + (y - X @ b) ** 2 / phi)

    start = np.r_[ml.coef.to_numpy(), ml.dispersion_model["Estimate"].to_numpy()]
    best = optimize.minimize(m2ll, start, method="BFGS")
    assert ml.extra["m2loglik"] <= best.fun + 1e-6


# ------------------------------------------------------------------ identities
def test_poisson_with_offset_equals_grouped_model():
    d = _counts()
    rows = bc.glm("y ~ f", d, family="poisson", offset=np.log(d.e))
    cells = d.groupby("f", as_index=False).agg(y=("y", "sum"), e=("e", "sum"))
    grouped = bc.glm("y ~ f + offset(log(e))", cells, family="poisson")
    np.testing.assert_allclose(rows.coef, grouped.coef, rtol=1e-8)
    # as R, SEs use the working weights of the last IRLS step, whose path differs between the two
    # fits; they agree to the convergence of the iteration
    np.testing.assert_allclose(rows.se, grouped.se, rtol=1e-5)


def test_gaussian_is_weighted_least_squares():
    rng = np.random.default_rng(2)
    n = 120
    d = pd.DataFrame({"x": rng.normal(size=n), "f": rng.choice(["p", "q"], n), "w": rng.uniform(0.2, 4, n)})
    d["y"] = 1 + 2 * d.x + (d.f == "q") + rng.normal(size=n) / np.sqrt(d.w)
    fit = bc.glm("y ~ x * f", d, weights="w")
    X = np.column_stack([np.ones(n), d.x, d.f == "q", d.x * (d.f == "q")]).astype(float)
    W = d.w.to_numpy()
    beta = np.linalg.solve(X.T @ (W[:, None] * X), X.T @ (W * d.y))
    rss = np.sum(W * (d.y - X @ beta) ** 2)
    sigma2 = rss / (n - 4)
    np.testing.assert_allclose(fit.coef, beta, rtol=1e-10)
    np.testing.assert_allclose(fit.se, np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ (W[:, None] * X)))), rtol=1e-10)
    assert fit.dispersion == pytest.approx(sigma2, rel=1e-12)
    assert fit.deviance == pytest.approx(rss, rel=1e-12)
    loglik = -0.5 * n * (np.log(2 * np.pi * rss / n) + 1) + 0.5 * np.sum(np.log(W))
    assert fit.loglik == pytest.approx(loglik, rel=1e-12)
    assert list(fit.coef_table().columns) == ["Estimate", "Std. Error", "t value", "Pr(>|t|)"]


def test_binomial_proportion_with_weights_equals_cbind():
    rng = np.random.default_rng(3)
    n = 150
    d = pd.DataFrame({"x": rng.normal(size=n), "m": rng.integers(1, 15, n)})
    d["s"] = rng.binomial(d.m, 1 / (1 + np.exp(-(0.2 + 0.8 * d.x))))
    d["fl"], d["prop"] = d.m - d.s, d.s / d.m
    a = bc.glm("cbind(s, fl) ~ x", d, family="binomial")
    b = bc.glm("prop ~ x", d, family="binomial", weights="m")
    for attr in ("deviance", "null_deviance", "aic", "loglik"):
        assert getattr(a, attr) == pytest.approx(getattr(b, attr), rel=1e-9), attr
    np.testing.assert_allclose(a.coef, b.coef, rtol=1e-8)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-8)


def test_negbin_with_huge_theta_is_poisson():
    d = _counts(4)
    pois = bc.glm("y ~ x + f + offset(log(e))", d, family="poisson")
    nb = bc.glm("y ~ x + f + offset(log(e))", d, family="negbin", theta=1e9)
    np.testing.assert_allclose(nb.coef, pois.coef, rtol=1e-6)
    assert nb.deviance == pytest.approx(pois.deviance, rel=1e-6)


def test_observed_information_is_the_hessian():
    rng = np.random.default_rng(5)
    n = 200
    d = pd.DataFrame({"x": rng.normal(size=n)})
    d["y"] = rng.gamma(3.0, np.exp(1 + 0.5 * d.x) / 3.0)
    exp_ = bc.glm("y ~ x", d, family="Gamma", link="log")
    obs = bc.glm("y ~ x", d, family="Gamma", link="log", information="observed")
    X, y, phi = np.column_stack([np.ones(n), d.x]), d.y.to_numpy(), obs.dispersion

    def loglik(b):
        mu = np.exp(X @ b)
        return np.sum(-y / mu - np.log(mu)) / phi

    b0 = obs.coef.to_numpy()
    hess = optimize.approx_fprime(b0, lambda b: optimize.approx_fprime(b, loglik, 1e-6), 1e-6)
    np.testing.assert_allclose(obs.vcov.to_numpy(), np.linalg.inv(-hess), rtol=1e-3)
    assert not np.allclose(obs.se, exp_.se, rtol=1e-6)
    # canonical link: observed = expected
    can = _counts(6)
    a = bc.glm("y ~ x + f", can, family="poisson")
    b = bc.glm("y ~ x + f", can, family="poisson", information="observed")
    np.testing.assert_allclose(a.se, b.se, rtol=1e-6)


# ------------------------------------------------------------------ Tweedie
@pytest.mark.parametrize("p", [1.2, 1.5, 1.8])
def test_tweedie_series_density_is_a_distribution(p):
    mu, phi = 2.0, 1.3
    p0 = np.exp(tw.log_density(np.array([0.0]), np.array([mu]), phi, p))[0]
    dens = lambda y: np.exp(tw.log_density(np.atleast_1d(y), np.array([mu]), phi, p))[0]  # noqa: E731
    mass = integrate.quad(dens, 0, 80, limit=400)[0]
    mean = integrate.quad(lambda y: y * dens(y), 0, 80, limit=400)[0]
    second = integrate.quad(lambda y: y * y * dens(y), 0, 80, limit=400)[0]
    assert p0 + mass == pytest.approx(1.0, abs=1e-7)
    assert mean == pytest.approx(mu, rel=1e-6)
    assert second - mean**2 == pytest.approx(phi * mu**p, rel=1e-5)


def test_tweedie_density_limits():
    y = np.array([0.5, 1.0, 3.0])
    np.testing.assert_allclose(tw.log_density(y, y * 0 + 1.5, 0.7, 1.999999), tw.log_density(y, y * 0 + 1.5, 0.7, 2),
                               rtol=1e-4)


def test_tweedie_power_profile_is_the_maximum():
    rng = np.random.default_rng(7)
    n, p, phi = 400, 1.6, 1.5
    x = rng.normal(size=n)
    mu = np.exp(0.8 + 0.4 * x)
    lam = mu ** (2 - p) / (phi * (2 - p))
    shape, scale = (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
    y = np.array([rng.gamma(shape, s, k).sum() if k else 0.0 for k, s in zip(rng.poisson(lam), scale)])
    d = pd.DataFrame({"x": x, "y": y})
    fit = bc.glm("y ~ x", d, family="tweedie")
    assert 1.3 < fit.var_power < 1.9
    for q in (fit.var_power - 0.02, fit.var_power + 0.02):
        other = bc.glm("y ~ x", d, family="tweedie", var_power=q)
        phi_q = tw.phi_ml(y, other.mu, np.ones(n), q)
        assert np.sum(tw.log_density(y, other.mu, phi_q, q)) < fit.loglik
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * 4)
    with pytest.warns(bc.errors.BoundaryWarning, match="edge"):
        bc.glm("y ~ x", d, family="tweedie", var_power_range=(1.01, 1.3))


# ------------------------------------------------------------------ zero-truncated Poisson
def test_lambert_w_inverts_the_truncated_mean():
    lam = np.array([1e-3, 0.5, 1.0, 4.0, 30.0])
    np.testing.assert_allclose(zt.rate_from_mean(zt.mean_from_rate(lam)), lam, rtol=1e-6)


def test_ztpoisson_is_the_truncated_likelihood_maximum():
    rng = np.random.default_rng(8)
    n = 500
    x = rng.normal(size=n)
    lam = np.exp(0.7 + 0.4 * x)
    y = rng.poisson(lam)
    keep = y > 0
    d = pd.DataFrame({"x": x[keep], "y": y[keep]})
    fit = bc.glm("y ~ x", d, family="ztpoisson")
    X = np.column_stack([np.ones(keep.sum()), d.x])
    nll = lambda b: -np.sum(zt._loglik_terms(d.y.to_numpy(), np.exp(X @ b)))  # noqa: E731
    best = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(fit.coef, best.x, atol=1e-6)
    assert fit.loglik == pytest.approx(-best.fun, rel=1e-10)
    hess = optimize.approx_fprime(best.x, lambda b: optimize.approx_fprime(b, nll, 1e-6), 1e-6)
    np.testing.assert_allclose(fit.se, np.sqrt(np.diag(np.linalg.inv(hess))), rtol=1e-3)
    assert np.all(fit.fitted() > 1)
    assert fit.aic == pytest.approx(-2 * fit.loglik + 4)


# ------------------------------------------------------------------ results and errors
def test_residuals_and_prediction():
    d = _counts(9)
    fit = bc.glm("y ~ x + f", d, family="quasipoisson", offset=np.log(d.e))
    assert np.sum(fit.residuals("deviance") ** 2) == pytest.approx(fit.deviance)
    assert np.sum(fit.residuals("pearson") ** 2) / fit.df_residual == pytest.approx(fit.dispersion)
    np.testing.assert_allclose(fit.residuals("response"), d.y - fit.fitted())
    np.testing.assert_allclose(fit.residuals("working"), (d.y - fit.fitted()) / fit.fitted())
    np.testing.assert_allclose(fit.predict(d, type="response", offset=np.log(d.e)), fit.fitted(), rtol=1e-12)
    np.testing.assert_allclose(fit.predict(type="link"), np.log(fit.fitted()), rtol=1e-12)
    assert fit.dispersion > 1 and np.isnan(fit.aic)
    dev = bc.glm("y ~ x + f", d, family="quasipoisson", offset=np.log(d.e), dispersion="deviance")
    assert dev.dispersion == pytest.approx(fit.deviance / fit.df_residual)
    text = fit.summary()
    assert "Dispersion parameter for quasipoisson family taken to be" in text and "t value" in text
    assert "Residual deviance:" in text and "AIC: NA" in text
    json.dumps(fit.to_dict())


def test_base_levels_reach_the_shared_parser():
    d = _counts(10)
    fit = bc.glm("y ~ f", d, family="poisson", base_levels={"f": "c"})
    assert list(fit.coef.index) == ["(Intercept)", "fa", "fb"]


def test_aliased_column_is_nan_as_r():
    d = _counts(11).assign(x2=lambda t: 2 * t.x)
    fit = bc.glm("y ~ x + x2 + f", d, family="poisson")
    assert np.isnan(fit.coef["x2"]) and np.isnan(fit.se["x2"])
    assert fit.df_residual == len(d) - 4
    assert "not defined because of singularities: x2" in fit.summary()


def test_separation_warns_naming_the_coefficient():
    d = pd.DataFrame({"x": np.r_[np.linspace(-2, -0.1, 20), np.linspace(0.1, 2, 20)], "y": np.r_[np.zeros(20), np.ones(20)]})
    with pytest.warns(ConvergenceWarning, match="x"):
        bc.glm("y ~ x", d, family="binomial")


@pytest.mark.parametrize("kwargs, error", [
    ({"family": "weibull"}, BayescredError),
    ({"family": "poisson", "weights": "nope"}, MissingColumnError),
    ({"family": "Gamma"}, BayescredError),  # y has zeros
    ({"family": "poisson", "link": "logit"}, BayescredError),
    ({"family": "poisson", "dispersion": "huge"}, BayescredError),
    ({"family": "negbin", "formula": "cbind(y, y) ~ x"}, BayescredError),
])
def test_user_errors(kwargs, error):
    d = _counts(12)
    kwargs = dict(kwargs)
    formula = kwargs.pop("formula", "y ~ x")
    with pytest.raises(error):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bc.glm(formula, d, **kwargs)


def test_data_must_be_a_frame():
    with pytest.raises(bc.errors.NotAFrameError):
        bc.glm("y ~ x", {"y": [1, 2], "x": [0, 1]})


def test_cli_glm_json(tmp_path, capsys, fabric):
    path = tmp_path / "fabric.csv"
    fabric.to_csv(path, index=False)
    assert main(["glm", "y ~ log(x)", "--data", str(path), "--family", "negbin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("coef", "se", "loglik", "deviance", "aic", "dispersion", "theta"):
        assert key in out
    assert out["theta"] == pytest.approx(8.667407, rel=1e-5)
    assert main(["glm", "y ~ log(x)", "--data", str(path), "--family", "poisson"]) == 0
    assert "Residual deviance:  64.537" in capsys.readouterr().out.replace("deviance: 64", "deviance:  64")
    assert main(["glm", "y ~ nope", "--data", str(path)]) == 2
