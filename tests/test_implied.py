"""bc.implied_credibility: seed 001's "Inferred Credibility" table recomputed from its
printed effects (REFERENCE-VALUES §15), Bühlmann's k by regression through the origin, the
posterior intervals from a DataTree, and the errors a user can cause."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescred as bc
from bayescred.errors import DataError, MissingColumnError, NonPositiveError
from bayescred.implied import buhlmann_k

# seed 001_09ddcaa1e17cf6d2.txt, "Inferred Credibility" table, as printed (REFERENCE-VALUES §15):
# class, (2) ALCCL, (3) FE, (4) exp, (5) rel, (6) RE, (7) exp, (8) rel, (9) Z
SEED001 = pd.DataFrame(
    [
        ("01", 484185185, 0.3346, 1.3974, 1.1417, 0.1241, 1.1321, 1.1399, 0.9877),
        ("02", 16832999, 0.2585, 1.2950, 1.0580, 0.0304, 1.0309, 1.0380, 0.6545),
        ("03", 359748011, 0.3056, 1.3574, 1.1090, 0.0951, 1.0998, 1.1073, 0.9845),
        ("04", 103293336, -0.1181, 0.8886, 0.7260, -0.2898, 0.7484, 0.7536, 0.8994),
        ("05", 27864645, 0.4388, 1.5508, 1.2671, 0.1674, 1.1822, 1.1904, 0.7129),
        ("06", 324592379, 0.2196, 1.2456, 1.0176, 0.0115, 1.0116, 1.0185, 1.0506),
        ("07", 60941612, 0.4695, 1.5992, 1.3066, 0.2229, 1.2497, 1.2583, 0.8426),
        ("08", 55682170, 0.4268, 1.5323, 1.2519, 0.1836, 1.2015, 1.2098, 0.8328),
        ("10", 108633028, 0.2978, 1.3469, 1.1004, 0.0814, 1.0848, 1.0923, 0.9190),
        ("11", 39019053, -0.1779, 0.8370, 0.6839, -0.2876, 0.7501, 0.7552, 0.7742),
        ("13", 15101361, -0.0423, 0.9586, 0.7832, -0.1349, 0.8738, 0.8798, 0.5542),
        ("99", 664914612, 0.0000, 1.0000, 0.8170, -0.2040, 0.8155, 0.8211, 0.9777),
    ],
    columns=["class", "alccl", "fe", "fe_exp", "fe_rel", "re", "re_exp", "re_rel", "Z"],
).set_index("class")


@pytest.fixture(scope="module")
def seed_table():
    return bc.implied_credibility(SEED001["fe"], SEED001["re"], factor="class", exposure=SEED001["alccl"])


def test_seed001_columns_from_the_printed_effects(seed_table):
    t = seed_table.table
    # (4), (7): exp of the 4-decimal printed effects; the printed 4-decimal exps differ by at most
    # half a unit of the effect's last digit times exp(effect) (< 1e-4)
    np.testing.assert_allclose(t["fixed_exp"], SEED001["fe_exp"], atol=1e-4)
    np.testing.assert_allclose(t["random_exp"], SEED001["re_exp"], atol=1e-4)
    # (5), (8): exp(effect) over the exposure-weighted mean of exp(effect); total row 1.2240, 0.9932
    np.testing.assert_allclose(t["fixed_relativity"], SEED001["fe_rel"], atol=1e-4)
    np.testing.assert_allclose(t["random_relativity"], SEED001["re_rel"], atol=1e-4)
    assert seed_table.fixed_mean == pytest.approx(1.2240, abs=5e-5)
    assert seed_table.random_mean == pytest.approx(0.9932, abs=5e-5)
    assert t["exposure"].sum() == 2_260_808_391  # the printed total


def test_seed001_inferred_credibility_from_printed_relativities():
    # (9) = ((8) - 1) / ((5) - 1), the seed's own arithmetic, from the printed relativities.
    # Tolerance = the propagated rounding: (5) and (8) carry +/-5e-5, so Z moves by up to
    # 5e-5 (1 + |Z|) / |(5) - 1|, plus 5e-5 for the rounding of (9) itself. It matters for
    # class 06 (relativity 1.0176: +/-0.006) and class 02 (1.0580: +/-0.0015).
    r_f, r_r, z_printed = SEED001["fe_rel"], SEED001["re_rel"], SEED001["Z"]
    tol = 5e-5 * (1 + z_printed.abs()) / (r_f - 1).abs() + 5e-5
    fit = bc.implied_credibility(np.log(r_f), np.log(r_r), factor="class", exposure=SEED001["alccl"])
    # the relativities' own exposure-weighted means are 1 up to rounding, so the function's Z
    # is the seed's formula applied to the printed relativities
    assert fit.fixed_mean == pytest.approx(1.0, abs=1e-4) and fit.random_mean == pytest.approx(1.0, abs=1e-4)
    z = (r_r - 1) / (r_f - 1)
    assert np.all(np.abs(z - z_printed) <= tol), (z - z_printed).to_dict()
    assert np.all(np.abs(fit.table["Z"] - z_printed) <= tol + 1e-4 * (1 + z_printed.abs()) / (r_f - 1).abs())
    # Z on the log scale (b_j / beta_j) is NOT the seed's column: class 01 would be 0.37
    assert SEED001.loc["01", "re"] / SEED001.loc["01", "fe"] == pytest.approx(0.3709, abs=1e-4)


def test_seed001_inferred_credibility_from_printed_effects(seed_table):
    # from the effects (3) and (6) themselves: their rounding (+/-5e-5) moves exp(effect)
    # and the weighted mean by up to 5e-5 relative each, so each relativity by 1e-4 r;
    # propagated to Z: 1e-4 (r_r + |Z| r_f) / |r_f - 1|, plus 5e-5 for the printed Z
    t = seed_table.table
    r_f, r_r, z_printed = SEED001["fe_rel"], SEED001["re_rel"], SEED001["Z"]
    tol = 1e-4 * (r_r + z_printed.abs() * r_f) / (r_f - 1).abs() + 5e-5
    assert np.all(np.abs(t["Z"] - z_printed) <= tol), (t["Z"] - z_printed).to_dict()
    assert np.all(np.abs(t["Z"] - z_printed)[SEED001.index != "06"] < 2.5e-3)


def test_buhlmann_k_regression_through_the_origin(seed_table):
    # 1/Z - 1 = k/e: least squares through the origin on x = 1/e (seed 001, "Inferred
    # Credibilities in Buhlmann Form"); recomputed by hand from the printed Z
    e, Z = SEED001["alccl"].to_numpy(float), SEED001["Z"].to_numpy()
    x, y = 1 / e, 1 / Z - 1
    k_printed = float(np.sum(x * y) / np.sum(x * x))
    # the same fit by numpy's least squares on a single column (no intercept): k = 1.0802e7 ALCCL
    k_lstsq = np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]
    assert k_printed == pytest.approx(k_lstsq, rel=1e-10)
    assert k_printed == pytest.approx(1.0802e7, rel=1e-4)
    assert buhlmann_k(Z, e) == pytest.approx(k_printed, rel=1e-12)
    assert seed_table.k == pytest.approx(k_printed, rel=0.05)
    np.testing.assert_allclose(seed_table.table["Z_fitted"], e / (e + seed_table.k))
    # exact recovery on a noiseless Bühlmann pattern
    assert buhlmann_k(e / (e + 3e7), e) == pytest.approx(3e7, rel=1e-12)


def test_fits_are_read_by_coefficient_name_and_ranef():
    class GLM:  # bc.glm's result protocol: .coef named <factor><level>, the base level absent
        coef = pd.Series({"(Intercept)": -2.0, "zoneB": 0.4, "zoneC": -0.3, "age1": 0.1})

    class GLMM:  # bc.glmm's: ranef() with grp, level, term, value
        @staticmethod
        def ranef():
            return pd.DataFrame({"grp": ["zone"] * 3 + ["other"], "level": ["A", "B", "C", "A"],
                                 "term": ["(Intercept)"] * 4, "value": [0.05, 0.3, -0.2, 9.0]})

    data = pd.DataFrame({"zone": ["A", "B", "C", "A", "C"], "expo": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = bc.implied_credibility(GLM(), GLMM(), factor="zone", exposure="expo", data=data)
    t = out.table
    assert list(t.index) == ["A", "B", "C"]
    np.testing.assert_allclose(t["exposure"], [5.0, 2.0, 8.0])
    np.testing.assert_allclose(t["fixed_effect"], [0.0, 0.4, -0.3])
    np.testing.assert_allclose(t["random_effect"], [0.05, 0.3, -0.2])
    e = np.array([5.0, 2.0, 8.0])
    rf = np.exp([0.0, 0.4, -0.3]) / (np.exp([0.0, 0.4, -0.3]) @ e / e.sum())
    rr = np.exp([0.05, 0.3, -0.2]) / (np.exp([0.05, 0.3, -0.2]) @ e / e.sum())
    np.testing.assert_allclose(t["Z"], (rr - 1) / (rf - 1))


def test_posterior_draws_give_intervals_for_Z_and_k():
    rng = np.random.default_rng(1)
    levels = ["a", "b", "c", "d"]
    beta = pd.Series([0.0, 0.5, -0.4, 0.3], index=levels)
    e = pd.Series([100.0, 10.0, 50.0, 5.0], index=levels)
    u = 0.8 * beta.to_numpy() + 0.02 * rng.standard_normal((2, 250, 4))
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"u": xr.DataArray(u, dims=("chain", "draw", "zone"), coords={"zone": levels})})})
    out = bc.implied_credibility(beta, tree, factor="zone", exposure=e, prob=0.8)
    t = out.table
    assert {"Z_median", "Z_lower", "Z_upper"} <= set(t.columns)
    assert np.all(t["Z_lower"] <= t["Z_median"]) and np.all(t["Z_median"] <= t["Z_upper"])
    assert out.k_draws.shape == (500,)
    lo, hi = out.k_interval
    assert lo <= out.k <= hi or np.isclose(out.k, np.median(out.k_draws), rtol=0.5)
    # the point Z uses the posterior median of each effect
    np.testing.assert_allclose(t["random_effect"], np.median(u.reshape(-1, 4), axis=0))


def test_plot_draws_points_and_the_fitted_curve(seed_table):
    import matplotlib

    matplotlib.use("Agg")
    ax = seed_table.plot()
    assert ax.get_xscale() == "log" and len(ax.lines) >= 1 and ax.collections


def test_user_errors_name_the_problem():
    fe, re = SEED001["fe"], SEED001["re"]
    with pytest.raises(NonPositiveError, match="class"):
        bc.implied_credibility(fe, re, factor="class", exposure=SEED001["alccl"] * 0)
    with pytest.raises(DataError, match="no value for the level"):
        bc.implied_credibility(fe.iloc[:-1], re, factor="class", exposure=SEED001["alccl"])
    with pytest.raises(MissingColumnError, match="expo"):
        bc.implied_credibility(fe, re, factor="class", exposure="expo", data=pd.DataFrame({"class": ["01"]}))

    class NoBase:
        coef = pd.Series({"zoneA": 0.1, "zoneB": 0.2})

    with pytest.raises(DataError, match="one base level"):
        bc.implied_credibility(NoBase(), pd.Series({"A": 0.0, "B": 0.1}), factor="zone",
                               exposure=pd.Series({"A": 1.0, "B": 2.0}))


def test_a_poisson_gamma_posterior_enters_through_log_u():
    # bc.models.poisson_gamma's u is the frailty itself (mean 1), not a log-scale effect
    levels = ["a", "b", "c"]
    u = np.exp(np.array([0.0, 0.3, -0.2]) + 0.01 * np.random.default_rng(2).standard_normal((1, 100, 3)))
    post = xr.Dataset({"u": xr.DataArray(u, dims=("chain", "draw", "zone"), coords={"zone": levels})},
                      attrs={"bayescred_factory": "poisson_gamma"})
    tree = xr.DataTree.from_dict({"posterior": post})
    out = bc.implied_credibility(pd.Series([0.0, 0.4, -0.3], index=levels), tree, factor="zone",
                                 exposure=pd.Series([1.0, 1.0, 1.0], index=levels))
    np.testing.assert_allclose(out.table["random_effect"], np.median(np.log(u.reshape(-1, 3)), axis=0))
