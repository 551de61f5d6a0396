"""Identity tests of the Bayesian factories: their marginal likelihood IS the likelihood the
empirical-Bayes engine maximises, and with the variances fixed at REML and a flat prior on
the collective, the posterior mean premium IS the EBLUP / credibility premium.

No sampling here: the factory's own log-density (``model.compile_logp``) is evaluated and
maximised with scipy; the collective (fixed effects) is integrated out exactly (the
log-density is quadratic in it, so a central-difference quadratic fit is exact), which gives
lme4's REML criterion: -2 log integral L d beta (FORMULAS.md §8.4).
"""

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
import xarray as xr
from scipy.optimize import minimize

import bayescred as bc
from bayescred.models import buhlmann, buhlmann_straub, crossed, hachemeister, hierarchical, poisson_gamma

FLAT = "flat"


def loglik_fn(model):
    """The model's log-density without Jacobians: with flat (or fixed) priors, the log-likelihood."""
    f = model.compile_logp(jacobian=False)
    return lambda point: float(f(point))


def integrate_quadratic(f, x0, step):
    """log integral exp(f(x)) dx for f quadratic in x (exact up to rounding), and its maximiser."""
    x0 = np.atleast_1d(np.asarray(x0, float))
    p = len(x0)
    E = np.eye(p) * step
    f0 = f(x0)
    g = np.array([(f(x0 + E[k]) - f(x0 - E[k])) / (2 * step) for k in range(p)])
    H = np.empty((p, p))
    for k in range(p):
        for m in range(p):
            H[k, m] = -(f(x0 + E[k] + E[m]) - f(x0 + E[k] - E[m]) - f(x0 - E[k] + E[m]) + f(x0 - E[k] - E[m])) / (4 * step**2)
    shift = np.linalg.solve(H, g)
    value = f0 + 0.5 * g @ shift + 0.5 * p * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(H)[1]
    return value, x0 + shift


def with_values(posterior_values: dict, model, names=("premium", "Z")) -> dict:
    """Evaluate deterministics ``names`` of ``model`` at one point (a 1-chain, 1-draw posterior);
    with every parameter fixed they are constants of the graph."""
    names = [n for n in names if n in model.named_vars]
    if not posterior_values:
        fn = pytensor.function([], [model[n] for n in names])
        return dict(zip(names, fn()))
    ds = xr.Dataset({k: xr.DataArray(np.asarray(v, float)[None, None], dims=("chain", "draw", *[f"d{k}{i}" for i in range(np.ndim(v))]))
                     for k, v in posterior_values.items()})
    out = pm.compute_deterministics(ds, model=model, var_names=names, progressbar=False)
    return {k: out[k].values[0, 0] for k in out.data_vars}


# ---------------------------------------------------------------- one-way (Bühlmann, Bühlmann–Straub)

def oneway_reml(model, centre, step):
    ll = loglik_fn(model)

    def crit(theta):
        point = {"between_sd_log__": 0.5 * theta[0], "within_sd_log__": 0.5 * theta[1]}
        return -2 * integrate_quadratic(lambda m: ll({**point, "collective": m[0]}), centre, step)[0]

    return crit


@pytest.fixture(scope="module")
def table31_model():
    return buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss",
                    priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})


def test_table31_reml_from_factory_likelihood(table31_model):
    # REFERENCE-VALUES §3.2 (seed 004_07f8365c92996b9b.txt lines 2085-2092): REML = moments,
    # tau2 8437.5, sigma2 6250 (exact); §3.3 (D): REML criterion at the optimum 133.557855
    crit = oneway_reml(table31_model, 750.0, 10.0)
    res = minimize(crit, np.log([5000.0, 5000.0]), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    tau2, sigma2 = np.exp(res.x)
    assert tau2 == pytest.approx(8437.5, rel=1e-6)
    assert sigma2 == pytest.approx(6250.0, rel=1e-6)
    assert res.fun == pytest.approx(133.557855, abs=1e-5)
    fit = bc.lmm("loss ~ 1 + (1|class)", bc.datasets.load("buhlmann_table31"))
    assert res.fun == pytest.approx(fit.criterion, abs=1e-6)
    assert tau2 == pytest.approx(float(fit.varcorr["vcov"][0]), rel=1e-6)


def test_table31_ml_from_factory_likelihood(table31_model):
    # REFERENCE-VALUES §3.3 (D): ML tau2 = 5,104.1667, sigma2 = 6,250, deviance 143.29106
    ll = loglik_fn(table31_model)
    f = lambda x: -2 * ll({"collective": x[0], "between_sd_log__": 0.5 * x[1], "within_sd_log__": 0.5 * x[2]})
    res = minimize(f, [700.0, np.log(5000.0), np.log(5000.0)], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 8000})
    assert np.exp(res.x[1]) == pytest.approx(5104.1667, rel=1e-6)
    assert np.exp(res.x[2]) == pytest.approx(6250.0, rel=1e-6)
    assert res.x[0] == pytest.approx(750.0, rel=1e-8)  # ML beta = grand mean; 1e-8 = the optimiser's convergence
    assert res.fun == pytest.approx(143.29106, abs=1e-4)


def test_table31_premiums_are_credibility_premiums_at_reml():
    # with tau2, sigma2 fixed at REML and a flat prior on the collective, the posterior of m is
    # N(X_z, tau2/Z.), so E[premium] = Z X_j + (1 - Z) X_z = the credibility premium:
    # 665.625, 750, 834.375 (REFERENCE-VALUES §3.2, seed 004_07f8365c92996b9b.txt line 934)
    model = buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss",
                     priors={"collective": FLAT, "between_sd": np.sqrt(8437.5), "within_sd": np.sqrt(6250.0)})
    ll = loglik_fn(model)
    _, m_hat = integrate_quadratic(lambda m: ll({"collective": m[0]}), 700.0, 10.0)
    values = with_values({"collective": m_hat[0]}, model)
    np.testing.assert_allclose(values["premium"], [665.625, 750.0, 834.375], rtol=0, atol=1e-8)
    np.testing.assert_allclose(values["Z"], 0.84375, rtol=1e-12)


@pytest.fixture(scope="module")
def hach():
    return bc.datasets.load("hachemeister")


def test_hachemeister_bs_criterion_at_lme4_record(hach):
    # REFERENCE-VALUES §5.7 (status L, lme4 1.1-31, raw claim weights): at tau2 =
    # 64849.0366813034, sigma2 = 139054992.862528 the REML criterion is 847.156267727802
    model = buhlmann_straub(hach, group="state", response="severity", weight="claims",
                            priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    crit = oneway_reml(model, 1700.0, 10.0)
    assert crit(np.log([64849.0366813034, 139054992.862528])) == pytest.approx(847.156267727802, abs=1e-6)


def test_hachemeister_bs_premiums_at_lme4_record(hach):
    # premiums beta0 + u_j at the record's theta (REFERENCE-VALUES §5.7, D): 2053.1205,
    # 1528.4972, 1790.0321, 1467.3315, 1604.8135 (abs 0.05); exactly the closed form Z X + (1-Z) X_z
    tau2, sigma2 = 64849.0366813034, 139054992.862528
    model = buhlmann_straub(hach, group="state", response="severity", weight="claims",
                            priors={"collective": FLAT, "between_sd": np.sqrt(tau2), "within_sd": np.sqrt(sigma2)})
    ll = loglik_fn(model)
    _, m_hat = integrate_quadratic(lambda m: ll({"collective": m[0]}), 1700.0, 10.0)
    values = with_values({"collective": m_hat[0]}, model)
    stats = bc.portfolio.summarise(hach, by="state", response="severity", weight="claims")
    Z = stats["weight"] / (stats["weight"] + sigma2 / tau2)
    X_z = np.sum(Z * stats["mean"]) / Z.sum()
    np.testing.assert_allclose(m_hat[0], X_z, rtol=1e-10)
    np.testing.assert_allclose(values["premium"], Z * stats["mean"] + (1 - Z) * X_z, rtol=1e-10)
    np.testing.assert_allclose(values["premium"], [2053.1205, 1528.4972, 1790.0321, 1467.3315, 1604.8135], atol=0.05)
    np.testing.assert_allclose(values["Z"], [0.979039, 0.902706, 0.864963, 0.659436, 0.943946], rtol=1e-4)


def test_bs_simulated_reml_matches_lmm(shared_data):
    # REFERENCE-VALUES §4.3 (D, dense REML): tau2 61.1412, sigma2 104.6386, criterion 3901.42
    data = pd.read_csv(shared_data / "bs_simulated.csv")
    model = buhlmann_straub(data, group="risk", response="X.jt", weight="W.jt",
                            priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    crit = oneway_reml(model, 78.5, 1.0)
    res = minimize(crit, np.log([50.0, 90.0]), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-10})
    tau2, sigma2 = np.exp(res.x)
    assert tau2 == pytest.approx(61.1412, rel=1e-4)
    assert sigma2 == pytest.approx(104.6386, rel=1e-4)
    assert res.fun == pytest.approx(3901.42, abs=0.01)
    fit = bc.lmm("X.jt ~ 1 + (1|risk)", data, weights="W.jt")
    assert res.fun == pytest.approx(fit.criterion, abs=1e-5)
    assert sigma2 == pytest.approx(fit.sigma2, rel=1e-5)


# ---------------------------------------------------------------- hierarchical

def test_hierarchical_marginal_equals_dense_gaussian():
    # the bottom-up collapse equals the dense N(1 m, Z G Z' + sigma2 W^-1) density of all rows
    rng = np.random.default_rng(5)
    rows = []
    for s in range(3):
        for j in range(2 + s):
            for t in range(1 + (j + s) % 3):
                rows.append((f"s{s}", f"r{j}", 10 + rng.normal(), rng.uniform(0.5, 2.0)))
    data = pd.DataFrame(rows, columns=["sector", "risk", "y", "w"])
    model = hierarchical(data, levels=["sector", "risk"], response="y", weight="w",
                         priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    om2, tau2, s2, m = 0.7, 0.4, 1.3, 9.5
    got = loglik_fn(model)({"collective": m, "between_sd_log__": 0.5 * np.log([om2, tau2]),
                            "within_sd_log__": 0.5 * np.log(s2)})
    sec = data["sector"].to_numpy()
    key = (data["sector"] + ":" + data["risk"]).to_numpy()
    V = om2 * (sec[:, None] == sec[None, :]) + tau2 * (key[:, None] == key[None, :]) + np.diag(s2 / data["w"])
    from scipy.stats import multivariate_normal

    want = multivariate_normal(np.full(len(data), m), V).logpdf(data["y"])
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("likelihood", ["marginal", "latent"])
def test_potential_is_the_sum_of_the_loglik_deterministic(likelihood):
    """The sampler's potential adds the risks' within terms up from data-only totals
    (likelihood.gaussian.within_total); the ``loglik`` deterministic has them per node: the
    two are the same sum, one-way and hierarchical, at a point away from the start."""
    rng = np.random.default_rng(1)
    rows = [(f"s{s}", f"r{j}", 10 + rng.normal(), rng.uniform(0.5, 2.0))
            for s in range(3) for j in range(2 + s) for _ in range(2 + (j + s) % 3)]
    data = pd.DataFrame(rows, columns=["sector", "risk", "y", "w"])
    for model in (buhlmann_straub(data, group="risk", response="y", weight="w", likelihood=likelihood),
                  hierarchical(data, levels=["sector", "risk"], response="y", weight="w", likelihood=likelihood)):
        [potential] = model.potentials
        both = model.replace_rvs_by_values([potential, model["loglik"].sum()])
        f = model.compile_fn(both, inputs=model.value_vars, on_unused_input="ignore")
        point = {k: v + 0.3 for k, v in model.initial_point().items()}
        total, summed = f(point)
        assert "within_ss" not in {v.name for v in pytensor.graph.ancestors([both[0]])}  # totals only
        assert total == pytest.approx(summed, rel=1e-13)


def test_hierarchical_premiums_are_jewell_premiums():
    # FORMULAS.md §3: mu_s = Z_s B_s + (1 - Z_s) m, mu_sj = Z_sj X_sj + (1 - Z_sj) mu_s
    rng = np.random.default_rng(9)
    data = pd.DataFrame({"sector": np.repeat(["a", "b", "c"], 8), "risk": np.tile(np.repeat([1, 2], 4), 3),
                         "y": rng.normal(100, 10, 24), "w": rng.uniform(1, 3, 24)})
    om2, tau2, s2, m = 30.0, 20.0, 90.0, 101.0
    model = hierarchical(data, levels=["sector", "risk"], response="y", weight="w",
                         priors={"collective": m, "between_sd": np.sqrt([om2, tau2]), "within_sd": np.sqrt(s2)})
    values = with_values({}, model, ("premium", "premium_sector", "Z_sector"))
    st = bc.portfolio.summarise(data, by=["sector", "risk"], response="y", weight="w")
    Zj = st["weight"] / (st["weight"] + s2 / tau2)
    sectors = st.index.get_level_values("sector")
    Q = Zj.groupby(sectors).sum()
    B = (Zj * st["mean"]).groupby(sectors).sum() / Q
    Zs = Q / (Q + tau2 / om2)
    mu_s = Zs * B + (1 - Zs) * m
    mu_sj = Zj * st["mean"] + (1 - Zj) * mu_s.reindex(sectors).to_numpy()
    np.testing.assert_allclose(values["premium_sector"], mu_s, rtol=1e-12)
    np.testing.assert_allclose(values["premium"], mu_sj, rtol=1e-12)
    np.testing.assert_allclose(values["Z_sector"], Zs, rtol=1e-12)


# ---------------------------------------------------------------- Hachemeister

def hach_reml(model):
    ll = loglik_fn(model)

    def crit(theta):
        point = {"between_sd_log__": 0.5 * theta[:2], "within_sd_log__": 0.5 * theta[2]}
        return -2 * integrate_quadratic(lambda b: ll({**point, "collective": b}), [1500.0, 30.0], 1.0)[0]

    return crit, ll


def test_hachemeister_diag_reml_from_factory_likelihood(hach):
    # REFERENCE-VALUES §5.7 `hachemeister_diag` true REML optimum (D; E9): criterion 785.496952,
    # Var(Int) 19,907.42, Var(period) 605.118 (rel 1e-3), sigma2 48,723,759 (rel 1e-4);
    # beta 1491.9977, 29.5503; also bc.lmm's REML fit of the same model
    model = hachemeister(hach, group="state", time="period", response="severity", weight="claims",
                         priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    crit, ll = hach_reml(model)
    res = minimize(crit, np.log([2e4, 600.0, 4.9e7]), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000})
    assert res.fun <= 785.4970 + 1e-4
    assert res.fun == pytest.approx(785.496952, abs=1e-4)
    v0, v1, s2 = np.exp(res.x)
    assert v0 == pytest.approx(19907.42, rel=1e-3)
    assert v1 == pytest.approx(605.118, rel=1e-3)
    assert s2 == pytest.approx(48723759, rel=1e-4)
    fit = bc.lmm("severity ~ period + (1|state) + (0+period|state)", hach, weights="claims")
    assert res.fun == pytest.approx(fit.criterion, abs=1e-5)
    # credibility estimates (int, slope) at the optimum (REFERENCE-VALUES §5.6 hm.mixed.2, D, abs 0.05)
    point = {"between_sd_log__": 0.5 * res.x[:2], "within_sd_log__": 0.5 * res.x[2]}
    _, beta = integrate_quadratic(lambda b: ll({**point, "collective": b}), [1500.0, 30.0], 1.0)
    np.testing.assert_allclose(beta, [1491.9977, 29.5503], atol=2e-3)
    fixed = hachemeister(hach, group="state", time="period", response="severity", weight="claims",
                         priors={"collective": beta, "between_sd": np.sqrt([v0, v1]), "within_sd": np.sqrt(s2)})
    coef = with_values({}, fixed, ("risk_coef",))["risk_coef"]
    want = [(1654.861, 62.335), (1413.445, 16.308), (1536.102, 41.567), (1354.024, 12.665), (1501.557, 14.876)]
    np.testing.assert_allclose(coef, want, atol=0.05)


def test_hachemeister_credibility_matrix_book_table34(hach):
    # Table 3.4 (seed 004_07f8365c92996b9b.txt lines 1766-1775): un-centred time,
    # U = diag(18,029.435, 665.5618), sigma2 = 49,870,187; A_1 = [[0.8946, 0.3389], [0.0125, 0.9460]],
    # state 4's credibility slope 10.93 (Hachemeister's anomaly, below both 27.81 and 29.09)
    model = hachemeister(hach, group="state", time="period", response="severity", weight="claims",
                         priors={"collective": FLAT, "between_sd": np.sqrt([18029.435, 665.5618]),
                                 "within_sd": np.sqrt(49870187.0)})
    ll = loglik_fn(model)
    _, beta = integrate_quadratic(lambda b: ll({"collective": b}), [1500.0, 30.0], 1.0)
    np.testing.assert_allclose(beta, [1495.75, 29.09], atol=0.005)  # B_GLS, Table 3.4 collective
    values = with_values({"collective": beta}, model, ("A", "risk_coef"))
    np.testing.assert_allclose(values["A"][0], [[0.8946, 0.3389], [0.0125, 0.9460]], atol=5e-5)
    np.testing.assert_allclose(values["risk_coef"][3], [1368.48, 10.93], atol=0.005)


def test_hachemeister_group_centring_reml(hach):
    # REFERENCE-VALUES §5.6 hm.mixed.3 (time centred at each state's centre of gravity):
    # REML criterion 788.59935 (D, abs 1e-3); D = diag(70,863.80, 446.468) (rel 1e-3, flat)
    model = hachemeister(hach, group="state", time="period", response="severity", weight="claims", centering="group",
                         priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    crit, _ = hach_reml(model)
    res = minimize(crit, np.log([7e4, 450.0, 4.9e7]), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000})
    assert res.fun == pytest.approx(788.59935, abs=1e-3)
    np.testing.assert_allclose(np.exp(res.x[:2]), [70863.80, 446.468], rtol=1e-3)


def test_hachemeister_marginal_equals_dense_gaussian(hach):
    # correlated U: the Woodbury per-risk form equals the dense N(Q beta, Q U Q' + sigma2 W^-1)
    model = hachemeister(hach, group="state", time="period", response="severity", weight="claims",
                         structure="correlated",
                         priors={"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT, "between_corr": 0.6})
    beta, sd, s2 = np.array([1500.0, 25.0]), np.array([150.0, 20.0]), 5e7
    got = loglik_fn(model)({"collective": beta, "between_sd_log__": np.log(sd), "within_sd_log__": 0.5 * np.log(s2)})
    U = np.array([[sd[0] ** 2, 0.6 * sd[0] * sd[1]], [0.6 * sd[0] * sd[1], sd[1] ** 2]])
    from scipy.stats import multivariate_normal

    want = 0.0
    for _, g in hach.groupby("state"):
        Q = np.column_stack([np.ones(len(g)), g["period"]])
        V = Q @ U @ Q.T + np.diag(s2 / g["claims"])
        want += multivariate_normal(Q @ beta, V).logpdf(g["severity"])
    assert got == pytest.approx(want, abs=1e-8)


# ---------------------------------------------------------------- crossed

@pytest.fixture(scope="module")
def credit():
    return bc.datasets.load("credit_insurance")


def crossed_model(credit, priors):
    return crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                   within_ss=credit.attrs["within_ss"], within_df=credit.attrs["within_df"], priors=priors)


def test_crossed_reml_derived_ssw(credit):
    # REFERENCE-VALUES §6 ("derived SSW"): REML optimum (992.594, 2569.243, 14.681, 26990.37),
    # criterion 5231.32 (abs 0.05; rel 5e-3 on the variance components)
    model = crossed_model(credit, {"collective": FLAT, "between_sd": FLAT, "within_sd": FLAT})
    ll = loglik_fn(model)

    def crit(theta):
        point = {"between_sd_log__": 0.5 * theta[:3], "within_sd_log__": 0.5 * theta[3]}
        return -2 * integrate_quadratic(lambda m: ll({**point, "collective": m[0]}), 240.0, 1.0)[0]

    res = minimize(crit, np.log([900.0, 2500.0, 20.0, 27000.0]), method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-9, "maxiter": 6000})
    assert res.fun == pytest.approx(5231.32, abs=0.05)
    np.testing.assert_allclose(np.exp(res.x), [992.594, 2569.243, 14.681, 26990.37], rtol=5e-3)


def test_crossed_premiums_at_printed_components(credit):
    # REFERENCE-VALUES §6: BLUPs from Table 1 at the printed variance components (D):
    # 181.0536 238.1783 277.7488 / 172.1394 229.1546 268.7774 / 225.3181 282.2371 323.6558; m 244.2515
    model = crossed_model(credit, {"collective": FLAT, "between_sd": np.sqrt([992.791, 2569.330, 14.611]),
                                   "within_sd": np.sqrt(26990.398)})
    ll = loglik_fn(model)
    _, m_hat = integrate_quadratic(lambda m: ll({"collective": m[0]}), 240.0, 1.0)
    assert m_hat[0] == pytest.approx(244.2515, abs=1e-4)
    values = with_values({"collective": m_hat[0]}, model, ("premium",))
    want = [181.0536, 238.1783, 277.7488, 172.1394, 229.1546, 268.7774, 225.3181, 282.2371, 323.6558]
    np.testing.assert_allclose(values["premium"], want, atol=1e-4)


# ---------------------------------------------------------------- Poisson–gamma

@pytest.fixture(scope="module")
def bus(shared_data):
    data = bc.datasets.load("bus", data_dir=shared_data)
    # REFERENCE-VALUES §11.1 cleaning: drop negative tot.cost (keep missing), drop company 145
    return data[~(data["tot.cost"] < 0) & (data["co.id"] != 145)]


@pytest.mark.slow
def test_poisson_gamma_exact_marginal_ml_bus(bus):
    # REFERENCE-VALUES §11.6 (D, exact marginal ML, base zone 4 / age 4): lam 0.420456 (rel 1e-3),
    # (Int) -7.75973, zones 0.24396 0.48210 0.10374 0.35496 0.22761 -0.50675,
    # ages 0.50818 0.49755 0.45246 0.36329 (rel 1e-4), -2 log L = 3139.9691
    assert len(bus) == 1473 and bus["co.id"].nunique() == 660
    model = poisson_gamma(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed=["zone", "bus.age"],
                          priors={"log_collective": FLAT, "fixef": FLAT, "lam": FLAT})
    assert list(model.coords["coef"]) == ["zone1", "zone2", "zone3", "zone5", "zone6", "zone7",
                                          "bus.age0", "bus.age1", "bus.age2", "bus.age3"]
    ll = loglik_fn(model)
    grad = model.compile_dlogp(jacobian=False)
    unpack = lambda x: {"log_collective": x[0], "fixef": x[1:11], "lam_log__": x[11]}
    res = minimize(lambda x: -ll(unpack(x)), np.r_[-7.5, np.zeros(10), 0.0], jac=lambda x: -grad(unpack(x)),
                   method="BFGS", options={"gtol": 1e-6})
    assert 2 * res.fun == pytest.approx(3139.9691, abs=1e-3)
    assert np.exp(res.x[11]) == pytest.approx(0.420456, rel=1e-3)
    want = [-7.75973, 0.24396, 0.48210, 0.10374, 0.35496, 0.22761, -0.50675, 0.50818, 0.49755, 0.45246, 0.36329]
    np.testing.assert_allclose(res.x[:11], want, rtol=1e-4, atol=2e-5)


def test_poisson_gamma_credibility_identity_bus(bus):
    # REFERENCE-VALUES §11.5 (D): at the printed dhglm beta and lam = exp(-1.097),
    # u_hat = (alpha + y)/(alpha + mu): 561 3.1114, 559 2.9441, 301 2.5177, 535 2.4674,
    # 406 2.4537, 524 0.3123 (abs 0.0015: the printed inputs are rounded)
    beta = [0.22644, 0.44224, 0.03305, 0.28805, 0.20941, -0.57862, 0.51538, 0.50149, 0.46698, 0.36315]
    model = poisson_gamma(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed=["zone", "bus.age"],
                          priors={"log_collective": -7.65055, "fixef": beta, "lam": np.exp(-1.097)})
    values = with_values({}, model, ("premium", "expected_claims"))
    companies = list(model.coords["co.id"])
    e = model["exposure_total"].get_value()
    u = values["premium"] * e / values["expected_claims"]
    got = [u[companies.index(c)] for c in (561, 559, 301, 535, 406, 524)]
    np.testing.assert_allclose(got, [3.1114, 2.9441, 2.5177, 2.4674, 2.4537, 0.3123], atol=0.0015)


def test_poisson_gamma_posterior_mean_given_alpha_beta():
    # FORMULAS.md §7 (b): frequency ~ Gamma(alpha, rate beta) => posterior mean
    # (alpha + claims)/(beta + exposure); here beta = alpha/collective
    data = bc.datasets.load("sim_poisson_gamma")
    alpha, collective = 2.5, 0.1
    model = poisson_gamma(data, group="company", claims="claims", exposure="exposure",
                          priors={"log_collective": np.log(collective), "lam": 1 / alpha})
    values = with_values({}, model)
    totals = data.groupby("company")[["claims", "exposure"]].sum()
    want = (alpha + totals["claims"]) / (alpha / collective + totals["exposure"])
    np.testing.assert_allclose(values["premium"], want.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(values["Z"], totals["exposure"] / (totals["exposure"] + alpha / collective), rtol=1e-12)
