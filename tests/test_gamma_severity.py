"""Gamma severity credibility (docs/formulas.md §12): the shared kernel against numerical
integration, numpy against pytensor, the three arms against the conjugate formulas and each
other, exact ML recovering a simulated truth, and R (optim on the closed form, actuar's cm)."""

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

import bayescred as bc
from bayescred.datasets import simulate
from bayescred import catalogue
from bayescred.errors import BoundaryWarning, DegenerateResponseError, NonPositiveError, NotIntegerError, TooFewPeriodsError
from bayescred.glmm import gamma_severity_eb
from bayescred.glmm.gamma_severity import _evaluate
from bayescred.likelihood import gamma as kernel

RSCRIPT = Path(__file__).parent / "r" / "gamma_severity.R"
ARGS = {"group": "risk", "severity": "severity", "claims": "claims"}


@pytest.fixture(scope="module")
def sim():
    return simulate.gamma_severity(n_risks=30, seed=11)


@pytest.fixture(scope="module")
def hache():
    return bc.datasets.load("hachemeister")


def _segsum(values, index, size):
    return np.bincount(index, values, minlength=size)


def _magnitude(nu, alpha, beta, st):
    """Σ |terms| of each risk's log marginal (docs/formulas.md §12): the scale of its rounding error."""
    shape = alpha + nu * st["claims"]
    lgamma = _segsum(np.abs(st["count_cells"] * special.gammaln(st["count_n"] * nu)), st["count_risk"], st["size"])
    return (nu * np.abs(st["log_a"]) + np.abs(st["log_b"]) + lgamma + abs(special.gammaln(alpha))
            + np.abs(special.gammaln(shape)) + np.abs(nu * st["claims"] * np.log(beta))
            + shape * np.log1p(st["amount"] / beta))


def _by_quadrature(cells: pd.DataFrame, nu, alpha, beta):
    """log ∫ Π_c Gamma(x̄_c | n_c ν, rate n_c λ) Gamma(λ | α, β) dλ, by scipy quad around the
    posterior mode (the integrand rescaled by its value there)."""
    n, x = cells["claims"].to_numpy(float), cells["severity"].to_numpy(float)

    def log_f(lam):
        return (stats.gamma.logpdf(x, n * nu, scale=1 / (n * lam)).sum()
                + stats.gamma.logpdf(lam, alpha, scale=1 / beta))

    shape, rate = alpha + nu * n.sum(), beta + (n * x).sum()
    mode, sd = (shape - 1) / rate, np.sqrt(shape) / rate
    peak = log_f(mode)
    lo, hi = max(mode - 40 * sd, 0.0), mode + 40 * sd
    value, _ = integrate.quad(lambda lam: np.exp(log_f(lam) - peak), lo, hi, points=[mode], epsabs=0, epsrel=1e-13,
                              limit=200)
    return peak + np.log(value)


def test_marginal_equals_numerical_integration(sim):
    data = sim.data
    c = kernel.cells(data, **ARGS)
    nu, alpha = 1.3, 5.5
    beta = kernel.rate_of(nu, alpha, 950.0)
    ours = kernel.log_marginal(np, nu, alpha, beta, c.arrays())
    for position in (0, 7, 19):
        risk = c.levels[position]
        want = _by_quadrature(data[data["risk"] == risk], nu, alpha, beta)
        assert ours[position] == pytest.approx(want, rel=1e-10, abs=1e-9)


def test_marginal_one_row_per_claim_equals_numerical_integration():
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"risk": np.repeat([1, 2, 3], [4, 9, 1]), "severity": rng.gamma(2.0, 300.0, 14)})
    c = kernel.cells(data, group="risk", severity="severity")
    nu, alpha, beta = 2.2, 4.0, 2000.0
    ours = kernel.log_marginal(np, nu, alpha, beta, c.arrays())
    for position, risk in enumerate(c.levels):
        want = _by_quadrature(data[data["risk"] == risk].assign(claims=1), nu, alpha, beta)
        assert ours[position] == pytest.approx(want, rel=1e-10, abs=1e-9)
    assert list(c.count_n) == [1, 1, 1] and list(c.count_cells) == [4, 9, 1]


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_cells_are_reduced_in_any_engine(hache, engine):
    if engine == "polars":
        frame = pytest.importorskip("polars").from_pandas(hache).lazy()
    else:
        frame = pytest.importorskip("duckdb").sql("select * from hache")
    ours = kernel.cells(frame, group="state", severity="severity", claims="claims")
    want = kernel.cells(hache, group="state", severity="severity", claims="claims")
    assert list(ours.levels) == list(want.levels)
    for name in ("claims", "amount", "within_ss", "log_a", "log_b", "count_risk", "count_n", "count_cells"):
        np.testing.assert_allclose(getattr(ours, name), getattr(want, name), rtol=1e-13)


def test_numpy_and_pytensor_kernels_agree(hache):
    c = kernel.cells(hache, group="state", severity="severity", claims="claims")
    st = c.arrays()
    nu, alpha, mu = pt.dscalars("nu", "alpha", "mu")
    beta = kernel.rate_of(nu, alpha, mu)
    graph = pytensor.function([nu, alpha, mu], [kernel.log_marginal(pt, nu, alpha, beta, st),
                                                kernel.premium(nu, alpha, beta, st),
                                                kernel.log_conditional(pt, nu, beta / 2, st)])
    for point in [(0.03, 40.0, 1700.0), (1.5, 2.5, 900.0), (0.2, 1e5, 2000.0)]:
        b = kernel.rate_of(*point)
        want = [kernel.log_marginal(np, point[0], point[1], b, st), kernel.premium(point[0], point[1], b, st),
                kernel.log_conditional(np, point[0], b / 2, st)]
        # the log densities sum terms of up to ~1e6 (ν A_i, log Γ(α)) to values of ~100:
        # both evaluations agree to a few ulps of the terms' magnitude
        scale = 16 * np.finfo(float).eps * _magnitude(point[0], point[1], b, st)
        for got, expected, atol in zip(graph(*point), want, [scale, 0.0, scale]):
            assert np.all(np.abs(got - expected) <= atol + 1e-13 * np.abs(expected)), (point, got - expected)
    # numpy with a leading draws axis (the post-sampling shape) equals the scalar evaluation
    draws = np.array([[0.03, 40.0], [1.5, 2.5]])
    b = kernel.rate_of(draws[:, :1], draws[:, 1:], 1700.0)
    many = kernel.log_marginal(np, draws[:, :1], draws[:, 1:], b, st)
    for row in range(2):
        one = kernel.log_marginal(np, draws[row, 0], draws[row, 1], b[row, 0], st)
        atol = 16 * np.finfo(float).eps * _magnitude(draws[row, 0], draws[row, 1], b[row, 0], st)
        assert np.all(np.abs(many[row] - one) <= atol + 1e-13 * np.abs(one)), many[row] - one


def test_components_are_the_moments_of_the_inverse_gamma_mean():
    # μ(Θ) = ν/λ, λ ~ Gamma(α, β): numerical moments against docs/formulas.md §12
    nu, alpha, mu = 1.7, 6.5, 1200.0
    beta = kernel.rate_of(nu, alpha, mu)
    lam = stats.gamma(alpha, scale=1 / beta)
    m1 = lam.expect(lambda x: nu / x)
    m2 = lam.expect(lambda x: (nu / x) ** 2)
    within = lam.expect(lambda x: nu / x**2)  # Var(X | λ) = ν/λ²
    comp = kernel.components(nu, alpha, mu)
    assert comp["collective"] == pytest.approx(m1, rel=1e-10)
    assert comp["between"] == pytest.approx(m2 - m1**2, rel=1e-8)
    assert comp["within"] == pytest.approx(within, rel=1e-8)
    assert comp["k"] == pytest.approx(within / (m2 - m1**2), rel=1e-8)


def test_classical_is_buhlmann_straub_on_claim_sizes(hache):
    for method in ("unbiased", "iterative"):
        ours = bc.credibility.gamma_severity(hache, group="state", severity="severity", claims="claims", method=method)
        bs = bc.credibility.buhlmann_straub(hache, group="state", response="severity", weight="claims", method=method)
        for name in ("collective", "between", "within", "k"):
            assert ours.structure[name] == pytest.approx(bs.structure[name], rel=1e-12)
        for column in ("weight", "mean", "Z", "premium"):
            np.testing.assert_allclose(ours.table[column], bs.table[column], rtol=1e-12)
        s = ours.structure
        assert s["nu"] == pytest.approx((s["collective"] ** 2 + s["between"]) / s["within"], rel=1e-15)
        assert s["alpha"] == pytest.approx(2 + s["collective"] ** 2 / s["between"], rel=1e-15)
    assert ours.model == "Gamma severity"


def test_classical_one_row_per_claim_has_unit_weights():
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"risk": np.repeat(["a", "b", "c", "d"], [3, 5, 2, 6]), "severity": rng.gamma(2.0, 500.0, 16)})
    ours = bc.credibility.gamma_severity(data, group="risk", severity="severity")
    bs = bc.credibility.buhlmann_straub(data, group="risk", response="severity")
    np.testing.assert_allclose(ours.table["premium"], bs.table["premium"], rtol=1e-12)
    assert list(ours.table["weight"]) == [3, 5, 2, 6]


def test_eb_premium_is_the_conjugate_formula(sim):
    fit = gamma_severity_eb(sim.data, **ARGS)
    r = fit.ranef()
    totals = sim.data.assign(amount=sim.data["claims"] * sim.data["severity"]).groupby("risk")[["claims", "amount"]].sum()
    N, S = totals["claims"].to_numpy(float), totals["amount"].to_numpy(float)
    nu, alpha, beta = fit.nu, fit.alpha, fit.beta
    want = nu * (beta + S) / (alpha + nu * N - 1)
    np.testing.assert_allclose(r["premium"], want, rtol=1e-13)
    Z = nu * N / (nu * N + alpha - 1)
    np.testing.assert_allclose(r["Z"], Z, rtol=1e-13)
    np.testing.assert_allclose(r["premium"], Z * S / N + (1 - Z) * fit.collective, rtol=1e-12)
    assert fit.collective == pytest.approx(nu * beta / (alpha - 1), rel=1e-14)
    np.testing.assert_allclose(r["cond_sd"], want / np.sqrt(alpha + nu * N - 2), rtol=1e-13)
    assert (r["cond_sd"] <= r["pev_sd"]).all() and (r["pev_sd"] <= r["mse_sd"]).all()
    comp = fit.components["estimate"]
    assert comp["k"] == pytest.approx(comp["within"] / comp["between"], rel=1e-13)
    assert comp["between"] == pytest.approx(fit.collective**2 / (alpha - 2), rel=1e-13)
    d = fit.to_dict()
    assert d["model"] == "gamma_severity" and len(d["ranef"]) == 30 and d["boundary"] is False


def test_eb_is_a_maximum_with_correct_derivatives(sim):
    fit = gamma_severity_eb(sim.data, **ARGS)
    st = kernel.cells(sim.data, **ARGS).arrays()
    theta = np.log([fit.nu, fit.collective, fit.phi])
    ll, grad, hess = _evaluate(st, theta)
    assert ll == pytest.approx(fit.loglik, rel=1e-15)
    assert np.max(np.abs(grad)) < 1e-6
    assert np.all(np.linalg.eigvalsh(hess) < 0)
    # the analytic gradient and Hessian against central differences away from the optimum
    at, h = theta + np.array([0.1, -0.05, 0.3]), 1e-5
    _, g0, h0 = _evaluate(st, at)
    for k in range(3):
        e = np.eye(3)[k] * h
        assert g0[k] == pytest.approx((_evaluate(st, at + e, 0) - _evaluate(st, at - e, 0)) / (2 * h), rel=1e-6)
        np.testing.assert_allclose(h0[k], (_evaluate(st, at + e)[1] - _evaluate(st, at - e)[1]) / (2 * h),
                                   rtol=1e-5, atol=1e-6 * np.abs(h0).max())


def test_eb_recovers_the_simulated_truth():
    # 400 risks x 5 periods; the truth is inside 4 standard errors (log scale) for every component
    s = simulate.gamma_severity(n_risks=400, seed=20261202)
    fit = gamma_severity_eb(s.data, **ARGS)
    assert fit.converged and not fit.boundary
    comp = fit.components
    for name in ("collective", "between", "within", "k"):
        se_log = comp.loc[name, "se"] / comp.loc[name, "estimate"]
        assert abs(np.log(comp.loc[name, "estimate"] / s.truth[name])) < 4 * se_log, name
    assert abs(np.log(fit.nu / s.truth["nu"])) < 0.1
    # premiums track the true mean claims better than the risks' own averages
    r = fit.ranef()
    truth = s.effects["mean"].to_numpy()
    assert np.mean((r["premium"] - truth) ** 2) < np.mean((r["mean"] - truth) ** 2)


def test_eb_boundary_without_heterogeneity():
    # one λ for every risk; under no heterogeneity about half the seeds give an ML on the
    # boundary (φ = 0): seed 10 is one of them
    rng = np.random.default_rng(10)
    n = rng.integers(5, 30, 60)
    data = pd.DataFrame({"risk": np.repeat(np.arange(12), 5), "claims": n,
                         "severity": rng.gamma(n * 2.0, 1.0 / (n * 2.0 / 1000.0))})
    with pytest.warns(BoundaryWarning, match="between = 0"):
        fit = gamma_severity_eb(data, group="risk", severity="severity", claims="claims")
    assert fit.boundary and fit.boundary_side == "between = 0"
    r = fit.ranef()
    assert (r["Z"] == 0).all() and np.allclose(r["premium"], fit.collective)
    assert fit.collective == pytest.approx((n * data["severity"]).sum() / n.sum(), rel=1e-14)
    assert fit.components.loc["between", "estimate"] == 0 and r["mse_sd"].isna().all()
    st = kernel.cells(data, group="risk", severity="severity", claims="claims").arrays()
    # the boundary is the limit α → ∞ of the marginal
    big = 1e7
    ll = kernel.log_marginal(np, fit.nu, big, kernel.rate_of(fit.nu, big, fit.collective), st).sum()
    assert ll == pytest.approx(fit.loglik, rel=1e-6)
    # and a maximum: any positive φ at the boundary's (ν, μ) is lower
    for phi in (1e-4, 1e-3, 1e-2):
        assert _evaluate(st, np.log([fit.nu, fit.collective, phi]), 0) < fit.loglik


def test_eb_boundary_of_infinite_between_variance():
    # risk rates from Gamma(α = 1.3): the risks' mean claims have no finite variance, so the
    # ML under α > 2 is the limit α → 2 (flagged; fitted there: Z_i = ν N_i/(ν N_i + 1))
    rng = np.random.default_rng(0)
    lam = rng.gamma(1.3, 1.0, 200)
    n = rng.integers(5, 50, 800)
    risk = np.repeat(np.arange(200), 4)
    data = pd.DataFrame({"risk": risk, "claims": n, "severity": rng.gamma(n * 2.0, 1 / (n * lam[risk]))})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = gamma_severity_eb(data, group="risk", severity="severity", claims="claims")
    assert [str(w.message) for w in caught if "boundary" in str(w.message)]
    assert all(issubclass(w.category, BoundaryWarning) for w in caught), [str(w.message) for w in caught]
    assert fit.boundary and fit.boundary_side == "between = inf" and fit.alpha == 2 and fit.converged
    r = fit.ranef()
    N = r["claims"].to_numpy()
    np.testing.assert_allclose(r["Z"], fit.nu * N / (fit.nu * N + 1), rtol=1e-14)
    assert np.isfinite(r["pev_sd"]).all() and r["mse_sd"].isna().all()
    assert fit.components.loc["between", "estimate"] == np.inf
    # a maximum over α > 2 at the boundary's (ν, μ): any finite φ is lower
    st = kernel.cells(data, group="risk", severity="severity", claims="claims").arrays()
    for log_phi in (0.0, 5.0, 15.0):
        assert _evaluate(st, np.array([np.log(fit.nu), np.log(fit.collective), log_phi]), 0) < fit.loglik


def test_bad_severity_same_error_in_every_arm(sim):
    bad = sim.data.copy()
    bad.loc[4, "severity"] = 0.0
    messages = set()
    for arm in (bc.credibility.gamma_severity, gamma_severity_eb, bc.models.gamma_severity):
        with pytest.raises(NonPositiveError) as info:
            arm(bad, **ARGS)
        messages.add(str(info.value))
        assert "severity" in str(info.value) and "4" in str(info.value)
    assert len(messages) == 1
    fractional = sim.data.astype({"claims": float})
    fractional.loc[2, "claims"] = 2.5
    with pytest.raises(NotIntegerError):
        gamma_severity_eb(fractional, **ARGS)


def test_posterior_mean_at_fixed_hyperparameters_is_the_eb_premium(sim):
    fit = gamma_severity_eb(sim.data, **ARGS)
    model = bc.models.gamma_severity(sim.data, **ARGS,
                                     priors={"log_collective": np.log(fit.collective), "nu": fit.nu, "phi": fit.phi})
    premium, Z, loglik, k = pytensor.function([], [model["premium"], model["Z"], model["loglik"], model["k"]])()
    r = fit.ranef()
    np.testing.assert_allclose(premium, r["premium"], rtol=1e-10)
    np.testing.assert_allclose(Z, r["Z"], rtol=1e-10)
    assert loglik.sum() == pytest.approx(fit.loglik, rel=1e-10)
    assert k == pytest.approx(fit.components.loc["k", "estimate"], rel=1e-10)
    # the exact draws after sampling: rate_i ~ Gamma(α + νN_i, β + S_i), premium = ν/rate_i
    from bayescred.models._base import info_of
    import xarray as xr

    draws = 40_000
    posterior = xr.Dataset({name: (("chain", "draw"), np.full((1, draws), value))
                            for name, value in [("nu", fit.nu), ("alpha", fit.alpha), ("beta", fit.beta)]},
                           coords={"chain": [0], "draw": np.arange(draws)})
    out = info_of(model).augment(model, posterior, np.random.default_rng(1), False, False)["posterior"]
    mean = out["premium"].mean(("chain", "draw")).to_numpy()
    se = r["cond_sd"].to_numpy() / np.sqrt(draws)
    assert np.all(np.abs(mean - r["premium"].to_numpy()) < 5 * se)


def test_factory_coords_and_components(hache):
    model = bc.models.gamma_severity(hache, group="state", severity="severity", claims="claims")
    assert list(model.coords["state"]) == [1, 2, 3, 4, 5]
    assert {"collective", "between", "within", "k", "Z", "premium", "alpha", "beta"} <= set(model.named_vars)
    assert {v.name for v in model.free_RVs} == {"log_collective", "nu", "phi"}
    latent = bc.models.gamma_severity(hache, group="state", severity="severity", claims="claims", likelihood="latent")
    assert "rate" in {v.name for v in latent.free_RVs}


@pytest.mark.slow
def test_sample_smoke(sim):
    model = bc.models.gamma_severity(sim.data, **ARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = bc.sample(model, draws=300, tune=300, chains=2, random_seed=4)
    post = tree["posterior"]
    assert {"premium", "premium_conditional_mean", "rate", "between", "within", "k"} <= set(post.data_vars)
    assert post["premium"].dims == ("chain", "draw", "risk")
    fit = gamma_severity_eb(sim.data, **ARGS)
    eb = fit.ranef()["premium"].to_numpy()
    bayes = post["premium"].mean(("chain", "draw")).to_numpy()
    assert np.max(np.abs(bayes / eb - 1)) < 0.05
    # bc.compare takes the EB fit itself: the catalogue entry summarises it, components by name
    comparison = bc.compare(fit, tree, bc.credibility.gamma_severity(sim.data, **ARGS))
    comps = comparison.variance_components
    assert list(comps.index) == ["between", "within"] and comps[["reml", "classical", "post_mean"]].notna().all().all()
    assert comparison.premiums[["classical", "eblup", "mse_sd", "post_sd"]].notna().all().all()


@pytest.mark.parametrize("shift", [0.0, 1e10])
def test_claim_sizes_without_resolvable_variation(sim, shift):
    # all equal (ν = ∞), or varying by 2e-8 of their size (ν N ~ 1e18): classical gives its
    # boundary answer, the likelihood arms refuse with one error
    data = sim.data.assign(severity=700.0) if shift == 0 else sim.data.assign(severity=sim.data["severity"] + shift)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        classical = bc.credibility.gamma_severity(data, **ARGS)
    assert np.isfinite(classical.table["premium"]).all()
    messages = set()
    for arm in (gamma_severity_eb, bc.models.gamma_severity):
        with pytest.raises(DegenerateResponseError) as info:
            arm(data, **ARGS)
        messages.add(str(info.value))
    assert len(messages) == 1 and "column 'severity'" in messages.pop()


def test_one_cell_per_risk(sim):
    data = sim.data[sim.data["period"] == 1]
    with pytest.raises(TooFewPeriodsError):
        bc.credibility.gamma_severity(data, **ARGS)  # Bühlmann–Straub's within needs two periods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        fit = gamma_severity_eb(data, **ARGS)  # ν is identified across risks by the marginal
    assert np.isfinite(fit.ranef()["premium"]).all() and np.isfinite(fit.loglik)


def test_catalogue_entry_arms_see_the_same_model(sim):
    entry = catalogue.get("gamma_severity")
    args = entry.Arguments(**ARGS).model_dump(exclude_none=True)
    classical = entry.classical(sim.data, args)
    fit = entry.eb(sim.data, args)
    summary = entry.eb_summary(fit, args, sim.data)
    model = entry.bayes(sim.data, args)
    risks = list(sim.effects.index)
    assert list(classical.table.index) == risks == list(summary.premiums.index) == list(model.coords["risk"])
    assert list(summary.components.index) == list(entry.components(args)) == ["between", "within"]
    assert set(entry.classical_components(classical, args)) == {"between", "within"}
    assert {"between", "within"} <= set(model.named_vars)
    assert list(entry.study.truth(sim)) == list(sim.effects["mean"])
    assert (summary.components["lower"] < summary.components["estimate"]).all()
    assert (summary.components["estimate"] < summary.components["upper"]).all()


def test_factory_data_swap_for_a_portfolio_of_the_same_risks():
    # the coverage study re-uses one model per number of risks with pm.set_data; the log Γ(n ν)
    # table's length differs between the portfolios and must be swapped too
    from bayescred.studies import coverage
    import pymc as pm
    import xarray as xr

    a, b = (simulate.gamma_severity(n_risks=8, seed=s) for s in (1, 2))
    model = coverage.bayes_model("gamma_severity", b.data, template=coverage.bayes_model("gamma_severity", a.data))
    cb = kernel.cells(b.data, **ARGS)
    assert len(kernel.cells(a.data, **ARGS).count_n) != len(cb.count_n)
    point = {"log_collective": np.log(900.0), "nu": 1.2, "phi": 0.3}
    ds = xr.Dataset({k: (("chain", "draw"), [[v]]) for k, v in point.items()})
    got = pm.compute_deterministics(ds, model=model, var_names=["loglik"], progressbar=False)["loglik"].values[0, 0]
    alpha = 2 + 1 / 0.3
    want = kernel.log_marginal(np, 1.2, alpha, kernel.rate_of(1.2, alpha, 900.0), cb.arrays())
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- R: optim on the closed form, actuar's cm


@pytest.fixture(scope="module")
def r_results(rscript, tmp_path_factory, sim, hache):
    folder = tmp_path_factory.mktemp("gamma_severity")
    designs = pd.concat([
        hache.rename(columns={"state": "risk", "claims": "n", "severity": "x"})[["risk", "period", "n", "x"]]
        .assign(design="hachemeister"),
        sim.data.rename(columns={"claims": "n", "severity": "x"}).assign(design="sim11"),
    ])
    designs.to_csv(folder / "designs.csv", index=False)
    run = subprocess.run([rscript, str(RSCRIPT), str(folder / "designs.csv"), str(folder / "out.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = pd.read_csv(folder / "out.csv")
    return {key: g.sort_values("i")["value"].to_numpy() for key, g in out.groupby(["design", "what"])}, designs


@pytest.mark.r
@pytest.mark.parametrize("design", ["hachemeister", "sim11"])
def test_ml_matches_r_optim(r_results, design):
    r, designs = r_results
    data = designs[designs["design"] == design]
    fit = gamma_severity_eb(data, group="risk", severity="x", claims="n")
    c = kernel.cells(data, group="risk", severity="x", claims="n")
    mu0 = c.amount.sum() / c.claims.sum()
    fixed = kernel.log_marginal(np, 0.5, 7.0, 3 * mu0, c.arrays()).sum()
    assert fixed == pytest.approx(r[(design, "loglik_fixed")][0], rel=1e-12)
    # the same optimum: R's nlminb/BFGS stops on a flat surface (5 states), so the parameters
    # agree to 1e-4 and our maximum is not below R's
    assert fit.loglik == pytest.approx(r[(design, "loglik")][0], rel=1e-10)
    assert fit.loglik >= r[(design, "loglik")][0] - 1e-10
    for name in ("nu", "alpha", "collective"):
        assert getattr(fit, name) == pytest.approx(r[(design, name)][0], rel=1e-4)
    np.testing.assert_allclose(fit.ranef()["premium"], r[(design, "premium")], rtol=1e-6)
    classical = bc.credibility.gamma_severity(data, group="risk", severity="x", claims="n")
    np.testing.assert_allclose(classical.table["premium"], r[(design, "bs_premium")], rtol=1e-8)
    assert classical.structure["between"] == pytest.approx(r[(design, "bs_between")][0], rel=1e-8)
    assert classical.structure["within"] == pytest.approx(r[(design, "bs_within")][0], rel=1e-8)
