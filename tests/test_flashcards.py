"""Every numeric worked example of the Exam MAS-II flashcard deck (seed
000_5e44464b038263f5.txt; REFERENCE-VALUES §2, cards X1–X20), computed with
bc.credibility. Exact answers at tolerance E; the card's rounded figures at R (errata
E15/E16: the deck rounds intermediate values — 0.857, 10.29, 0.888, 29.33 — so the exact
values are asserted and the printed ones only to their rounding).

Not here: X6-ML (ML σ̂_u² = 2.5, erratum E15) and the REML/ML parts of X17-D are
likelihood estimates, tested with bc.lmm, not with the moment estimators.
"""

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import BoundaryWarning

cred = bc.credibility


def E(x):
    return 1e-9 * max(1.0, abs(x))


def R(decimals):
    return 0.5 * 10.0**-decimals + 1e-9


def groups(spec, spread=1.0):
    """Rows with exactly the given (n, mean) per group label; the within-group pattern
    (mean ± spread·(t − centre)) sums to zero."""
    rows = []
    for label, (n, mean) in spec.items():
        for t in range(n):
            rows.append((label, mean + spread * (t - (n - 1) / 2)))
    return pd.DataFrame(rows, columns=["group", "y"])


def fixed(spec, between, within, collective=None):
    """Bühlmann–Straub (unit weights) at given structure parameters."""
    return cred.buhlmann_straub(groups(spec), group="group", response="y", between=between, within=within,
                                collective=collective)


def test_x1_intercept_slope_correlation():
    """X1, line 16: σ_u0² = 4, σ_u1² = 0.25, σ_u01 = 0.6 ⇒ corr = 0.6/(2·0.5) = 0.6."""
    data = pd.DataFrame({"g": np.repeat([1, 2], 3), "t": np.tile([1.0, 2, 3], 2), "y": [1, 2, 4, 2, 3, 3.0]})
    fit = cred.hachemeister(data, group="g", time="t", response="y", between=[[4, 0.6], [0.6, 0.25]], within=1.0,
                           structure="correlated")
    assert fit.structure["between_corr"].loc["intercept", "slope"] == pytest.approx(0.6, abs=E(0.6))


@pytest.mark.parametrize("between, within, icc", [
    (18, 42, 0.30),  # X2, line 20
    (0.045, 0.255, 0.15),  # X3, line 21
    (18, 32, 0.36),  # X4, line 22: total 50 and ρ = 0.36 give σ_u² = 18, σ_e² = 32
    (7, 13, 0.35),  # X19, line 49
])
def test_x2_x3_x4_x19_icc(between, within, icc):
    fit = fixed({"a": (2, 1.0), "b": (2, 2.0)}, between, within)
    assert fit.structure["icc"] == pytest.approx(icc, abs=E(icc))


def test_x19_variance_decomposition_and_k():
    """X19, line 49: Var y = 20, within-group covariance 7, ICC 0.35, k = 13/7 = 1.857143 (card 1.857)."""
    fit = fixed({"a": (2, 1.0), "b": (2, 2.0)}, 7, 13)
    s = fit.structure
    assert s["between"] + s["within"] == 20 and s["between"] == 7
    assert s["k"] == pytest.approx(13 / 7, abs=E(1))
    assert s["k"] == pytest.approx(1.857, abs=R(3))


def test_x5_design_of_two_groups_is_the_blup():
    """X5, line 23: groups A,A,B,B; Z = [[1,0],[1,0],[0,1],[0,1]], V block diagonal with
    blocks [[σu²+σe², σu²],[σu², σu²+σe²]]; the credibility premium is the BLUP under it."""
    su, se = 3.0, 5.0
    data = pd.DataFrame({"group": list("AABB"), "y": [4.0, 6.0, 11.0, 7.0]})
    Zd = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    V = Zd @ (su * np.eye(2)) @ Zd.T + se * np.eye(4)
    block = np.array([[su + se, su], [su, su + se]])
    np.testing.assert_array_equal(V, np.block([[block, np.zeros((2, 2))], [np.zeros((2, 2)), block]]))
    Vi = np.linalg.inv(V)
    one, y = np.ones(4), data["y"].to_numpy()
    beta = one @ Vi @ y / (one @ Vi @ one)
    u = su * Zd.T @ Vi @ (y - beta)
    fit = cred.buhlmann_straub(data, group="group", response="y", between=su, within=se)
    np.testing.assert_allclose(fit.table["premium"], beta + u, rtol=1e-12)


def test_x6_x7_anova_estimates():
    """X6, line 26: m = 4 groups, n = 5, MS_B = 30, MS_W = 10 ⇒ σ̂_e² = 10, σ̂_u² = 4.
    X7, line 27: ICC = 4/14 = 2/7 = 0.285714 (card 0.286)."""
    # group means 24 + (−3, 0, 0, 3): SS_B = 5·18 = 90; deviations ±2, ±4 per group: SS_W = 4·40 = 160
    spec = {g: (5, 24 + d) for g, d in zip("abcd", (-3, 0, 0, 3))}
    data = groups(spec, spread=2.0)
    fit = cred.buhlmann(data, group="group", response="y")
    assert fit.anova["MSB"] == pytest.approx(30, abs=E(30)) and fit.anova["MSW"] == pytest.approx(10, abs=E(10))
    assert fit.structure["within"] == pytest.approx(10, abs=E(10))
    assert fit.structure["between"] == pytest.approx(4, abs=E(4))
    assert fit.structure["icc"] == pytest.approx(2 / 7, abs=E(1))
    assert fit.structure["icc"] == pytest.approx(0.286, abs=R(3))


@pytest.mark.parametrize("card, collective, between, within, n, ybar, k, Z, u, mean", [
    ("X8, line 33", 200, 900, 3600, 4, 260, 4, 0.5, 30, 230),
    ("X10, line 35", 1000, 200, 5400, 3, 1300, 27, 0.1, 30, 1030),
    ("X11, line 36", 50, 16, 64, 24, 62, 4, 6 / 7, 72 / 7, 50 + 72 / 7),
    ("X12, lines 37", 500, 1200, 4800, 8, 650, 4, 2 / 3, 100, 600),
    ("X18, line 47", 40, 50, 200, 5, 70, 4, 5 / 9, 150 / 9, 40 + 150 / 9),
])
def test_worked_blups(card, collective, between, within, n, ybar, k, Z, u, mean):
    """BLUP = credibility with a known grand mean β̂₀ (inhomogeneous credibility)."""
    fit = fixed({"A": (n, ybar), "other": (3, 0.0)}, between, within, collective=collective)
    row = fit.table.loc["A"]
    assert fit.structure["k"] == pytest.approx(k, abs=E(k))
    assert row["Z"] == pytest.approx(Z, abs=E(1))
    assert row["premium"] - collective == pytest.approx(u, abs=E(u))
    assert row["premium"] == pytest.approx(mean, abs=E(mean))


def test_x11_card_rounding():
    """X11, line 36: the card prints Z 0.857, û 10.29, mean 60.29 (E16)."""
    fit = fixed({"C": (24, 62.0), "other": (3, 0.0)}, 16, 64, collective=50)
    assert fit.table.loc["C", "Z"] == pytest.approx(0.857, abs=R(3))
    assert fit.table.loc["C", "premium"] - 50 == pytest.approx(10.29, abs=R(2))
    assert fit.table.loc["C", "premium"] == pytest.approx(60.29, abs=R(2))


def test_x18_three_poolings():
    """X18, line 47: no pooling 70 (stand-alone mean), complete pooling 40, partial 56.666667 (card 56.67)."""
    fit = fixed({"i": (5, 70.0), "other": (3, 0.0)}, 50, 200, collective=40)
    assert fit.table.loc["i", "mean"] == 70
    assert fit.structure["collective"] == 40
    assert fit.table.loc["i", "premium"] == pytest.approx(56.67, abs=R(2))


def test_x9_z_by_group_size():
    """X9, line 34: k = 4 ⇒ Z = 0.2, 0.5, 0.8, 0.9 for n = 1, 4, 16, 36."""
    fit = fixed({n: (n, float(n)) for n in (1, 4, 16, 36)}, 900, 3600)
    np.testing.assert_allclose(fit.table["Z"], [0.2, 0.5, 0.8, 0.9], rtol=0, atol=E(1))


def test_x13_z_from_icc():
    """X13, lines 38–39: ρ = 0.25 ⇒ k = (1 − ρ)/ρ = 3; n = 9 ⇒ Z = 0.75."""
    fit = fixed({"g": (9, 1.0), "h": (9, 2.0)}, between=0.25, within=0.75)
    assert fit.structure["k"] == pytest.approx(3, abs=E(3))
    np.testing.assert_allclose(fit.table["Z"], 0.75, atol=E(1))


def test_x14_three_group_sizes():
    """X14, line 41: σ_u² = 100, σ_e² = 400, β̂₀ = 20, ȳ = 30; n = 2, 8, 20 ⇒ Z = 1/3, 2/3, 5/6;
    means 23.3333, 26.6667, 28.3333 (card 23.33, 26.67, 28.33)."""
    fit = fixed({1: (2, 30.0), 2: (8, 30.0), 3: (20, 30.0)}, 100, 400, collective=20)
    np.testing.assert_allclose(fit.table["Z"], [1 / 3, 2 / 3, 5 / 6], atol=E(1))
    np.testing.assert_allclose(fit.table["premium"], [20 + 10 / 3, 20 + 20 / 3, 20 + 25 / 3], atol=E(30))
    np.testing.assert_allclose(fit.table["premium"], [23.33, 26.67, 28.33], atol=R(2))


@pytest.fixture
def x15():
    """X15, line 42: m = 4, n = 3, group means 18, 22, 26, 30, MS_W = 9 (deviations −3, 0, 3: SS 18 per group)."""
    data = groups({g: (3, m) for g, m in zip("abcd", (18, 22, 26, 30))}, spread=3.0)
    return cred.buhlmann(data, group="group", response="y")


def test_x15_estimates(x15):
    """MS_B = 80, σ̂_u² = 71/3 = 23.666667 (card 23.67), σ̂_e² = 9."""
    assert x15.anova["MSB"] == pytest.approx(80, abs=E(80))
    assert x15.structure["between"] == pytest.approx(71 / 3, abs=E(24))
    assert x15.structure["between"] == pytest.approx(23.67, abs=R(2))
    assert x15.structure["within"] == pytest.approx(9, abs=E(9))


def test_x16_blup_of_the_top_group(x15):
    """X16, line 43: ICC 71/98 = 0.724490, k = 27/71 = 0.380282, Z = 71/80 = 0.8875, BLUP mean
    29.325 for the group with mean 30 (grand mean 24). The card's 0.888 and 29.33 come from
    rounding k first (E16)."""
    s = x15.structure
    assert s["icc"] == pytest.approx(71 / 98, abs=E(1))
    assert s["k"] == pytest.approx(27 / 71, abs=E(1))
    assert s["collective"] == pytest.approx(24, abs=E(24))
    assert x15.table.loc["d", "Z"] == pytest.approx(0.8875, abs=E(1))
    assert x15.table.loc["d", "premium"] == pytest.approx(29.325, abs=E(30))
    assert s["icc"] == pytest.approx(0.724, abs=R(3)) and s["k"] == pytest.approx(0.380, abs=R(3))
    assert x15.table.loc["d", "premium"] == pytest.approx(29.33, abs=0.005 + 1e-9)  # 29.325 rounds half-up


def test_x17_negative_anova_estimate_truncated():
    """X17, line 44, with the derived illustration X17-D (RV §2): m = 4, n = 5, MS_B = 8,
    MS_W = 10 ⇒ raw σ̂_u² = −0.4 → 0 (flagged), Z = 0, every group gets the grand mean."""
    spec = {g: (5, 24 + d) for g, d in zip("abcd", (-np.sqrt(2.4), 0, 0, np.sqrt(2.4)))}  # SS_B = 5·4.8 = 24
    data = groups(spec, spread=2.0)  # SS_W = 160
    with pytest.warns(BoundaryWarning):
        fit = cred.buhlmann(data, group="group", response="y")
    assert fit.anova["MSB"] == pytest.approx(8, abs=E(8)) and fit.anova["MSW"] == pytest.approx(10, abs=E(10))
    assert fit.structure["between_raw"] == pytest.approx(-0.4, abs=E(1))
    assert fit.structure["between"] == 0 and fit.boundary
    np.testing.assert_array_equal(fit.table["Z"], 0.0)
    np.testing.assert_allclose(fit.table["premium"], 24, atol=E(24))


def test_x20_limits():
    """X20, lines 45, 50: σ_u² → 0 ⇒ Z → 0 (complete pooling); σ_u² → ∞ ⇒ Z → 1 (no pooling).
    The GLS/BLUP identity itself is tested in test_credibility_identity.py."""
    spec = {"a": (4, 10.0), "b": (2, 20.0), "c": (7, 12.0)}
    small = fixed(spec, 1e-12, 50.0)
    large = fixed(spec, 1e12, 50.0)
    assert small.table["Z"].max() < 1e-12
    assert large.table["Z"].min() > 1 - 1e-10
    np.testing.assert_allclose(large.table["premium"], [10, 20, 12], rtol=1e-9)
    np.testing.assert_allclose(small.table["premium"], (40 + 40 + 84) / 13, rtol=1e-9)
