"""Spec filters: our grammar, compiled to narwhals so every engine filters on its own side."""

from __future__ import annotations

import pandas as pd
import pytest

from bayescred import filters
from bayescred.errors import FilterError, SpecError


@pytest.fixture
def frame():
    return pd.DataFrame(
        {"co.id": [1, 145, 3, 4], "tot.cost": [1.0, -2.0, 3.0, 0.0], "zone": ["a", "b", "c", "a"],
         "flag": [True, False, True, False], "my col": [10, 20, 30, 40]},
        index=[10, 11, 12, 13],
    )


@pytest.mark.parametrize(
    "text, kept",
    [
        ("`co.id` != 145 and not (`tot.cost` < 0)", [1, 3, 4]),  # models/bus.toml
        ("co.id == 145 or zone == 'c'", [145, 3]),
        ('zone in ["a", "c"]', [1, 3, 4]),
        ("zone not in ['a']", [145, 3]),
        ("co.id in [1, 4]", [1, 4]),
        ("flag", [1, 3]),
        ("not flag and `my col` >= 20", [145, 4]),
        ("flag == True", [1, 3]),
        ("`tot.cost` <= 0 and `tot.cost` > -1.5e0", [4]),
        ("1 < co.id and co.id < 145", [3, 4]),  # literal on the left
        ("(zone == 'a' or zone == 'b') and not (co.id == 4)", [1, 145]),
        ("co.id > -1 and tot.cost != 0.0", [1, 145, 3]),
    ],
)
def test_filters_select_rows(frame, text, kept):
    out = filters.apply(frame, text)
    assert out["co.id"].tolist() == kept
    assert out.index.tolist() == list(range(len(kept)))  # a fresh index, as DataFrame.query + reset_index
    assert frame.index.tolist() == [10, 11, 12, 13]  # input untouched


def test_same_rows_on_every_engine(frame):
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    text = "`co.id` != 145 and zone in ['a', 'c'] and not (`tot.cost` < 0)"
    expected = filters.apply(frame, text)
    polars_out = filters.apply(pl.from_pandas(frame), text)
    assert isinstance(polars_out, pl.DataFrame) and polars_out.to_pandas().equals(expected)
    lazy = filters.apply(pl.from_pandas(frame).lazy(), text)
    assert isinstance(lazy, pl.LazyFrame)  # still lazy: the engine filters when collected
    rel = duckdb.from_arrow(pl.from_pandas(frame).to_arrow())
    duck = filters.apply(rel, text)
    assert isinstance(duck, duckdb.DuckDBPyRelation)
    assert sorted(duck.pl()["co.id"].to_list()) == expected["co.id"].tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        ("cost > 1", "column 'cost' \\(position 0\\) is not in the data; available columns: co.id"),
        ("zone > 1", "cannot compare column 'zone' \\(text\\) with 1 \\(number\\)"),
        ("co.id == 'x'", "cannot compare"),
        ("co.id in ['a']", "the list for column 'co.id'"),
        ("co.id", "stands alone but is not True/False"),
        ("co.id ==", "expected a column, number, text or True/False, found the end"),
        ("(co.id == 1", "expected '\\)'"),
        ("co.id == 1 zone == 'a'", "expected 'and', 'or' or the end, found 'zone' at position 11"),
        ("co.id = 1", "unexpected character '=' at position 6"),
        ("@os.system('id') == 0", "unexpected character '@' at position 0"),
        ("zone == 'a\\'b'", "unexpected character"),
        ("zone in [co.id]", "a list holds literals"),
        ("", "empty"),
        ("not " * 60 + "flag", "nests deeper"),
        ("ｚone == 'a'", "backquotes"),
    ],
)
def test_bad_filters_name_the_problem(frame, text, message):
    with pytest.raises(FilterError, match=message) as info:
        filters.apply(frame, text)
    assert isinstance(info.value, SpecError)


def test_long_chains_stay_flat(frame):
    text = " or ".join(f"co.id == {i}" for i in range(500))
    assert filters.apply(frame, text)["co.id"].tolist() == [1, 145, 3, 4]


def test_filter_must_be_text(frame):
    with pytest.raises(FilterError, match="must be text"):
        filters.apply(frame, 3)
