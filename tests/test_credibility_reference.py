"""Published and derived reference values for bc.credibility.

Provenance is written next to every number: seed file + line, or REFERENCE-VALUES.md
section (RV §). Tolerance codes (RV §0.3): E = 1e-9·max(1, |x|); R = half a unit of the
last printed digit.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import BoundaryWarning

SEED4 = "seed 004_07f8365c92996b9b.txt"


def E(x):
    """Tolerance code E (RV §0.3)."""
    return 1e-9 * max(1.0, abs(x))


def R(decimals):
    """Tolerance code R for a value printed with ``decimals`` decimals."""
    return 0.5 * 10.0**-decimals + 1e-9


# ---------------------------------------------------------------- balanced Bühlmann

# RV §3.1 = seed 004_07f8365c92996b9b.txt, lines 636–642 (Table 3.1)
TABLE_31 = {1: [625, 675, 600, 700], 2: [750, 800, 650, 800], 3: [900, 700, 850, 950]}


def test_table31_dataset_is_the_printed_table():
    data = bc.datasets.load("buhlmann_table31")
    typed = pd.DataFrame(
        [(c, t + 1, v) for c, vals in TABLE_31.items() for t, v in enumerate(vals)], columns=["class", "period", "loss"]
    )
    pd.testing.assert_frame_equal(
        data.sort_values(["class", "period"]).reset_index(drop=True)[["class", "period", "loss"]],
        typed, check_dtype=False,
    )


def test_buhlmann_table31():
    fit = bc.credibility.buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss")
    s = fit.structure
    # seed 004 lines 917, 985–987: X̄ 750, σ̂² 6250, τ̂² 8437.5 (tol E)
    assert s["collective"] == pytest.approx(750, abs=E(750))
    assert s["within"] == pytest.approx(6250, abs=E(6250))
    assert s["between"] == pytest.approx(8437.5, abs=E(8437.5))
    # seed 004 lines 917, 2117: Z = 0.84375 (E); line 934: premiums 665.625, 750, 834.375 (E)
    np.testing.assert_allclose(fit.table["Z"], 0.84375, atol=E(1))
    np.testing.assert_allclose(fit.table["premium"], [665.625, 750.0, 834.375], rtol=0, atol=E(834.375))
    # seed 004 lines 699–701: SSB, MSB, SSW, MSW = 80000, 40000, 56250, 6250 (E)
    a = fit.anova
    for key, value in {"SSB": 80000, "MSB": 40000, "SSW": 56250, "MSW": 6250}.items():
        assert a[key] == pytest.approx(value, abs=E(value))
    # seed 004 lines 707, 728: F = 6.4, p = 0.01867 (R)
    assert a["F"] == pytest.approx(6.4, abs=E(6.4))
    assert a["p_value"] == pytest.approx(0.01867, abs=R(5))
    assert not fit.boundary


# ---------------------------------------------------------------- Bühlmann–Straub

# seed 004 lines 1223–1270 (RV §4.2): credibility premiums of risks 1–20, 5 decimals (R)
BS_PREMIUMS_20 = [67.41990, 74.65462, 82.37383, 81.77987, 75.53623, 84.26384, 80.16259, 71.72899, 95.02067,
                  71.41841, 86.42743, 80.35881, 90.36646, 73.34605, 74.71319, 78.70976, 71.75083, 92.52850,
                  72.31943, 69.29793]


@pytest.fixture(scope="module")
def bs_simulated(shared_data):
    return pd.read_csv(shared_data / "bs_simulated.csv")


def test_buhlmann_straub_simulated_unbiased(bs_simulated):
    fit = bc.credibility.buhlmann_straub(bs_simulated, group="risk", response="X.jt", weight="W.jt")
    s = fit.structure
    assert s["within"] == pytest.approx(104.6239, abs=R(4))  # seed 004 lines 1164, 1297 (E1: not 104.5239)
    assert s["weighted_mean"] == pytest.approx(78.43628, abs=R(5))  # seed 004 line 1176
    assert s["between"] == pytest.approx(60.9652, abs=R(4))  # seed 004 lines 1195, 1296
    assert s["collective"] == pytest.approx(78.53833, abs=R(5))  # seed 004 line 1209
    np.testing.assert_allclose(fit.table["premium"].iloc[:20], BS_PREMIUMS_20, rtol=0, atol=R(5))
    assert len(fit.table) == 100  # J = 100 (seed 004 line 1152)


def test_buhlmann_straub_simulated_iterative(bs_simulated):
    fit = bc.credibility.buhlmann_straub(bs_simulated, group="risk", response="X.jt", weight="W.jt",
                                         method="iterative")
    # RV §4.3 (D): τ̂² = 61.1912, X_z = 78.53843, premiums 1–5; tol rel 1e-5; σ̂² stays 104.6239
    assert fit.structure["between"] == pytest.approx(61.1912, rel=1e-5)
    assert fit.structure["collective"] == pytest.approx(78.53843, rel=1e-5)
    assert fit.structure["within"] == pytest.approx(104.6239, abs=R(4))
    np.testing.assert_allclose(fit.table["premium"].iloc[:5], [67.40969, 74.65142, 82.37743, 81.78262, 75.5333],
                               rtol=1e-5)


@pytest.fixture(scope="module")
def hachemeister():
    return bc.datasets.load("hachemeister")


def test_buhlmann_straub_hachemeister(hachemeister):
    """actuar's cm(~state, hachemeister, ratios, weights) = RV §5.8 (D, rel 1e-7)."""
    fit = bc.credibility.buhlmann_straub(hachemeister, group="state", response="severity", weight="claims")
    s = fit.structure
    assert s["collective"] == pytest.approx(1683.7134, rel=1e-7)
    assert s["between"] == pytest.approx(89638.726, rel=1e-7)
    assert s["within"] == pytest.approx(139120025.9, rel=1e-7)
    np.testing.assert_allclose(fit.table["Z"], [0.984740, 0.927635, 0.898475, 0.727909, 0.958791], rtol=1e-5)
    np.testing.assert_allclose(fit.table["premium"], [2055.1654, 1523.7063, 1793.4436, 1442.9665, 1603.2854],
                               rtol=1e-7)
    # RV §5.1: claims per state and weighted state means
    np.testing.assert_allclose(fit.table["weight"], [100155, 19895, 13735, 4152, 36110])
    np.testing.assert_allclose(fit.table["mean"], [2060.9214, 1511.2241, 1805.8427, 1352.9759, 1599.8286], rtol=1e-7)
    assert s["weighted_mean"] == pytest.approx(1865.4042, rel=1e-7)


def test_buhlmann_straub_hachemeister_iterative(hachemeister):
    fit = bc.credibility.buhlmann_straub(hachemeister, group="state", response="severity", weight="claims",
                                         method="iterative")
    # RV §5.8 (D): τ̂² = 64,366.51, X_z = 1688.8950, premiums (rel 1e-7)
    assert fit.structure["between"] == pytest.approx(64366.51, rel=1e-7)
    assert fit.structure["collective"] == pytest.approx(1688.8950, rel=1e-7)
    np.testing.assert_allclose(fit.table["premium"], [2053.0626, 1528.6346, 1789.9418, 1467.9773, 1604.8586],
                               rtol=1e-7)


# ---------------------------------------------------------------- Hachemeister regression

def _hm(data, **kw):
    return bc.credibility.hachemeister(data, group="state", time="period", response="severity", weight="claims", **kw)


# Tables of RV §5.4: per state (A row1 c1, c2, row2 c1, c2, stand-alone int, slope, credibility int, slope);
# collective (int, slope). A to 4 decimals, coefficients to 2 decimals (tol R).
TABLE_34 = {  # un-centred time; seed 004 lines 1766–1775
    1: (0.8946, 0.3389, 0.0125, 0.9460, 1658.47, 62.39, 1652.61, 62.63),
    2: (0.6583, 1.0286, 0.0380, 0.8222, 1398.30, 17.14, 1419.30, 15.57),
    3: (0.6029, 1.1851, 0.0437, 0.7740, 1533.00, 43.31, 1535.05, 41.73),
    4: (0.3930, 1.4753, 0.0545, 0.6122, 1176.70, 27.81, 1368.48, 10.93),
    5: (0.7658, 0.7245, 0.0267, 0.8812, 1521.90, 11.87, 1503.30, 14.62),
}
COLL_34 = (1495.75, 29.09)
TABLE_35 = {  # time centred at the global centre of gravity 6.474895; seed 004 lines 1844–1853
    1: (0.9731, -0.0014, -0.0001, 0.9413, 2062.46, 62.39, 2052.54, 60.69),
    2: (0.8779, 0.0236, 0.0009, 0.7629, 1509.28, 17.14, 1531.57, 20.91),
    3: (0.8321, -0.0454, -0.0017, 0.6881, 1813.41, 43.31, 1793.09, 40.12),
    4: (0.6000, -0.0483, -0.0018, 0.4079, 1356.75, 27.81, 1492.32, 31.91),
    5: (0.9288, 0.0118, 0.0004, 0.8559, 1598.79, 11.87, 1605.38, 14.98),
}
COLL_35 = (1694.98, 33.72)
TABLE_36 = {  # time centred at each state's centre of gravity; seed 004 lines 1863–1872
    1: (0.9731, 0.0, 0.0, 0.9413, 2060.92, 62.39, 2051.04, 60.71),
    2: (0.8779, 0.0, 0.0, 0.7628, 1511.22, 17.14, 1533.46, 21.06),
    3: (0.8324, 0.0, 0.0, 0.6880, 1805.84, 43.31, 1787.00, 40.30),
    4: (0.6002, 0.0, 0.0, 0.4077, 1352.98, 27.81, 1489.09, 31.28),
    5: (0.9288, 0.0, 0.0, 0.8559, 1599.83, 11.87, 1606.49, 15.02),
}
COLL_36 = (1693.42, 33.67)


def _check_table(fit, table, collective):
    for j, (a11, a12, a21, a22, b0, b1, c0, c1) in table.items():
        A = fit.A[j - 1]
        np.testing.assert_allclose(A, [[a11, a12], [a21, a22]], rtol=0, atol=R(4), err_msg=f"A, state {j}")
        row = fit.table.loc[j]
        np.testing.assert_allclose([row["B_intercept"], row["B_slope"]], [b0, b1], rtol=0, atol=R(2))
        np.testing.assert_allclose([row["cred_intercept"], row["cred_slope"]], [c0, c1], rtol=0, atol=R(2))
    np.testing.assert_allclose(fit.structure["collective"], collective, rtol=0, atol=R(2))


def test_hachemeister_structure_uncentred(hachemeister):
    fit = _hm(hachemeister)
    U = fit.structure["between"].to_numpy()
    assert fit.structure["within"] == pytest.approx(49870186.917, rel=1e-7)  # RV §5.3 (D), seed 004 line 1704
    assert U[0, 0] == pytest.approx(18029.43507, rel=1e-7)  # RV §5.3, seed 004 line 1704
    assert U[1, 1] == pytest.approx(665.5618, abs=R(4))  # seed 004 line 1704, printed label τ̂₀² (E2)
    assert U[0, 1] == 0.0
    # RV §5.2: stand-alone WLS of state 4, full digits (seed 004 lines 1538–1539)
    assert fit.table.loc[4, "B_intercept"] == pytest.approx(1176.70407, abs=R(5))
    assert fit.table.loc[4, "B_slope"] == pytest.approx(27.80702, abs=R(5))


def test_hachemeister_table_34_and_state4_anomaly(hachemeister):
    fit = _hm(hachemeister)
    _check_table(fit, TABLE_34, COLL_34)
    # RV §5.4: state 4's credibility slope 10.93 is below both its stand-alone (27.81) and
    # the collective (29.09) slope: Hachemeister's anomaly, flagged in the table
    assert fit.table.loc[4, "outside_slope"]
    assert fit.table.loc[4, "anomaly"] and 4 in fit.anomaly
    assert not fit.table.loc[4, "outside_intercept"]
    assert not fit.table.loc[5, "anomaly"]  # state 5: both coefficients between stand-alone and collective


def test_hachemeister_table_35_global_centre_book_convention(hachemeister):
    """Table 3.5 needs the unrounded global centre 6.474895 and τ̂₀², τ̂₁² from
    un-centred time (errata E5, RV §5.5)."""
    fit = _hm(hachemeister, centering="global", tau_estimated_on="uncentred")
    np.testing.assert_allclose(fit.centre, 6.474895, rtol=1e-6)  # RV §5.1
    np.testing.assert_allclose(np.diag(fit.structure["between"]), [18029.43507, 665.5618], rtol=1e-7)
    _check_table(fit, TABLE_35, COLL_35)
    # the convention matters: re-estimating τ̂₀² on centred time gives 93,782.965 (RV §5.5, D, rel 1e-6)
    own = _hm(hachemeister, centering="global")
    assert own.structure["between"].iloc[0, 0] == pytest.approx(93782.965, rel=1e-6)
    with pytest.raises(AssertionError):
        _check_table(own, TABLE_35, COLL_35)


def test_hachemeister_table_36_group_centres_book_convention(hachemeister):
    fit = _hm(hachemeister, centering="group", tau_estimated_on="uncentred")
    # state centres of gravity Σ_t w t / Σ_t w, recomputed here with pandas; RV §5.1 (D)
    # lists 6.45031, 6.58834, 6.30018, 6.33912, 6.56278, which differ from the data by up to
    # 5e-5 (an RV rounding/derivation slip: the shipped data give 6.450282, 6.588289, ...;
    # both reproduce the seed's "largest difference 0.288", line 1829). Checked at 1e-4.
    g = hachemeister.assign(wt=hachemeister["claims"] * hachemeister["period"]).groupby("state")
    np.testing.assert_allclose(fit.centre, g["wt"].sum() / g["claims"].sum(), rtol=1e-12)
    np.testing.assert_allclose(fit.centre, [6.45031, 6.58834, 6.30018, 6.33912, 6.56278], atol=1e-4)
    _check_table(fit, TABLE_36, COLL_36)
    assert not fit.table["anomaly"].any()  # diagonal A: no anomaly


def test_hachemeister_group_centres_reestimated(hachemeister):
    """RV §5.5 (D): state-CG centring with τ₀² re-estimated on centred time (rel 1e-6; the
    coefficients are listed with 3 decimals, so they are checked to R(3) = 5e-4)."""
    fit = _hm(hachemeister, centering="group")
    assert fit.structure["between"].iloc[0, 0] == pytest.approx(93023.760, rel=1e-6)
    np.testing.assert_allclose(fit.structure["collective"], [1673.135, 33.673], rtol=0, atol=R(3))
    cred = [(2058.857, 60.706), (1515.473, 21.061), (1800.858, 40.302), (1389.587, 31.281), (1600.901, 15.017)]
    np.testing.assert_allclose(fit.table[["cred_intercept", "cred_slope"]], cred, rtol=0, atol=R(3))
    # RV §5.5: diagonal A, intercept factors 0.9947, 0.9738, 0.9624, 0.8856, 0.9854 (R)
    np.testing.assert_allclose(fit.table["A_intercept"], [0.9947, 0.9738, 0.9624, 0.8856, 0.9854], atol=R(4))


def test_hachemeister_premium_for_future_period(hachemeister):
    """The premium of period 13 is (1, 13 − t0_j)·CW_j, the same whatever the centring
    when U is transformed consistently (here: fixed U at the origin, mapped to the centred
    parametrisation U_c = T⁻¹ U T⁻ᵀ, FORMULAS §4)."""
    origin = _hm(hachemeister)
    assert origin.structure["future"] == 13.0
    cw = origin.table[["cred_intercept", "cred_slope"]].to_numpy()
    np.testing.assert_allclose(origin.table["premium"], cw[:, 0] + 13 * cw[:, 1], rtol=1e-12)
    np.testing.assert_allclose(origin.predict(13), origin.table["premium"], rtol=1e-12)
    U = origin.structure["between"].to_numpy()
    t0 = (hachemeister["claims"] * hachemeister["period"]).sum() / hachemeister["claims"].sum()
    T = np.array([[1.0, t0], [0.0, 1.0]])
    moved = _hm(hachemeister, centering="global", between=T @ U @ T.T, within=origin.structure["within"],
                structure="correlated")  # the moved U has a covariance
    np.testing.assert_allclose(moved.table["premium"], origin.table["premium"], rtol=1e-10)


# ---------------------------------------------------------------- crossed classification

@pytest.fixture(scope="module")
def credit():
    data = bc.datasets.load("credit_insurance")
    # RV §6 Table 1 (seed 002_112bee5238c97912.txt lines 155–161)
    np.testing.assert_array_equal(data["count"], [40, 43, 41, 54, 53, 48, 39, 39, 44])
    np.testing.assert_allclose(data["mean_payment"],
                               [180.39, 246.71, 261.58, 172.05, 232.67, 253.22, 212.30, 269.56, 366.61])
    return data


def _credit_fit(credit, **kw):
    return bc.credibility.crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                                  within_ss=credit.attrs["within_ss"], within_df=credit.attrs["within_df"], **kw)


# Dannenburg et al. (1996) credibility premiums, seed 002_112bee5238c97912.txt Table 2, lines 836–843 (RV §6)
DANNENBURG_TABLE_2 = [[181.05, 238.18, 277.77], [172.11, 229.16, 268.8], [225.29, 282.24, 323.68]]


def test_crossed_reproduces_dannenburg_table2_from_cell_summaries(credit):
    """Cell summaries + the derived pooled within SS (RV §6, 'derived SSW' = 10,578,584 on
    392 df). Variance components by REML of the cell summaries: Dannenburg's printed
    premiums agree with the likelihood-based components (lme4, line 887, is within 0.03),
    while the unbiased moment equations (method="moments") give σ_ab² ≈ 34 instead of
    14.7 and premiums up to 0.8 away (see the next test). Tolerance 0.1: the seed prints
    two decimals and the cell means are rounded to two decimals."""
    fit = _credit_fit(credit)
    np.testing.assert_allclose(fit.table["premium"].to_numpy().reshape(3, 3), DANNENBURG_TABLE_2, rtol=0, atol=0.1)
    # derived SSW: REML optimum (992.594, 2569.243, 14.681, 26990.37) (RV §6; rel 1e-4 here, stated 5e-3)
    b = fit.structure["between"]
    np.testing.assert_allclose([b["status"], b["experience"], b["status:experience"], fit.structure["within"]],
                               [992.594, 2569.243, 14.681, 26990.37], rtol=1e-4)
    assert fit.structure["collective"] == pytest.approx(244.2515, abs=0.01)  # RV §6: μ̂ (D 244.2515)
    assert not fit.boundary


def test_crossed_moment_estimators_differ_from_reml(credit):
    fit = _credit_fit(credit, method="moments")
    b = fit.structure["between"]
    assert fit.structure["within"] == pytest.approx(10578584 / 392, rel=1e-12)  # σ̂² = SSW/df (RV §6: 26,986.18)
    assert b["status:experience"] > 2 * 14.681
    gap = np.abs(fit.table["premium"].to_numpy().reshape(3, 3) - DANNENBURG_TABLE_2).max()
    assert 0.5 < gap < 1.0


def test_crossed_blups_at_printed_components(credit):
    """RV §6 (D): BLUPs from Table 1 at the printed lme4 components (seed 002 lines
    857–883), 4 decimals; random effects to 3 decimals."""
    fit = _credit_fit(credit, between={"status": 992.791, "experience": 2569.330, "status:experience": 14.611},
                      within=26990.398)
    derived = [[181.0536, 238.1783, 277.7488], [172.1394, 229.1546, 268.7774], [225.3181, 282.2371, 323.6558]]
    np.testing.assert_allclose(fit.table["premium"].to_numpy().reshape(3, 3), derived, rtol=0, atol=R(4))
    np.testing.assert_allclose(fit.effects["status"], [-11.866, -20.792, 32.659], atol=R(3))
    np.testing.assert_allclose(fit.effects["experience"], [-51.317, 5.595, 45.723], atol=R(3))
    # and within 0.05 of lme4's premiums (seed 002 line 887)
    lme4 = [[181.0253, 238.1813, 277.7692], [172.1086, 229.1551, 268.7954], [225.2921, 282.2424, 323.6784]]
    np.testing.assert_allclose(fit.table["premium"].to_numpy().reshape(3, 3), lme4, atol=0.05)


def test_crossed_moment_estimators_are_unbiased():
    """Monte Carlo (seed 20261121): the Dannenburg moment equations are unbiased — the mean
    of 400 estimates lies within 3 Monte Carlo SEs of the true components."""
    rng = np.random.default_rng(20261121)
    counts = np.array([[40, 43, 41], [54, 53, 48], [39, 39, 44]])
    truth = np.array([900.0, 2500.0, 300.0])
    sigma2, reps = 27000.0, 400
    est = []
    for _ in range(reps):
        a, b = rng.normal(0, np.sqrt(truth[0]), 3), rng.normal(0, np.sqrt(truth[1]), 3)
        c = rng.normal(0, np.sqrt(truth[2]), (3, 3))
        means = 240 + a[:, None] + b[None, :] + c + rng.normal(0, np.sqrt(sigma2 / counts))
        df = int((counts - 1).sum())
        cells = pd.DataFrame({"f": np.repeat([1, 2, 3], 3), "g": np.tile([1, 2, 3], 3),
                              "y": means.ravel(), "n": counts.ravel()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BoundaryWarning)
            from bayescred.credibility.crossed import _moments

            est.append(_moments(cells["y"].to_numpy(), cells["n"].to_numpy(float), 3, 3,
                                sigma2 * rng.chisquare(df) / df, True))
    est = np.array(est)
    se = est.std(axis=0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(est.mean(axis=0) - truth) < 3 * se)


# ---------------------------------------------------------------- Poisson–gamma

def test_poisson_gamma_conjugate_halliwell_example4():
    """RV §7.4 (D): prior mean 0.25, variance 0.0225 ⇒ r = 2.7778, a = 11.1111; one
    accident in three years ⇒ posterior mean 0.267717, Z = 0.212598 (tol E)."""
    r, a = 0.25**2 / 0.0225, 0.25 / 0.0225
    data = pd.DataFrame({"driver": [1, 1, 1, 2, 2, 2], "accidents": [1, 0, 0, 0, 0, 0], "years": [1.0] * 6})
    fit = bc.credibility.poisson_gamma(data, group="driver", claims="accidents", exposure="years", alpha=r, beta=a)
    assert fit.table.loc[1, "premium"] == pytest.approx((r + 1) / (a + 3), abs=E(1))
    assert fit.table.loc[1, "premium"] == pytest.approx(0.267717, abs=R(6))
    assert fit.table.loc[1, "Z"] == pytest.approx(0.212598, abs=R(6))
    assert fit.structure["k"] == pytest.approx(a)
    assert fit.structure["collective"] == pytest.approx(0.25)


def test_poisson_gamma_bus_identity_at_dhglm_estimates(shared_data):
    """RV §11.5 (D): with μ̂_ik from the printed dhglm β (seed 004 lines 5795–5840) and
    λ = exp(−1.097) (α = 1/λ), û_i = (α + y_i+)/(α + μ_i+) is the conjugate Poisson–gamma
    posterior mean with exposure μ̂ and α = β = 1/λ. Companies 561, 559, 301, 535, 406:
    û = 3.1114, 2.9441, 2.5177, 2.4674, 2.4537 and Z = 0.7670, 0.9191, 0.7399, 0.8320,
    0.5099 (abs 0.0015)."""
    bus = pd.read_csv(shared_data / "bus_insurance.csv")
    keep = (bus["tot.cost"].isna() | (bus["tot.cost"] >= 0)) & (bus["co.id"] != 145)  # RV §11.1 cleaning
    bus = bus[keep]
    beta = {"(Int)": -7.65055}
    zone = {1: 0.22644, 2: 0.44224, 3: 0.03305, 4: 0.0, 5: 0.28805, 6: 0.20941, 7: -0.57862}
    age = {0: 0.51538, 1: 0.50149, 2: 0.46698, 3: 0.36315, 4: 0.0}
    mu = np.exp(beta["(Int)"] + bus["zone"].map(zone) + bus["bus.age"].map(age) + np.log(bus["dur"]))
    alpha = 1 / np.exp(-1.097)
    frame = pd.DataFrame({"company": bus["co.id"], "claims": bus["clm.cnt"], "mu": mu})
    fit = bc.credibility.poisson_gamma(frame, group="company", claims="claims", exposure="mu", alpha=alpha, beta=alpha)
    top = fit.table.loc[[561, 559, 301, 535, 406]]
    np.testing.assert_allclose(top["premium"], [3.1114, 2.9441, 2.5177, 2.4674, 2.4537], atol=0.0015)
    np.testing.assert_allclose(top["Z"], [0.7670, 0.9191, 0.7399, 0.8320, 0.5099], atol=0.0015)


def test_poisson_gamma_estimated_structure_recovers_truth():
    """Simulation recovery (seed 7): gamma(α = 4, β = 20) frequencies, 1500 risks with
    exposures 1–10, 40 portfolios: mean of the unbiased τ̂² within 3 MC SEs of α/β² and
    the within (EPV) estimate ≈ α/β."""
    rng = np.random.default_rng(7)
    alpha, beta, J, reps = 4.0, 20.0, 1500, 40
    between, within = [], []
    for _ in range(reps):
        lam = rng.gamma(alpha, 1 / beta, J)
        expo = rng.uniform(1, 10, J)
        data = pd.DataFrame({"g": np.arange(J), "n": rng.poisson(lam * expo), "e": expo})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BoundaryWarning)
            fit = bc.credibility.poisson_gamma(data, group="g", claims="n", exposure="e")
        between.append(fit.structure["between_raw"])
        within.append(fit.structure["within"])
    between = np.array(between)
    assert abs(between.mean() - alpha / beta**2) < 3 * between.std(ddof=1) / np.sqrt(reps)
    assert np.mean(within) == pytest.approx(alpha / beta, rel=0.01)
