"""The reduction runs in the data's own engine and gives the same sufficient statistics from
pandas, polars, DuckDB and Dask inputs (to 1e-12 relative); validation works on lazy engines
too (issue 2). Budget: < 15 s.
"""

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

import bayescred as bc
from bayescred import errors, portfolio
from bayescred.datasets import simulate

ENGINES = {
    "pandas": lambda df: df,
    "polars": pl.from_pandas,
    "polars-lazy": lambda df: pl.from_pandas(df).lazy(),
    "duckdb": lambda df: duckdb.from_df(df),
    "dask": lambda df: dd.from_pandas(df, npartitions=3),
}
LAZY = ["polars-lazy", "duckdb", "dask"]


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_index_type=False, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def bs():
    """An unbalanced, weighted portfolio (periods 1-6 per risk)."""
    periods = np.random.default_rng(0).integers(1, 7, 60)
    return simulate.buhlmann_straub(60, periods, seed=1).data


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "pandas"])
def test_summarise_identical_across_engines(bs, engine):
    ref = portfolio.summarise(bs, "risk", "loss", "weight")
    _same(portfolio.summarise(ENGINES[engine](bs), "risk", "loss", "weight"), ref)
    hm = bc.datasets.load("hachemeister")
    _same(portfolio.summarise(ENGINES[engine](hm), "state", "severity", "claims"),
          portfolio.summarise(hm, "state", "severity", "claims"))
    # unweighted: weight = n
    _same(portfolio.summarise(ENGINES[engine](bs), "risk", "loss"), portfolio.summarise(bs, "risk", "loss"))


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "pandas"])
def test_cells_and_sufficient_identical_across_engines(engine):
    cr = simulate.crossed((4, 5), (2, 9), seed=3).data
    by = ["status", "experience"]
    ref = portfolio.summarise(cr, by, "payment")
    assert ref.index.names == by and len(ref) == 20
    _same(portfolio.summarise(ENGINES[engine](cr), by, "payment"), ref)
    s_ref = portfolio.sufficient(cr, by, "payment")
    s = portfolio.sufficient(ENGINES[engine](cr), by, "payment")
    _same(s.table, s_ref.table)
    assert s.within_ss == pytest.approx(s_ref.within_ss, rel=1e-12) and s.within_df == s_ref.within_df


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "pandas"])
def test_cross_products_identical_across_engines(engine):
    hm = bc.datasets.load("hachemeister")
    ref = portfolio.cross_products(hm, "state", "severity", ["period"], "claims")
    got = portfolio.cross_products(ENGINES[engine](hm), "state", "severity", ["period"], "claims")
    assert got["names"] == ref["names"] == ["(Intercept)", "period"]
    np.testing.assert_array_equal(got["levels"], ref["levels"])
    np.testing.assert_array_equal(got["n"], ref["n"])
    for key in ("weight", "QWQ", "QWy", "yWy"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-12, atol=0)


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "pandas"])
def test_claim_totals_identical_across_engines(engine):
    pg = bc.datasets.load("sim_poisson_gamma")
    ref = portfolio.claim_totals(pg, "company", "claims", "exposure")
    _same(portfolio.claim_totals(ENGINES[engine](pg), "company", "claims", "exposure"), ref)


def test_summary_statistics_by_hand():
    """Hand formulas (FORMULAS.md §2, §4, §7) on a tiny frame with a non-default index."""
    df = pd.DataFrame(
        {"r": ["b", "a", "a", "b", "a"], "y": [1.0, 2.0, 4.0, 3.0, 6.0], "w": [1.0, 1.0, 3.0, 1.0, 2.0],
         "t": [1, 1, 2, 2, 3], "c": [0, 1, 2, 3, 4]},
        index=[10, 11, 12, 13, 14],
    )
    before = df.copy()
    s = portfolio.summarise(df, "r", "y", "w")
    ma = (2 + 12 + 12) / 6
    assert s.loc["a", "n"] == 3 and s.loc["a", "weight"] == 6 and s.loc["a", "mean"] == pytest.approx(ma)
    assert s.loc["a", "within_ss"] == pytest.approx((2 - ma) ** 2 + 3 * (4 - ma) ** 2 + 2 * (6 - ma) ** 2)
    assert s.loc["b", "within_ss"] == pytest.approx(2.0)
    cp = portfolio.cross_products(df, "r", "y", ["t"], "w")
    np.testing.assert_allclose(cp["QWQ"][0], [[6, 13], [13, 1 + 12 + 18]])
    np.testing.assert_allclose(cp["QWy"][0], [26, 2 + 24 + 36])
    np.testing.assert_allclose(cp["yWy"], [4 + 48 + 72, 10])
    ct = portfolio.claim_totals(df, "r", "c", "w")
    assert ct.loc["a", "claims"] == 7 and ct.loc["a", "exposure"] == 6 and ct.loc["b", "frequency"] == 1.5
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize("engine", LAZY + ["polars"])
@pytest.mark.parametrize(
    "case",
    ["negative_weight", "nan_response", "inf_response", "string_response", "missing_column",
     "single_risk", "duplicate", "short_risk", "constant_time", "empty_cell", "zero_total", "nesting",
     "missing_group"],
)
def test_validation_on_every_engine(engine, case):
    """Each kind of bad input raises the same error class whatever the engine."""
    df = pd.DataFrame(
        {"sector": [1, 1, 1, 1, 2, 2, 2, 2], "risk": [1, 1, 2, 2, 3, 3, 4, 4], "period": [1, 2] * 4,
         "loss": np.arange(8.0), "weight": np.ones(8)}
    )
    kw = {"groups": "risk", "numeric": ["loss", "period"], "positive": "weight"}
    if case == "negative_weight":
        df.loc[3, "weight"] = -1.0
        err = errors.NonPositiveError
    elif case == "nan_response":
        df.loc[2, "loss"] = np.nan
        err = errors.MissingValueError
    elif case == "inf_response":
        df.loc[2, "loss"] = np.inf
        err = errors.NonFiniteError
    elif case == "string_response":
        df["loss"] = df["loss"].astype(str)
        err = errors.NotNumericError
    elif case == "missing_column":
        df = df.drop(columns="weight")
        err = errors.MissingColumnError
    elif case == "single_risk":
        df["risk"] = 1
        err = errors.TooFewRisksError
    elif case == "duplicate":
        df.loc[1, "period"] = 1
        kw["unique"] = ["risk", "period"]
        err = errors.DuplicateRowError
    elif case == "short_risk":
        df = df.drop(index=7)
        kw["min_periods"] = 2
        err = errors.TooFewPeriodsError
    elif case == "constant_time":
        df.loc[[4, 5], "period"] = 1
        kw["varying"] = "period"
        err = errors.ConstantCovariateError
    elif case == "empty_cell":
        df = df[df.risk != 4]
        df.loc[df.risk == 3, "sector"] = 2
        kw = {"groups": ["sector", "period"], "numeric": "loss", "complete": ["sector", "period"]}
        df = df[~((df.sector == 2) & (df.period == 2))]
        err = errors.EmptyCellError
    elif case == "zero_total":
        df.loc[[6, 7], "weight"] = 0.0
        kw = {"groups": "risk", "numeric": "loss", "nonnegative": "weight"}
        err = errors.ZeroWeightError
    elif case == "nesting":
        df.loc[7, "sector"] = 1
        kw = {"groups": ["sector", "risk"], "numeric": "loss", "nested": ["sector", "risk"]}
        err = errors.NestingError
    elif case == "missing_group":
        df["risk"] = df["risk"].astype(float)
        df.loc[5, "risk"] = np.nan
        err = errors.MissingValueError
    data = ENGINES[engine](df.reset_index(drop=True))
    with pytest.raises(err) as info:
        portfolio.validate(data, **kw)
    assert info.value.column is not None


def test_lazy_errors_show_offending_rows():
    df = bc.datasets.load("hachemeister")
    df.loc[[3, 7], "claims"] = -1
    with pytest.raises(errors.NonPositiveError) as info:
        portfolio.summarise(duckdb.from_df(df), "state", "severity", "claims")
    assert len(info.value.rows) == 2 and "'claims': -1" in info.value.rows[0]
    with pytest.raises(errors.NonPositiveError, match=r"rows 3, 7"):
        portfolio.summarise(pl.from_pandas(df), "state", "severity", "claims")  # positions
