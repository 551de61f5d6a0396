"""Coverage-study harness (bayescred.studies.coverage): truth, scoring, Monte Carlo SEs, seeds.

The harness is checked against intervals whose coverage is known exactly: Bühlmann–Straub
premiums with the *true* variance components, where the homogeneous credibility premium
P_j = Z_j X_j∘ + (1 − Z_j) X_z has prediction error P_j − μ_j ~ N(0, g1 + g2) with
g1 = τ²(1 − Z_j), g2 = (1 − Z_j)² τ²/Z_• (FORMULAS.md §2 "MSE with known structural
parameters" and §9 table rows (1)-(2); seed 004_07f8365c92996b9b.txt eqs 3.14 ff.). So
P ± z·sqrt(g1 + g2) covers with probability exactly `prob` at every J, and P ± z·sqrt(g1)
with probability 2Φ(z·sqrt(g1/(g1 + g2))) − 1 < prob: the harness must reproduce both
within Monte Carlo error. Budget: about 60 s (the Bayesian smoke test is marked slow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayescred.studies import coverage
from bayescred.datasets import simulate
from bayescred.lmm import lmm


# --------------------------------------------------------------------------- known-variance arms


def _bs_known(sim, prob):
    """Homogeneous BS premium with the true τ², σ² and its exact g1, g2 (FORMULAS.md §2, §9)."""
    d, t = sim.data, sim.truth
    risk = d["risk"].to_numpy() - 1  # simulator labels are 1..J
    w = np.bincount(risk, d["weight"].to_numpy())
    mean = np.bincount(risk, d["weight"].to_numpy() * d["loss"].to_numpy()) / w
    Z = w / (w + t["within"] / t["between"])
    collective = (Z * mean).sum() / Z.sum()
    premium = pd.Series(Z * mean + (1 - Z) * collective, index=sim.effects.index)
    g1 = t["between"] * (1 - Z)
    g2 = (1 - Z) ** 2 * t["between"] / Z.sum()
    return premium, g1, g2


def known_variance_arm(expected: list):
    """Arm with two methods; appends each replicate's exact expected coverage of 'known g1'."""

    def arm(sim, prob, _seed):
        premium, g1, g2 = _bs_known(sim, prob)
        z = stats.norm.ppf(0.5 + prob / 2)
        expected.append(float(np.mean(2 * stats.norm.cdf(z * np.sqrt(g1 / (g1 + g2))) - 1)))
        parts = [
            pd.DataFrame({"method": name, "estimate": premium, "lower": premium - z * sd, "upper": premium + z * sd})
            for name, sd in (("known g1", np.sqrt(g1)), ("known g1+g2", np.sqrt(g1 + g2)))
        ]
        return pd.concat(parts)

    return arm


def test_exact_intervals_cover_at_nominal_rate_even_with_five_risks():
    expected = []
    table = coverage.coverage_study(  # between = 10: k = 10, Z about 1/3, so g2 matters at J = 5
        "buhlmann_straub", (5, 30), replicates=400, seed=11, arms={"known": known_variance_arm(expected)}, between=10.0
    )
    exact = table[table["method"] == "known g1+g2"].set_index("n_risks")
    for J in (5, 30):
        assert abs(exact.loc[J, "coverage"] - 0.9) < 3 * exact.loc[J, "mc_se"], exact
    # MC SE is of the right size: at most the independent-binomial SE inflated by the
    # common collective, at least the binomial SE of R·J independent hits / 2
    naive_se = np.sqrt(0.9 * 0.1 / (400 * exact.index.to_numpy()))
    assert np.all(exact["mc_se"].to_numpy() > 0.5 * naive_se)
    assert np.all(exact["mc_se"].to_numpy() < 3 * naive_se)

    # g1 alone ignores the estimation of the collective: under-covers at J = 5 by a known amount
    g1 = table[table["method"] == "known g1"].set_index("n_risks")
    theory = {5: np.mean(expected[:400]), 30: np.mean(expected[400:])}
    for J in (5, 30):
        assert abs(g1.loc[J, "coverage"] - theory[J]) < 3 * g1.loc[J, "mc_se"], (g1, theory)
    assert theory[5] < 0.86  # the shortfall is real at J = 5 (about 0.84) ...
    assert g1.loc[5, "coverage"] < 0.9 - 3 * g1.loc[5, "mc_se"]  # ... and detected by the harness
    assert theory[30] > 0.88  # ... and nearly gone at J = 30 (about 0.889)


def test_an_interval_that_misses_the_truth_scores_zero():
    def shifted(sim, prob, _seed):  # centred far from the truth: must never cover
        truth = coverage.true_premium("buhlmann_straub", sim)
        return pd.DataFrame({"method": "shifted", "estimate": truth + 100, "lower": truth + 50, "upper": truth + 150})

    def undefined(sim, prob, _seed):  # risks 1, 2: no interval; risks 3-5: one around the truth
        truth = coverage.true_premium("buhlmann_straub", sim)
        lower = np.where(truth.index <= 2, np.nan, truth - 1)
        return pd.DataFrame({"method": "nan", "estimate": truth, "lower": lower, "upper": truth + 1})

    table = coverage.coverage_study("buhlmann_straub", 5, replicates=3, seed=1, arms={"a": shifted, "b": undefined})
    table = table.set_index("method")
    assert table.loc["shifted", "coverage"] == 0.0
    assert table.loc["shifted", "width"] == pytest.approx(100)
    assert table.loc["nan", "coverage"] == pytest.approx(0.6)  # undefined intervals count as misses
    assert table.loc["nan", "undefined"] == pytest.approx(0.4)
    assert table.loc["nan", "coverage_defined"] == 1.0
    assert table.loc["nan", "width"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- the truth


def test_true_premium_is_collective_plus_the_risk_effect():
    # between ~ 0: every risk's true premium is the collective
    sim = simulate.buhlmann_straub(8, between=1e-12, seed=3)
    np.testing.assert_allclose(coverage.true_premium("buhlmann_straub", sim), 80.0, atol=1e-4)
    # within ~ 0: every observation equals its risk's true mean, m + Ξ_j
    sim = simulate.buhlmann_straub(8, within=1e-12, seed=3)
    observed = sim.data.groupby("risk")["loss"].mean()
    np.testing.assert_allclose(coverage.true_premium("buhlmann_straub", sim), observed, atol=1e-4)
    assert np.std(observed) > 1  # ... and the risks do differ

    # Hachemeister: without noise each risk is a line; its value at T + 1 is the truth
    sim = simulate.hachemeister(6, within=1e-12, seed=4)
    t = sim.data.groupby("risk")
    slope = t.apply(lambda g: np.polyfit(g["period"], g["loss"], 1)[0])
    level = t.apply(lambda g: np.polyval(np.polyfit(g["period"], g["loss"], 1), 13))
    np.testing.assert_allclose(coverage.true_premium("hachemeister", sim), level, rtol=1e-8)
    assert slope.std() > 1

    # Poisson–gamma: frequency m·u_i; with huge exposure claims/exposure recovers it
    sim = simulate.poisson_gamma(6, between=1e-12, seed=5)
    np.testing.assert_allclose(coverage.true_premium("poisson_gamma", sim), 0.1, rtol=1e-4)
    sim = simulate.poisson_gamma(6, exposure=(1e8, 1e8 + 1), seed=5)
    g = sim.data.groupby("risk")
    observed = g["claims"].sum() / g["exposure"].sum()
    np.testing.assert_allclose(coverage.true_premium("poisson_gamma", sim), observed, rtol=2e-3)
    assert observed.std() / observed.mean() > 0.2


# --------------------------------------------------------------------------- seeds and arguments


def test_same_seed_same_table_and_sizes_are_independent():
    arm = {"known": known_variance_arm([])}
    a = coverage.coverage_study("buhlmann_straub", (5, 10), replicates=20, seed=7, arms=arm)
    b = coverage.coverage_study("buhlmann_straub", (5, 10), replicates=20, seed=7, arms=arm)
    pd.testing.assert_frame_equal(a, b)
    c = coverage.coverage_study("buhlmann_straub", (5, 10), replicates=20, seed=8, arms=arm)
    assert not np.allclose(a["width"], c["width"])
    # the J = 10 rows do not depend on which other sizes were asked for
    alone = coverage.coverage_study("buhlmann_straub", 10, replicates=20, seed=7, arms=arm)
    pd.testing.assert_frame_equal(alone, a[a["n_risks"] == 10].reset_index(drop=True))
    # ... and the first replicates do not depend on how many follow
    reps = coverage.coverage_replicates("buhlmann_straub", 10, replicates=30, seed=7, arms=arm)
    first = coverage.summarise_coverage(reps[reps["replicate"] < 20])
    pd.testing.assert_frame_equal(first, alone)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="buhlman"), "model must be one of"),
        (dict(prob=1.0), "prob must lie"),
        (dict(prob="0.9"), "prob must lie"),
        (dict(n_risks=(5, 2)), "n_risks must be an integer >= 3"),
        (dict(n_risks=(5, 5)), "distinct"),
        (dict(n_risks=()), "non-empty"),
        (dict(n_risks=5.5), "integer or a sequence"),
        (dict(replicates=1), "replicates must be an integer >= 2"),
        (dict(bayes_replicates=50), "cannot exceed"),
        (dict(seed=None), "explicit non-negative integer seed"),
        (dict(seed=1.5), "explicit non-negative integer seed"),
        (dict(betwen=3.0), "unknown simulation settings"),
        (dict(draws=0), "draws must be"),
        (dict(model="poisson_gamma", factors={"zone": [0.0, 0.3]}), "read no rating factors"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs, message):
    args = dict(model="buhlmann_straub", n_risks=(5, 10), replicates=10, seed=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        coverage.coverage_study(args.pop("model"), args.pop("n_risks"), args.pop("replicates"), **args)


def test_summary_needs_replicate_table():
    with pytest.raises(ValueError, match="lacks columns"):
        coverage.summarise_coverage(pd.DataFrame({"model": ["x"]}))


def test_plot_has_a_panel_per_model_with_two_se_bars():
    arm = {"known": known_variance_arm([])}
    table = coverage.coverage_study("buhlmann_straub", (5, 10), replicates=10, seed=2, arms=arm)
    other = table.assign(model="poisson_gamma")
    fig = coverage.plot_coverage(pd.concat([table, other]))
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    nominal = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert nominal and nominal[0].get_ydata()[0] == pytest.approx(0.9)
    bars = ax.containers[0]  # first method's error bars span ±2 MC SE
    segs = bars.lines[2][0].get_segments()
    first = table[table["method"] == "known g1"].sort_values("n_risks")
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in segs], 4 * first["mc_se"].to_numpy())
    with pytest.raises(ValueError, match="lacks columns"):
        coverage.plot_coverage(table.drop(columns="mc_se"))


# --------------------------------------------------------------------------- the EBLUP arms


def test_eblup_intervals_reach_nominal_coverage_with_many_risks():
    # J = 1000: the variance parameters are estimated almost exactly, so all three EBLUP
    # intervals are the known-variance ones and must cover 90% within Monte Carlo error
    table = coverage.coverage_study("buhlmann_straub", 1000, replicates=8, bayes=False, seed=5)
    for method in coverage.EBLUP_METHODS.values():
        row = table.set_index("method").loc[method]
        assert abs(row["coverage"] - 0.9) < 3 * row["mc_se"] + 0.002, table
        assert row["mc_se"] < 0.005
    assert table["boundary"].eq(0).all()


@pytest.mark.parametrize("model", coverage.MODELS)
def test_eblup_arm_smoke(model):
    reps = coverage.coverage_replicates(model, (5, 10), 3, bayes=False, seed=3)
    assert set(reps["method"]) == set(coverage.EBLUP_METHODS.values())
    assert len(reps) == 2 * 3 * 3
    assert reps["coverage"].between(0, 1).all()
    # per replicate the three SDs are nested, (i) <= (ii) <= (iii), so are the widths
    wide = reps.pivot_table(index=["n_risks", "replicate"], columns="method", values="width")
    names = list(coverage.EBLUP_METHODS.values())
    assert (wide[names[0]] <= wide[names[1]] * (1 + 1e-9)).all()
    assert (wide[names[1]] <= wide[names[2]] * (1 + 1e-9)).all()
    table = coverage.summarise_coverage(reps)
    assert table["replicates"].eq(3).all() and table["nominal"].eq(0.9).all()


def test_eblup_intervals_are_premium_plus_minus_z_sd():
    sim = simulate.buhlmann_straub(12, seed=9)
    iv = coverage.eblup_intervals("buhlmann_straub", sim, prob=0.8)
    z = stats.norm.ppf(0.9)
    np.testing.assert_allclose(iv["upper"] - iv["estimate"], z * iv["sd"])
    np.testing.assert_allclose(iv["estimate"] - iv["lower"], z * iv["sd"])
    # the estimate is the BS credibility premium at the REML variances: Z_j X_j + (1 - Z_j) X_z
    fit = lmm("loss ~ 1 + (1 | risk)", sim.data, weights="weight")
    tau2 = float(fit.varcorr["vcov"].iloc[0])
    d = sim.data
    w = d.groupby("risk")["weight"].sum()
    mean = (d["loss"] * d["weight"]).groupby(d["risk"]).sum() / w
    Z = w / (w + fit.sigma2 / tau2)
    premium = Z * mean + (1 - Z) * (Z * mean).sum() / Z.sum()
    first = iv[iv["method"] == coverage.EBLUP_METHODS["cond_sd"]]
    np.testing.assert_allclose(first["estimate"], premium.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(first["sd"], np.sqrt(tau2 * (1 - Z)).to_numpy(), rtol=1e-6)  # g1 = τ²(1 - Z_j)


# --------------------------------------------------------------------------- the Bayesian arm


def test_bayes_arm_reuses_one_compiled_model_with_each_portfolios_data():
    a = simulate.buhlmann_straub(5, seed=21)
    b = simulate.buhlmann_straub(5, seed=22)
    template = coverage.bayes_model("buhlmann_straub", b.data)
    run = dict(random_seed=3, draws=150, tune=150, chains=1, template=template)
    first = coverage.bayes_intervals("buhlmann_straub", b, **run)  # compiles
    other = coverage.bayes_intervals("buhlmann_straub", a, **run)  # re-uses it with a's data
    again = coverage.bayes_intervals("buhlmann_straub", b, **run)
    pd.testing.assert_frame_equal(first, again)  # the data really were swapped back and forth
    assert not np.allclose(first["estimate"], other["estimate"])
    # each portfolio's posterior premiums sit near its own credibility premiums
    for sim, post in ((a, other), (b, first)):
        eb = coverage.eblup_intervals("buhlmann_straub", sim)
        eb = eb[eb["method"] == coverage.EBLUP_METHODS["mse_sd"]]
        assert np.all(np.abs(post["estimate"] - eb["estimate"]) < 2 * eb["sd"])
    assert (first["lower"] < first["estimate"]).all() and (first["estimate"] < first["upper"]).all()
    with pytest.raises(ValueError, match="other risks"):
        coverage.bayes_model("buhlmann_straub", simulate.buhlmann_straub(6, seed=1).data, template=template)


@pytest.mark.slow
@pytest.mark.parametrize("model", coverage.MODELS)
def test_study_with_bayes_arm_smoke(model):
    reps = coverage.coverage_replicates(model, 5, 3, bayes_replicates=2, seed=4, draws=100, tune=100, chains=1)
    table = coverage.summarise_coverage(reps)
    assert table["method"].tolist() == list(coverage.METHODS)
    assert table.set_index("method")["replicates"].tolist() == [3, 3, 3, 2]
    assert table["coverage"].between(0, 1).all()
