"""Bad input gets a specific exception naming the column and the rows; variance estimates
at the boundary are truncated to 0, flagged and warned about; the caller's frame is never
modified; zero-weight rows are ignored; other dataframe engines give the same answer."""

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
    with pytest.raises(errors.ZeroWeightError, match="total weight is zero"):
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")


def test_negative_weight():
    data = portfolio()
    data.loc["r5", "w"] = -1.0
    with pytest.raises(errors.NonPositiveError) as info:
        cred.buhlmann_straub(data, group="risk", response="y", weight="w")
    assert info.value.rows == ["r5"]


def test_zero_weight_rows_are_ignored():
    data = portfolio(periods=5)
    zeroed = data.copy()
    zeroed.loc[["r2", "r7"], "w"] = 0.0
    zeroed.loc[["r2", "r7"], "y"] = 1e6  # carries no information
    fit = cred.buhlmann_straub(zeroed, group="risk", response="y", weight="w")
    ref = cred.buhlmann_straub(data.drop(index=["r2", "r7"]), group="risk", response="y", weight="w")
    pd.testing.assert_frame_equal(fit.table, ref.table)


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
