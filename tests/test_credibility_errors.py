"""Bad input gets a specific exception naming the column and the rows; variance estimates
at the boundary are truncated to 0, flagged and warned about; the caller's frame is never
modified; zero weights are refused; other dataframe engines give the same answer."""

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import bayescred as bc
from bayescred import errors

cred = bc.credibility


def portfolio(n_risks=3, periods=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(j, t, 100 + 10 * j + rng.normal(0, 5), rng.uniform(1, 3)) for j in range(n_risks) for t in range(1, periods + 1)]
    return pd.DataFrame(rows, columns=["risk", "period", "y", "w"]).set_index(pd.Index([f"r{i}" for i in range(len(rows))]))


# ---------------------------------------------------------------- one risk only

@pytest.mark.parametrize("call", [
    lambda d: cred.buhlmann(d, group="risk", response="y"),
    lambda d: cred.buhlmann_straub(d, group="risk", response="y", weight="w"),
    lambda d: cred.hachemeister(d, group="risk", time="period", response="y", weight="w"),
    lambda d: cred.poisson_gamma(d.assign(n=1), group="risk", claims="n", exposure="w"),
])
def test_one_risk_only(call):
    data = portfolio(n_risks=1)
    with pytest.raises(errors.TooFewRisksError) as info:
        call(data)
    assert info.value.column == "risk"
    assert "at least 2 risks" in str(info.value)
    assert info.value.rows == list(data.index)


def test_hierarchical_needs_two_nodes_at_every_level():
    data = portfolio().assign(sector="only")
    with pytest.raises(errors.TooFewRisksError) as info:
        cred.hierarchical(data, levels=["sector", "risk"], response="y", weight="w")
    assert info.value.column == "sector"


# ---------------------------------------------------------------- periods

def test_buhlmann_single_period_risk_names_its_rows():
    data = portfolio()
    data = data[~((data["risk"] == 1) & (data["period"] > 1))]  # risk 1 keeps one period
    with pytest.raises(errors.TooFewPeriodsError) as info:
        cred.buhlmann(data, group="risk", response="y")
    assert info.value.column == "risk"
    assert info.value.rows == ["r4"]
    assert "risk(s) 1" in str(info.value)


def test_buhlmann_straub_all_single_periods():
    data = portfolio(periods=1)
    with pytest.raises(errors.TooFewPeriodsError, match="single period"):
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    # a given within variance makes it estimable (as actuar, single-period risks are allowed)
    fit = cred.buhlmann_straub(data, group="risk", response="y", weight="w", within=25.0)
    assert fit.structure["between"] > 0


def test_hachemeister_needs_three_periods_per_risk():
    data = portfolio(periods=5)
    data = data[~((data["risk"] == 2) & (data["period"] > 2))]
    with pytest.raises(errors.TooFewPeriodsError) as info:
        cred.hachemeister(data, group="risk", time="period", response="y", weight="w")
    assert info.value.rows == ["r10", "r11"]


def test_unbalanced_buhlmann():
    data = portfolio().drop(index="r3")
    with pytest.raises(errors.UnbalancedError, match="buhlmann_straub"):
        cred.buhlmann(data, group="risk", response="y")


# ---------------------------------------------------------------- weights

def test_zero_total_weight_of_a_risk():
    data = portfolio()
    data.loc[data["risk"] == 2, "w"] = 0.0
    with pytest.raises(errors.ZeroWeightError) as info:
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    assert info.value.column == "w"
    assert info.value.rows == ["r8", "r9", "r10", "r11"]


def test_zero_total_weight():
    data = portfolio().assign(w=0.0)
    with pytest.raises(errors.ZeroWeightError, match="zero weight carries no information"):
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")


def test_negative_weight():
    data = portfolio()
    data.loc["r5", "w"] = -1.0
    with pytest.raises(errors.NonPositiveError) as info:
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    assert info.value.rows == ["r5"]


def test_zero_weight_rows_are_refused():
    """As in the EB and Bayes arms (tests/test_one_door.py): a zero weight is bad input,
    not a row to drop silently."""
    zeroed = portfolio(periods=5)
    zeroed.loc[["r2", "r7"], "w"] = 0.0
    for call in (cred.buhlmann_straub, cred.hachemeister):
        extra = {"time": "period"} if call is cred.hachemeister else {}
        with pytest.raises(errors.ZeroWeightError) as info:
            call(zeroed, group="risk", response="y", weight="w", **extra)
        assert info.value.column == "w" and info.value.rows == ["r2", "r7"]


def test_missing_and_text_columns():
    data = portfolio()
    data.loc["r3", "y"] = np.nan
    with pytest.raises(errors.MissingValueError) as info:
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    assert info.value.column == "y" and info.value.rows == ["r3"]
    with pytest.raises(errors.MissingColumnError):
        cred.buhlmann_straub(portfolio(), group="risk", response="loss", weight="w")


# ---------------------------------------------------------------- Hachemeister, crossed

def test_constant_time_within_a_risk():
    data = portfolio()
    data.loc[data["risk"] == 1, "period"] = 3
    with pytest.raises(errors.ConstantCovariateError) as info:
        cred.hachemeister(data, group="risk", time="period", response="y", weight="w")
    assert info.value.column == "period"
    assert info.value.rows == ["r4", "r5", "r6", "r7"]


def crossed_rows(seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f, g, rng.normal(100 + 5 * f - 3 * g, 10)) for f in range(3) for g in range(3) for _ in range(rng.integers(2, 6))]
    return pd.DataFrame(rows, columns=["f", "g", "y"])


def test_empty_crossed_cell():
    data = crossed_rows()
    data = data[~((data["f"] == 1) & (data["g"] == 2))]
    with pytest.raises(errors.EmptyCellError) as info:
        cred.crossed(data, factors=["f", "g"], response="y")
    assert info.value.column == "f, g"
    assert info.value.rows == [(1, 2)]


def test_crossed_summary_input_needs_within_and_weights():
    cells = crossed_rows().groupby(["f", "g"], as_index=False)["y"].mean()
    with pytest.raises(errors.SummaryError):
        cred.crossed(cells, factors=["f", "g"], response="y", within_ss=10.0, within_df=5)


# ---------------------------------------------------------------- boundary

def test_negative_between_is_truncated_with_flag():
    """MSB < MSW (card X17, seed 000 line 44): τ̂² < 0 → 0, Z = 0, every risk gets the collective."""
    data = pd.DataFrame({"risk": np.repeat([1, 2, 3], 4),
                         "y": [10, 20, 30, 40, 11, 21, 29, 39, 12, 18, 31, 41.0], "w": 1.0})
    with pytest.warns(errors.BoundaryWarning, match="between"):
        fit = cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    assert fit.boundary and fit.boundary_parameters == ["between"]
    assert fit.structure["between"] == 0.0 and fit.structure["between_raw"] < 0
    assert (fit.table["Z"] == 0).all()
    np.testing.assert_allclose(fit.table["premium"], data["y"].mean())
    assert "BOUNDARY" in repr(fit)


def test_no_boundary_flag_for_ordinary_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.BoundaryWarning)
        fit = cred.buhlmann_straub(portfolio(), group="risk", response="y", weight="w")
    assert not fit.boundary


def test_hachemeister_boundary_slope_variance():
    """Identical slopes in every risk: τ̂₁² < 0 → 0 (flagged); the slope factor is then 0."""
    rng = np.random.default_rng(3)
    rows = [(j, t, 50 + 10 * j + 2 * t + rng.normal(0, 0.1), 1.0) for j in range(4) for t in range(1, 7)]
    data = pd.DataFrame(rows, columns=["risk", "t", "y", "w"])
    with pytest.warns(errors.BoundaryWarning, match="slope"):
        fit = cred.hachemeister(data, group="risk", time="t", response="y", weight="w", centering="group")
    assert fit.boundary and fit.boundary_parameters == ["between[slope]"]
    np.testing.assert_allclose(fit.table["A_slope"], 0.0)
    np.testing.assert_allclose(fit.table["cred_slope"], fit.structure["collective"]["slope"])


def test_crossed_boundary():
    data = crossed_rows(seed=4)
    data["y"] = 100 + np.random.default_rng(1).normal(0, 10, len(data))  # no factor effects at all
    with pytest.warns(errors.BoundaryWarning):
        fit = cred.crossed(data, factors=["f", "g"], response="y", method="moments")
    assert fit.boundary


# ---------------------------------------------------------------- data in, data out

@pytest.mark.filterwarnings("ignore::bayescred.errors.BoundaryWarning")
def test_callers_frame_is_not_modified():
    data = portfolio()
    before = data.copy()
    cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    cred.hachemeister(data, group="risk", time="period", response="y", weight="w", centering="group")
    cred.hierarchical(data.assign(s=data["risk"] % 2), levels=["s", "risk"], response="y", weight="w",
                      between={"s": 1.0, "risk": 1.0})
    pd.testing.assert_frame_equal(data, before)


def test_polars_input_gives_the_same_fit():
    data = portfolio(n_risks=5, periods=6)
    ours = cred.hachemeister(data, group="risk", time="period", response="y", weight="w")
    theirs = cred.hachemeister(pl.from_pandas(data.reset_index(drop=True)), group="risk", time="period",
                               response="y", weight="w")
    pd.testing.assert_frame_equal(ours.table, theirs.table)


def test_duckdb_relation_gives_the_same_fit():
    duckdb = pytest.importorskip("duckdb")
    data = portfolio(n_risks=5, periods=6).reset_index(drop=True)
    relation = duckdb.sql("select * from data")
    for call in (
        lambda d: cred.buhlmann_straub(d, group="risk", response="y", weight="w"),
        lambda d: cred.hachemeister(d, group="risk", time="period", response="y", weight="w", centering="global"),
    ):
        pd.testing.assert_frame_equal(call(relation).table, call(data).table)


# ---------------------------------------------------------------- issue 10: degenerate data, overrides


@pytest.fixture(scope="module")
def hach():
    return bc.datasets.load("hachemeister")


def test_all_equal_responses_are_flagged_boundaries_not_zero_division(hach):
    """Issue 10: buhlmann_straub and buhlmann raised ZeroDivisionError on all-equal responses.
    Now both variances are 0, flagged, and every premium is the common value."""
    data = hach.assign(severity=1234.0)
    with pytest.warns(errors.BoundaryWarning, match="within is 0"):
        bs = cred.buhlmann_straub(data, "state", "severity", "claims")
    with pytest.warns(errors.BoundaryWarning):
        bu = cred.buhlmann(data, "state", "severity")
    for fit in (bs, bu):
        assert fit.boundary and fit.boundary_parameters == ["within", "between"]
        assert fit.structure["within"] == 0 and fit.structure["between"] == 0
        assert np.all(fit.table["premium"] == 1234.0)
        assert fit.structure["icc"] == 0.0
    assert np.isnan(bu.anova["F"])  # 0/0: no variation at all


def test_constant_within_risks_is_full_credibility(hach):
    """σ̂² = 0 with τ̂² > 0: Z = 1 (the limit σ² → 0), flagged; F infinite."""
    data = hach.assign(severity=100.0 * hach["state"])
    with pytest.warns(errors.BoundaryWarning):
        bu = cred.buhlmann(data, "state", "severity")
    assert bu.boundary_parameters == ["within"] and bu.anova["F"] == np.inf and bu.anova["p_value"] == 0.0
    assert np.all(bu.table["Z"] == 1.0)
    np.testing.assert_allclose(bu.table["premium"], 100.0 * bu.table.index.to_numpy())


@pytest.mark.parametrize("method", ["unbiased", "iterative"])
def test_hachemeister_all_equal_is_flagged_not_linalg_error(hach, method):
    """Issue 10: the iterative method raised LinAlgError on all-equal responses."""
    with pytest.warns(errors.BoundaryWarning):
        fit = cred.hachemeister(hach.assign(severity=7.0), "state", "period", "severity", "claims", method=method)
    assert fit.boundary and "within" in fit.boundary_parameters
    np.testing.assert_allclose(fit.table["premium"], 7.0, rtol=1e-12)


@pytest.mark.parametrize("centering", ["origin", "global", "group"])
def test_hachemeister_exactly_linear_response_is_full_credibility(hach, centering):
    """Issue 10: a response exactly on a line per risk gave within = -3.05e-7 and credibility
    factors down to -5.66 with boundary=False. Now within is exactly 0, flagged, every
    credibility factor lies in [0, 1] and the premium is each risk's own line."""
    lines = hach.groupby("state")["severity"].transform(
        lambda s: np.polyval(np.polyfit(np.arange(len(s)), s, 1), np.arange(len(s))))
    data = hach.assign(severity=lines)
    with pytest.warns(errors.BoundaryWarning, match="within is 0"):
        fit = cred.hachemeister(data, "state", "period", "severity", "claims", centering=centering)
    assert fit.structure["within"] == 0.0 and fit.boundary
    A = fit.table[["A_intercept", "A_slope"]].to_numpy()
    assert A.min() >= -1e-9 and A.max() <= 1 + 1e-9
    np.testing.assert_allclose(fit.table["premium"], fit.table["mean"], rtol=1e-8)


@pytest.mark.parametrize("method", ["moments", "reml"])
def test_crossed_all_equal_is_flagged_not_linalg_error_or_nan(method):
    """Issue 10: crossed moments raised LinAlgError and crossed REML returned NaN premiums."""
    data = pd.DataFrame({"a": np.repeat([0, 1, 2], 8), "b": np.tile([0, 0, 1, 1], 6), "y": 5.0, "w": 2.0})
    with pytest.warns(errors.BoundaryWarning):
        fit = cred.crossed(data, ["a", "b"], "y", "w", method=method)
    assert fit.boundary and "within" in fit.boundary_parameters
    assert np.all(np.isfinite(fit.table["premium"])) and np.allclose(fit.table["premium"], 5.0)


def test_poisson_gamma_without_claims_is_flagged():
    data = pd.DataFrame({"risk": [0, 0, 1, 1, 2, 2], "n": 0, "e": [1.0, 2, 1, 3, 2, 2]})
    with pytest.warns(errors.BoundaryWarning):
        fit = cred.poisson_gamma(data, "risk", "n", "e")
    assert fit.boundary and np.all(fit.table["premium"] == 0.0)


def test_extreme_weight_ratio_gives_finite_premiums():
    """A risk carrying 1e24 times the weight of the others: the unbiased τ̂² denominator
    w − Σw²/w is computed without cancellation (it was 0/0 before)."""
    data = portfolio(n_risks=3).assign(w=lambda d: np.where(d["risk"] == 0, 1e12, 1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.BoundaryWarning)
        fit = cred.buhlmann_straub(data, "risk", "y", "w")
    assert np.all(np.isfinite(fit.table["premium"])) and np.isfinite(fit.structure["between_raw"])


@pytest.mark.parametrize("call, argument", [
    (lambda d: cred.buhlmann_straub(d, "risk", "y", "w", within=-1), "within"),
    (lambda d: cred.buhlmann_straub(d, "risk", "y", "w", between=float("nan")), "between"),
    (lambda d: cred.buhlmann_straub(d, "risk", "y", "w", collective=float("inf")), "collective"),
    (lambda d: cred.buhlmann_straub(d, "risk", "y", "w", tol=0), "tol"),
    (lambda d: cred.buhlmann_straub(d, "risk", "y", "w", within="5"), "within"),
    (lambda d: cred.buhlmann(d, "risk", "y", between=-2.0), "between"),
    (lambda d: cred.hierarchical(d.assign(o=d["risk"] // 2), ["o", "risk"], "y", "w", between={"o": float("nan")}),
     "between[o]"),
    (lambda d: cred.hierarchical(d.assign(o=d["risk"] // 2), ["o", "risk"], "y", "w", maxit=2.5), "maxit"),
    (lambda d: cred.hachemeister(d, "risk", "period", "y", "w", within=-1.0), "within"),
    (lambda d: cred.hachemeister(d, "risk", "period", "y", "w", between=[[1.0, 2.0], [2.0, 1.0]]), "between"),
    (lambda d: cred.hachemeister(d, "risk", "period", "y", "w", between=[[1.0, 0.0], [1.0, 1.0]]), "between"),
    (lambda d: cred.hachemeister(d, "risk", "period", "y", "w", future=float("nan")), "future"),
    (lambda d: cred.crossed(d.assign(a=d["risk"] % 2), ["a", "period"], "y", "w", within_ss=-1.0, within_df=3), "within_ss"),
    (lambda d: cred.crossed(d.assign(a=d["risk"] % 2), ["a", "period"], "y", "w", within_ss=1.0, within_df=2.5), "within_df"),
    (lambda d: cred.crossed(d.assign(a=d["risk"] % 2), ["a", "period"], "y", "w", between={"a": -1.0}), "between[a]"),
    (lambda d: cred.poisson_gamma(d.assign(n=1), "risk", "n", "w", alpha=float("nan"), beta=1.0), "alpha"),
    (lambda d: cred.poisson_gamma(d.assign(n=1), "risk", "n", "w", alpha=1.0, beta=0.0), "beta"),
])
def test_override_arguments_are_validated_like_data(call, argument):
    """Issue 10: within=-1, between=nan, alpha=nan, negative within_ss... were accepted."""
    with pytest.raises(errors.InvalidArgumentError, match=argument.replace("[", r"\[").replace("]", r"\]")) as info:
        call(portfolio(n_risks=4))
    assert info.value.column == argument


@pytest.mark.parametrize("call, argument", [
    (lambda d: cred.buhlmann_straub(d, "risk", "y", weight=d["w"]), "weight"),
    (lambda d: cred.buhlmann(d, "risk", d["y"]), "response"),
    (lambda d: cred.hachemeister(d, "risk", d["period"].to_numpy(), "y"), "regressors"),
    (lambda d: cred.poisson_gamma(d.assign(n=1), "risk", "n", exposure=d["w"]), "exposure"),
])
def test_series_instead_of_a_column_name_is_refused(call, argument):
    """Classical functions take column names; a Series there was a TypeError traceback."""
    with pytest.raises(errors.InvalidArgumentError, match="must name a column") as info:
        call(portfolio(n_risks=4))
    assert info.value.column == argument
