"""Poisson–gamma empirical Bayes (exact negative-multinomial marginal ML), issue 4.

Reference numbers come from REFERENCE-VALUES.md §11 (bus) and §12 (fabric); each carries
its seed line or section next to it. Budget: about 10 s without R, 15 s with R.
"""

from __future__ import annotations

import json
import math
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from bayescred import errors
from bayescred.lmm.poisson_gamma import poisson_gamma_eb

BUS_MODEL = dict(group="co.id", claims="clm.cnt", exposure="dur", fixed="zone + bus.age", base={"zone": 4, "bus.age": 4})


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def bus(shared_data) -> pd.DataFrame:
    """Cleaned Swedish bus data, REFERENCE-VALUES §11.1: drop tot.cost < 0 but keep missing
    tot.cost (seed 004_07f8365c92996b9b.txt, line 5490) and drop company 145 (line 5496)."""
    raw = pd.read_csv(shared_data / "bus_insurance.csv")
    return raw[~(raw["tot.cost"] < 0) & (raw["co.id"] != 145)].reset_index(drop=True)


@pytest.fixture(scope="module")
def bus_fit(bus):
    return poisson_gamma_eb(bus, **BUS_MODEL)


@pytest.fixture(scope="module")
def fabric(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "fabric.csv")


def simulate(J=40, K=3, lam=0.5, seed=1, beta=(-0.2, 0.3)):
    """A small rating design with known truth: numeric x, a 3-level class, exposures."""
    rng = np.random.default_rng(seed)
    n = J * K
    df = pd.DataFrame(
        {
            "risk": np.repeat(np.arange(J), K),
            "x": rng.normal(size=n),
            "cls": rng.choice(["a", "b", "c"], n),
            "expo": rng.uniform(0.5, 3, n),
        }
    )
    u = rng.gamma(1 / lam, lam, J) if lam > 0 else np.ones(J)
    eta = beta[0] + beta[1] * df["x"] + df["cls"].map({"a": 0.0, "b": 0.4, "c": -0.3}) + np.log(df["expo"])
    df["n"] = rng.poisson(np.exp(eta) * u[df["risk"]])
    return df


SIM_MODEL = dict(group="risk", claims="n", exposure="expo", fixed="cls", covariates="x", base={"cls": "a"})


# --------------------------------------------------------------------------- bus data


def test_bus_cleaning_matches_reference(bus):
    # REFERENCE-VALUES §11.1 (D): 1,473 rows, 660 companies, 2,024 claims, 3,240,093 days
    assert len(bus) == 1473
    assert bus["co.id"].nunique() == 660
    assert bus["clm.cnt"].sum() == 2024
    assert bus["dur"].sum() == 3_240_093


# printed dhglm estimates, seed 004_07f8365c92996b9b.txt lines 5795-5840 (REFERENCE-VALUES §11.4)
DHGLM_FIXEF = {
    "(Intercept)": -7.65055,
    "zone1": 0.22644,
    "zone2": 0.44224,
    "zone3": 0.03305,
    "zone5": 0.28805,
    "zone6": 0.20941,
    "zone7": -0.57862,
    "bus.age0": 0.51538,
    "bus.age1": 0.50149,
    "bus.age2": 0.46698,
    "bus.age3": 0.36315,
}
DHGLM_LAM = math.exp(-1.097)  # log lambda, seed 004 line 5849

# Table 6.12 (seed 004_07f8365c92996b9b.txt lines 5892-5905): company -> u
TABLE_6_12 = {
    524: 0.312, 136: 0.346, 289: 0.365, 368: 0.370, 549: 0.385,
    285: 0.393, 279: 0.418, 183: 0.420, 522: 0.426, 373: 0.473,
    478: 0.926, 587: 0.929, 154: 0.929, 314: 0.930, 91: 0.931,
    665: 0.932, 526: 0.932, 5: 0.932, 437: 0.932, 184: 0.932,
    271: 2.034, 169: 2.071, 297: 2.077, 548: 2.086, 226: 2.179,
    406: 2.454, 535: 2.467, 301: 2.518, 559: 2.944, 561: 3.112,
}  # fmt: skip
# Table 6.10 (lines 5862-5869): company -> (claims, exposure days, annual frequency, u)
TABLE_6_10 = {
    561: (37, 13615, 0.992, 3.112),
    559: (106, 59833, 0.647, 2.944),
    301: (26, 17216, 0.551, 2.518),
    535: (41, 29378, 0.509, 2.467),
    406: (12, 4709, 0.930, 2.454),
}


def test_bus_dhglm_tables_6_10_and_6_12_from_printed_estimates(bus):
    """Closed-form identity of REFERENCE-VALUES §11.5: u_i = (alpha + y_i+)/(alpha + mu_i+) at
    the printed (rounded) dhglm beta and lambda reproduces the printed u to abs 0.0015."""
    at = poisson_gamma_eb(bus, **BUS_MODEL, fixef=DHGLM_FIXEF, lam=DHGLM_LAM)
    assert not at.estimated
    r = at.ranef()
    for company, u in TABLE_6_12.items():
        assert r.loc[company, "u"] == pytest.approx(u, abs=0.0015), company
    for company, (claims, days, freq, u) in TABLE_6_10.items():
        assert r.loc[company, "claims"] == claims
        assert bus.loc[bus["co.id"] == company, "dur"].sum() == days
        assert 365 * claims / days == pytest.approx(freq, abs=0.0005)  # tol R
        assert r.loc[company, "u"] == pytest.approx(u, abs=0.0015)
    # the same ranking: the printed top five and bottom three are the extremes of all 660
    ranked = r["u"].sort_values()
    assert list(ranked.index[-5:][::-1]) == [561, 559, 301, 535, 406]
    assert list(ranked.index[:3]) == [524, 136, 289]


def test_bus_identity_derived_values(bus):
    """REFERENCE-VALUES §11.5 (D, 4 decimals): u, Z and posterior SD at the printed dhglm values."""
    r = poisson_gamma_eb(bus, **BUS_MODEL, fixef=DHGLM_FIXEF, lam=DHGLM_LAM).ranef()
    derived = {  # company: (u, Z, posterior SD)
        561: (3.1114, 0.7670, 0.4920),
        559: (2.9441, 0.9191, 0.2820),
        301: (2.5177, 0.7399, 0.4676),
        535: (2.4674, 0.8320, 0.3720),
        406: (2.4537, 0.5099, 0.6336),
    }
    for company, (u, Z, sd) in derived.items():
        assert r.loc[company, ["u", "Z", "cond_sd"]].tolist() == pytest.approx([u, Z, sd], abs=5e-5)
    for company, u in {524: 0.3123, 136: 0.3465, 289: 0.3649}.items():
        assert r.loc[company, "u"] == pytest.approx(u, abs=5e-5)
    # credibility form (FORMULAS §7 (c)): u = Z * (y/mu) + (1 - Z); premium = Z y + (1 - Z) mu
    assert np.allclose(r["u"], r["Z"] * r["claims"] / r["expected"] + 1 - r["Z"], rtol=1e-12)
    assert np.allclose(r["premium"], r["Z"] * r["claims"] + (1 - r["Z"]) * r["expected"], rtol=1e-12)


def test_bus_exact_marginal_ml(bus_fit):
    """REFERENCE-VALUES §11.6 (D): exact marginal ML, base zone 4 / age 4."""
    fit = bus_fit
    assert fit.converged and not fit.boundary
    assert fit.lam == pytest.approx(0.420456, rel=1e-3)
    assert math.log(fit.lam) == pytest.approx(-0.866415, rel=1e-3)
    expected = {
        "(Intercept)": -7.75973,
        "zone1": 0.24396, "zone2": 0.48210, "zone3": 0.10374, "zone5": 0.35496, "zone6": 0.22761, "zone7": -0.50675,
        "bus.age0": 0.50818, "bus.age1": 0.49755, "bus.age2": 0.45246, "bus.age3": 0.36329,
    }  # fmt: skip
    assert list(fit.fixef.index) == list(expected)
    for name, value in expected.items():
        assert fit.fixef[name] == pytest.approx(value, rel=1e-4), name
    assert fit.deviance == pytest.approx(3139.9691, abs=5e-5)  # -2 log L incl. -log y!, tol R
    # top-5 u at the ML fit (same table, tol R on 3 decimals)
    r = fit.ranef()
    top = {561: 3.540, 559: 3.306, 301: 2.834, 535: 2.770, 406: 2.756}
    assert r.loc[list(top), "u"].tolist() == pytest.approx(list(top.values()), abs=5e-4 + 1e-9)
    # dhglm's h-likelihood lambda (0.334, E12) is about 20 % below the exact ML
    assert DHGLM_LAM / fit.lam == pytest.approx(0.795, abs=0.01)
    assert "0.420456" in fit.summary()


def test_bus_uncertainty_ordering(bus_fit):
    r = bus_fit.ranef()
    assert (r["cond_sd"] > 0).all()
    assert (r["cond_sd"] <= r["pev_sd"]).all() and (r["pev_sd"] <= r["mse_sd"]).all()
    # (i) is the conjugate posterior SD: sqrt(alpha + y)/(alpha + mu)
    a = bus_fit.alpha
    assert np.allclose(r["cond_sd"], np.sqrt(a + r["claims"]) / (a + r["expected"]), rtol=1e-12)


# --------------------------------------------------------------------------- fabric = NB2


def test_fabric_is_nb2(fabric):
    """REFERENCE-VALUES §12 (D, exact NB2 ML): 1/theta = 0.115375, beta (-3.795137, 0.937760),
    2 logLik -175.38743, rel 1e-5; printed glm.nb (seed 004 lines 3293-3308): Theta 8.6674 (from
    the family line), AIC 181.39, intercept -3.7951 (tol R)."""
    fit = poisson_gamma_eb(fabric, group="rf", claims="y", covariates="log(x)")
    assert list(fit.fixef.index) == ["(Intercept)", "log(x)"]
    assert fit.lam == pytest.approx(0.115375, rel=1e-5)
    assert fit.fixef.tolist() == pytest.approx([-3.795137, 0.937760], rel=1e-5)
    assert 2 * fit.loglik == pytest.approx(-175.38743, rel=1e-5)
    assert fit.alpha == pytest.approx(8.6674, abs=5e-5)
    assert fit.aic == pytest.approx(181.39, abs=0.005)
    assert fit.fixef["(Intercept)"] == pytest.approx(-3.7951, abs=5e-5)
    # dhglm's h-likelihood lambda 0.125682 (line 3408) is not the ML: it is 9 % higher here (E12)
    assert fit.lam < 0.125682


def nb2_designs(n_designs, seed):
    """Random one-row-per-risk designs: then the marginal model is exactly NB2 (FORMULAS §7)."""
    rng = np.random.default_rng(seed)
    for i in range(n_designs):
        n = int(rng.integers(40, 200))
        lam = float(rng.uniform(0.1, 1.5))
        df = pd.DataFrame({"id": np.arange(n), "x1": rng.normal(size=n), "x2": rng.uniform(-1, 1, n), "e": rng.uniform(0.2, 5, n)})
        eta = rng.normal(0, 0.5) + rng.normal(0, 0.5) * df["x1"] + rng.normal(0, 0.5) * df["x2"] + np.log(df["e"])
        df["y"] = rng.poisson(np.exp(eta) * rng.gamma(1 / lam, lam, n))
        yield i, df


def test_nb2_against_statsmodels_on_random_designs():
    import statsmodels.api as sm

    for i, df in nb2_designs(8, seed=2024):
        fit = poisson_gamma_eb(df, group="id", claims="y", exposure="e", covariates=["x1", "x2"])
        X = sm.add_constant(df[["x1", "x2"]].to_numpy())
        model = sm.NegativeBinomial(df["y"], X, offset=np.log(df["e"]), loglike_method="nb2")
        start = model.fit(disp=0, method="bfgs", maxiter=2000).params
        ref = model.fit(start_params=start, disp=0, method="newton", maxiter=100, tol=1e-12)
        assert ref.mle_retvals["converged"], i
        params, bse = np.asarray(ref.params), np.asarray(ref.bse)
        assert fit.fixef.tolist() == pytest.approx(params[:3].tolist(), rel=1e-5, abs=1e-6), i
        assert fit.lam == pytest.approx(params[3], rel=1e-4), i  # statsmodels' alpha = 1/theta
        assert fit.loglik == pytest.approx(ref.llf, rel=1e-8), i
        # observed-information SEs: statsmodels uses the same (numerical) Hessian
        assert np.sqrt(np.diag(fit.vcov)) == pytest.approx(bse[:3], rel=1e-3), i


@pytest.mark.r
def test_nb2_against_mass_glm_nb_live(rscript, tmp_path):
    """Live cross-check against R MASS::glm.nb on 20 random designs (theta = alpha)."""
    if subprocess.run([rscript, "-e", "library(MASS)"], capture_output=True).returncode:
        pytest.skip("R package MASS not installed")
    frames = []
    for i, df in nb2_designs(20, seed=7):
        frames.append(df.assign(design=i))
    pd.concat(frames).to_csv(tmp_path / "nb.csv", index=False)
    code = f"""
    suppressMessages(library(MASS))
    d <- read.csv("{tmp_path / 'nb.csv'}")
    out <- do.call(rbind, lapply(split(d, d$design), function(s) {{
      f <- glm.nb(y ~ x1 + x2 + offset(log(e)), data = s, control = glm.control(epsilon = 1e-12, maxit = 100))
      c(design = s$design[1], coef(f), theta = f$theta, twologlik = f$twologlik)
    }}))
    write.csv(out, "{tmp_path / 'out.csv'}", row.names = FALSE)
    """
    res = subprocess.run([rscript, "-e", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv").set_index("design")
    for i, df in nb2_designs(20, seed=7):
        fit = poisson_gamma_eb(df, group="id", claims="y", exposure="e", covariates=["x1", "x2"])
        row = ref.loc[i]
        assert fit.fixef.tolist() == pytest.approx(row.iloc[:3].tolist(), rel=1e-5, abs=1e-6), i
        assert fit.alpha == pytest.approx(row["theta"], rel=1e-4), i
        assert 2 * fit.loglik == pytest.approx(row["twologlik"], rel=1e-8), i


# --------------------------------------------------------------------------- likelihood checks


def test_closed_form_equals_numerical_integration():
    """log L_i of §11.6 equals log of the integral of prod Poisson(y | mu u) x Gamma(u) du."""
    df = simulate(J=5, K=3, lam=0.7, seed=3)
    beta = {"(Intercept)": -0.1, "x": 0.2, "clsb": 0.3, "clsc": -0.2}
    lam = 0.7
    fit = poisson_gamma_eb(df, **SIM_MODEL, fixef=beta, lam=lam)
    eta = beta["(Intercept)"] + beta["x"] * df["x"] + df["cls"].map({"a": 0, "b": beta["clsb"], "c": beta["clsc"]})
    mu = np.exp(eta + np.log(df["expo"]))
    total = 0.0
    for _, rows in df.assign(mu=mu).groupby("risk"):
        def integrand(u, rows=rows):
            return np.prod(stats.poisson.pmf(rows["n"], rows["mu"] * u)) * stats.gamma.pdf(u, 1 / lam, scale=lam)

        value, _ = integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
        total += math.log(value)
    assert fit.loglik == pytest.approx(total, rel=1e-9)


def test_information_is_the_numerical_hessian_at_the_ml():
    df = simulate(J=30, K=3, lam=0.5, seed=4)
    fit = poisson_gamma_eb(df, **SIM_MODEL)
    names = list(fit.fixef.index)
    theta = np.append(fit.fixef.to_numpy(), math.log(fit.lam))

    def loglik(t):
        return poisson_gamma_eb(df, **SIM_MODEL, fixef=dict(zip(names, t[:-1])), lam=math.exp(t[-1])).loglik

    h = 1e-4
    k = len(theta)
    grad = np.array([(loglik(theta + h * e) - loglik(theta - h * e)) / (2 * h) for e in np.eye(k)])
    assert np.max(np.abs(grad)) < 1e-5  # the ML is a stationary point
    hess = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            ea, eb = h * np.eye(k)[a], h * np.eye(k)[b]
            hess[a, b] = (loglik(theta + ea + eb) - loglik(theta + ea - eb) - loglik(theta - ea + eb) + loglik(theta - ea - eb)) / (4 * h * h)
    assert fit.information.to_numpy() == pytest.approx(-hess, rel=1e-4, abs=1e-4)
    assert list(fit.information.index) == [*names, "log(lam)"]


# --------------------------------------------------------------------------- uncertainty


def test_three_measures_and_bootstrap_on_simulated_design():
    """(i) <= (ii) <= (iii); the delta-method parameter part g2 + g3 of (iii) against a seeded
    parametric bootstrap of the conditional MSE of u_i given the risk's own data (Booth &
    Hobert 1998), and (iii) = g1 + g2 + 2 g3 against the bias-corrected bootstrap."""
    df = simulate(J=40, K=3, lam=0.5, seed=1)
    fit = poisson_gamma_eb(df, **SIM_MODEL)
    r = fit.ranef(bootstrap=300, seed=11)
    assert (r["cond_sd"] <= r["pev_sd"]).all() and (r["pev_sd"] < r["mse_sd"]).all()
    assert r.attrs["bootstrap"]["failed"] == 0 and r.attrs["bootstrap"]["n_boot"] == 300
    g1, pev, mse = r["cond_sd"] ** 2, r["pev_sd"] ** 2, r["mse_sd"] ** 2
    delta = (mse + pev) / 2 - g1  # g2 + g3
    boot = r["boot_sd"] ** 2 - g1
    # Monte Carlo error of B = 300 and second-order terms; beta alone (g2) would give 1.4
    assert 0.85 < (boot / delta).median() < 1.25
    assert 1.25 < (boot / (pev - g1)).median()
    assert (np.sqrt(g1 + delta) / r["boot_sd"]).between(0.95, 1.05).all()
    assert (r["mse_sd"] / r["boot_bc_sd"]).between(0.93, 1.07).all()
    # same seed, same numbers
    again = fit.ranef(bootstrap=300, seed=11)
    assert np.array_equal(again["boot_sd"], r["boot_sd"])
    with pytest.raises(ValueError, match="seed"):
        fit.ranef(bootstrap=10)


def test_predict_matches_ranef_and_covers_new_risks():
    df = simulate(J=25, K=3, lam=0.6, seed=5)
    fit = poisson_gamma_eb(df, **SIM_MODEL)
    r = fit.ranef()
    p = fit.predict(df)
    assert p.index.equals(df.index)
    by_risk = p.groupby(df["risk"])["premium"].sum()
    assert np.allclose(by_risk, r["premium"], rtol=1e-12)
    assert np.allclose(p["cond_sd"], p["fixed"] * r.loc[df["risk"], "cond_sd"].to_numpy(), rtol=1e-12)
    assert (p["cond_sd"] <= p["pev_sd"]).all() and (p["pev_sd"] <= p["mse_sd"]).all()
    new = df.head(3).assign(risk=[100, 101, 102])
    q = fit.predict(new)
    assert (q["u"] == 1).all()
    assert np.allclose(q["cond_sd"], q["fixed"] * math.sqrt(fit.lam))
    assert (q["pev_sd"] <= q["mse_sd"]).all()  # lam enters only through the fixed effects' covariance
    with pytest.raises(errors.DataError, match="levels not seen"):
        fit.predict(df.head(2).assign(cls="zzz"))


# --------------------------------------------------------------------------- boundary


def test_boundary_fit_is_flagged():
    """Equidispersed counts with one row per risk and a fixed seed give an under-dispersed
    sample: the profile score 1/2 sum[(y - mu)^2 - y] <= 0, so lam-hat = 0 (Poisson)."""
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"risk": np.arange(200), "x": rng.normal(size=200)})
    df["n"] = rng.binomial(4, 0.5, 200)  # binomial: variance below the mean
    with pytest.warns(errors.BoundaryWarning, match="boundary"):
        fit = poisson_gamma_eb(df, group="risk", claims="n", covariates=["x"])
    assert fit.boundary and fit.lam == 0 and math.isinf(fit.alpha)
    pois = sm.GLM(df["n"], sm.add_constant(df["x"]), family=sm.families.Poisson()).fit()
    assert fit.fixef.tolist() == pytest.approx(pois.params.tolist(), rel=1e-8)
    assert fit.loglik == pytest.approx(pois.llf, rel=1e-10)
    r = fit.ranef()
    assert (r["u"] == 1).all() and (r["Z"] == 0).all()
    # at lam = 0 the relativities are exactly 1 whatever beta: (i) = (ii) = 0; (iii) has no delta method
    assert (r["cond_sd"] == 0).all() and (r["pev_sd"] == 0).all() and r["mse_sd"].isna().all()
    assert "BOUNDARY" in fit.summary() and fit.to_dict()["boundary"] is True


# --------------------------------------------------------------------------- interface


def test_formula_list_and_polars_agree(bus, bus_fit):
    import polars as pl

    as_list = poisson_gamma_eb(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed=["zone", "bus.age"], base={"zone": 4, "bus.age": 4})
    assert np.allclose(as_list.fixef, bus_fit.fixef, rtol=1e-10)
    polar = poisson_gamma_eb(pl.from_pandas(bus), **BUS_MODEL)
    assert np.allclose(polar.fixef, bus_fit.fixef, rtol=1e-10) and polar.lam == pytest.approx(bus_fit.lam, rel=1e-10)
    # C() says "factor" too; without base= the base is the level with the largest exposure
    # (zone 4 / age 4 here), the factory's rule; R's first level gives the same likelihood
    default = poisson_gamma_eb(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed="~ C(zone) + C(bus.age)")
    assert list(default.fixef.index) == list(bus_fit.fixef.index)
    assert np.allclose(default.fixef, bus_fit.fixef, rtol=1e-8)
    first = poisson_gamma_eb(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed=["zone", "bus.age"],
                             base={"zone": 1, "bus.age": 0})
    assert first.fixef.index[1] == "zone2" and first.loglik == pytest.approx(bus_fit.loglik, rel=1e-10)


def test_does_not_mutate_and_to_dict_is_json(bus, bus_fit):
    before = bus.copy()
    poisson_gamma_eb(bus, **BUS_MODEL)
    pd.testing.assert_frame_equal(bus, before)
    d = json.loads(json.dumps(bus_fit.to_dict()))
    assert d["varcorr"][0]["vcov"] == pytest.approx(0.420456, rel=1e-3)
    assert set(d) >= {"fixef", "fixef_se", "varcorr", "loglik", "ranef", "lam", "alpha", "boundary"}
    assert len(d["ranef"]) == 660 and set(d["ranef"][0]) == {"grp", "level", "term", "value", "Z", "cond_sd", "pev_sd", "mse_sd"}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda d: d.assign(n=d["n"].where(d.index != 3, -1)), errors.NegativeValueError, "non-negative"),
        (lambda d: d.assign(n=d["n"].astype(float).where(d.index != 3, 1.5)), errors.NotIntegerError, "whole"),
        (lambda d: d.assign(expo=d["expo"].where(d.index != 4, 0.0)), errors.NonPositiveError, "positive"),
        (lambda d: d.assign(risk=d["risk"].astype(float).where(d.index != 5)), errors.MissingValueError, "missing"),
        (lambda d: d.assign(cls=d["cls"].where(d.index != 6)), errors.MissingValueError, "missing"),
        (lambda d: d.drop(columns="x"), errors.MissingColumnError, "'x'"),
        (lambda d: d.assign(risk=0), errors.TooFewRisksError, "at least 2"),
        (lambda d: d.assign(x=2.0), errors.RankDeficientError, "dependent: \\(Intercept\\), x;"),
        (lambda d: d.assign(n=d["n"].where(d["cls"] != "c", 0)), errors.NoClaimsError, "\\['c'\\]"),
    ],
)
def test_bad_input_is_rejected(change, error, match):
    df = change(simulate(J=10, K=3, seed=6))
    with pytest.raises(error, match=match):
        poisson_gamma_eb(df, **SIM_MODEL)


def test_bad_specification_is_rejected():
    df = simulate(J=10, K=3, seed=6)
    with pytest.raises(errors.FormulaError, match="group="):
        poisson_gamma_eb(df, group="risk", claims="n", fixed="x + (1 | risk)")
    with pytest.raises(errors.DataError, match="base level"):
        poisson_gamma_eb(df, **{**SIM_MODEL, "base": {"cls": "q"}})
    with pytest.raises(errors.FormulaError, match="main effects"):
        poisson_gamma_eb(df, group="risk", claims="n", fixed="x * cls")
    with pytest.raises(ValueError, match="both"):
        poisson_gamma_eb(df, **SIM_MODEL, lam=0.3)
    with pytest.raises(errors.FormulaError, match="missing"):
        poisson_gamma_eb(df, **SIM_MODEL, fixef={"(Intercept)": 0.0}, lam=0.3)
