"""Catalogue of bad inputs: each raises its own clear error naming the column (issue 2).

A table of 35 kinds of malformed input (raw rows and aggregated cell summaries), plus a
property-based test with hypothesis over randomly malformed frames. In every case the
caller's frame is left untouched. Budget: < 15 s.
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayescred as bc
from bayescred import errors, portfolio


def raw() -> pd.DataFrame:
    """A valid weighted panel: 3 risks x 3 periods, non-default row labels."""
    return pd.DataFrame(
        {
            "risk": [1, 1, 1, 2, 2, 2, 3, 3, 3],
            "sector": [1, 1, 1, 1, 1, 1, 2, 2, 2],
            "period": [1, 2, 3] * 3,
            "loss": [10.0, 12.0, 11.0, 20.0, 19.0, 22.0, 15.0, 14.0, 16.0],
            "weight": [1.0, 2.0, 1.5, 3.0, 1.0, 2.0, 1.0, 1.0, 1.0],
            "claims": [0, 1, 2, 3, 0, 1, 2, 2, 1],
        },
        index=[f"r{i}" for i in range(9)],
    )


def summarise(df):
    return portfolio.summarise(df, "risk", "loss", "weight")


def validate(**kw):
    base = {"groups": "risk", "numeric": "loss", "positive": "weight"}
    return lambda df: portfolio.validate(df, **{**base, **kw})


def cells():
    return bc.datasets.load("credit_insurance")


def from_cells(**kw):
    return lambda df: portfolio.from_summaries(df, ["status", "experience"], "mean_payment", "count", **kw)


def _set(col, rows, value):
    def edit(df):
        df = df.astype({col: object}) if isinstance(value, str) or value is None else df
        df.loc[df.index[rows], col] = value
        return df

    return edit


# (id, make data, call, exception, column named in the message, rows named in the message)
CATALOGUE = [
    ("not a frame", lambda: [[1, 2]], summarise, errors.NotAFrameError, None, None),
    ("dict not a frame", lambda: {"risk": [1, 2]}, summarise, errors.NotAFrameError, None, None),
    ("duplicate column names", lambda: raw().set_axis(["risk", "risk", "period", "loss", "weight", "claims"], axis=1),
     summarise, errors.DuplicateColumnError, None, None),
    ("missing response column", lambda: raw().drop(columns="loss"), summarise, errors.MissingColumnError, "loss", None),
    ("missing weight column", lambda: raw().drop(columns="weight"), summarise, errors.MissingColumnError, "weight", None),
    ("missing group column", lambda: raw().drop(columns="risk"), summarise, errors.MissingColumnError, "risk", None),
    ("empty frame", lambda: raw().iloc[:0], summarise, errors.EmptyDataError, None, None),
    ("string response", lambda: raw().astype({"loss": str}), summarise, errors.NotNumericError, "loss", None),
    ("boolean weight", lambda: raw().assign(weight=True), summarise, errors.NotNumericError, "weight", None),
    ("datetime time", lambda: raw().assign(period=pd.Timestamp("2020-01-01")), validate(numeric=["loss", "period"]),
     errors.NotNumericError, "period", None),
    ("NaN response", lambda: _set("loss", [1, 4], np.nan)(raw()), summarise, errors.MissingValueError, "loss", "r1, r4"),
    ("None in group", lambda: _set("risk", [2], None)(raw()), summarise, errors.MissingValueError, "risk", "r2"),
    ("NaN in float group", lambda: _set("risk", [5], np.nan)(raw()), summarise, errors.MissingValueError, "risk", "r5"),
    ("NaN in time", lambda: _set("period", [3], np.nan)(raw()), validate(numeric=["loss", "period"]),
     errors.MissingValueError, "period", "r3"),
    ("+inf response", lambda: _set("loss", [0], np.inf)(raw()), summarise, errors.NonFiniteError, "loss", "r0"),
    ("-inf weight", lambda: _set("weight", [8], -np.inf)(raw()), summarise, errors.NonFiniteError, "weight", "r8"),
    ("zero weight", lambda: _set("weight", [6], 0.0)(raw()), summarise, errors.NonPositiveError, "weight", "r6"),
    ("negative exposure", lambda: _set("weight", [2, 7], -1.0)(raw()),
     lambda df: portfolio.claim_totals(df, "risk", "claims", "weight"), errors.NonPositiveError, "weight", "r2, r7"),
    ("negative claims", lambda: _set("claims", [4], -2)(raw()),
     lambda df: portfolio.claim_totals(df, "risk", "claims", "weight"), errors.NegativeValueError, "claims", "r4"),
    ("fractional claims", lambda: _set("claims", [4], 1.5)(raw().astype({"claims": float})),
     lambda df: portfolio.claim_totals(df, "risk", "claims", "weight"), errors.NotIntegerError, "claims", "r4"),
    ("single risk", lambda: raw().assign(risk=7), validate(), errors.TooFewRisksError, "risk", None),
    ("duplicate risk x period", lambda: _set("period", [1], 1)(raw()), validate(unique=["risk", "period"]),
     errors.DuplicateRowError, "risk, period", "r0, r1"),
    ("single-period risk", lambda: raw().drop(index=["r1", "r2"]), validate(min_periods=2),
     errors.TooFewPeriodsError, "risk", "r0"),
    ("constant time within a risk", lambda: _set("period", [3, 4, 5], 2)(raw()), validate(varying="period"),
     errors.ConstantCovariateError, "period", "r3, r4, r5"),
    ("empty crossed cell", lambda: raw().drop(index="r8"),
     validate(groups=["sector", "period"], complete=["sector", "period"]), errors.EmptyCellError, "sector, period", "2, 3"),
    ("zero total weight", lambda: _set("weight", [3, 4, 5], 0.0)(raw()), validate(positive=None, nonnegative="weight"),
     errors.ZeroWeightError, "weight", "r3, r4, r5"),
    ("negative weight where zeros allowed", lambda: _set("weight", [3], -1.0)(raw()),
     validate(positive=None, nonnegative="weight"), errors.NegativeValueError, "weight", "r3"),
    ("risk in two sectors", lambda: _set("sector", [2], 2)(raw()), validate(groups=["sector", "risk"], nested=["sector", "risk"]),
     errors.NestingError, "risk", "r0, r1, r2"),
    ("cells: no within SS", lambda: cells().pipe(lambda d: (d.attrs.clear(), d)[1]), from_cells(),
     errors.SummaryError, "within_ss", None),
    ("cells: df do not match counts", cells, from_cells(within_df=400), errors.SummaryError, "within_df", None),
    ("cells: negative within SS", cells, from_cells(within_ss=-1.0), errors.NegativeValueError, "within_ss", None),
    ("cells: infinite within SS", cells, from_cells(within_ss=np.inf), errors.NonFiniteError, "within_ss", None),
    ("cells: fractional counts", lambda: cells().assign(count=lambda d: d["count"] + 0.5), from_cells(),
     errors.NotIntegerError, "count", None),
    ("cells: duplicated cell", lambda: pd.concat([cells(), cells().iloc[:1]]).reset_index(drop=True), from_cells(),
     errors.DuplicateRowError, "status, experience", "0, 9"),
    ("cells: zero count", lambda: _set("count", [4], 0)(cells()), from_cells(), errors.NonPositiveError, "count", "4"),
]


@pytest.mark.parametrize("make, call, exc, column, rows", [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE])
def test_catalogue(make, call, exc, column, rows):
    data = make()
    before = data.copy() if isinstance(data, pd.DataFrame) else None
    with pytest.raises(exc) as info:
        call(data)
    msg = str(info.value)
    assert isinstance(info.value, errors.DataError)  # hence ValueError
    if column is not None:
        assert info.value.column == column and f"column {column!r}" in msg
    if rows is not None:
        assert f"rows {rows}" in msg
    if before is not None:
        pd.testing.assert_frame_equal(data, before)


def test_catalogue_has_at_least_20_kinds():
    assert len({c[0] for c in CATALOGUE}) == len(CATALOGUE) >= 30  # kinds of bad input
    assert len({c[3] for c in CATALOGUE}) >= 18  # specific exception classes among them


# ---- property-based: random malformations of a valid panel --------------------------------

MUTATIONS = ["drop", "nan", "inf", "nonpositive", "string", "single_risk", "null_group"]


@st.composite
def malformed(draw):
    """A valid panel (2-6 risks x 2-5 periods), then one random malformation; returns the frame,
    the expected exception class and the column the message must name."""
    n_risks, n_periods = draw(st.integers(2, 6)), draw(st.integers(2, 5))
    n = n_risks * n_periods
    floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    df = pd.DataFrame(
        {
            "risk": np.repeat(np.arange(n_risks), n_periods),
            "period": np.tile(np.arange(1, n_periods + 1), n_risks),
            "loss": draw(st.lists(floats, min_size=n, max_size=n)),
            "weight": draw(st.lists(st.floats(0.01, 1e4), min_size=n, max_size=n)),
        }
    )
    kind = draw(st.sampled_from(MUTATIONS))
    rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    if kind == "drop":
        col = draw(st.sampled_from(["risk", "loss", "weight"]))
        return df.drop(columns=col), errors.MissingColumnError, col
    if kind == "nan":
        col = draw(st.sampled_from(["loss", "weight"]))
        df.loc[rows, col] = np.nan
        return df, errors.MissingValueError, col
    if kind == "inf":
        col = draw(st.sampled_from(["loss", "weight"]))
        df.loc[rows, col] = draw(st.sampled_from([np.inf, -np.inf]))
        return df, errors.NonFiniteError, col
    if kind == "nonpositive":
        df.loc[rows, "weight"] = draw(st.floats(-1e4, 0.0))
        return df, errors.NonPositiveError, "weight"
    if kind == "string":
        col = draw(st.sampled_from(["loss", "weight"]))
        return df.astype({col: str}), errors.NotNumericError, col
    if kind == "single_risk":
        return df.assign(risk=draw(st.integers(0, 9))), errors.TooFewRisksError, "risk"
    df = df.astype({"risk": object})
    df.loc[rows, "risk"] = None
    return df, errors.MissingValueError, "risk"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_frames_raise_the_right_error(case):
    df, exc, column = case
    before = df.copy()
    with pytest.raises(exc) as info:
        portfolio.validate(df, groups="risk", numeric="loss", positive="weight")
    assert info.value.column == column and repr(column) in str(info.value)
    pd.testing.assert_frame_equal(df, before)
