"""Sufficient statistics and validation (issue 2)."""

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import errors, portfolio


def test_summarise_hachemeister_by_hand():
    df = bc.datasets.load("hachemeister")
    before = df.copy()
    s = portfolio.summarise(df, "state", "severity", "claims")
    assert s["weight"].tolist() == [100155, 19895, 13735, 4152, 36110]
    one = df[df.state == 4]
    m = np.average(one.severity, weights=one.claims)
    assert s.loc[4, "mean"] == pytest.approx(m, rel=1e-14)
    assert s.loc[4, "within_ss"] == pytest.approx((one.claims * (one.severity - m) ** 2).sum(), rel=1e-12)
    pd.testing.assert_frame_equal(df, before)


def test_negative_weight_names_column_and_rows():
    df = bc.datasets.load("hachemeister")
    df.loc[[3, 7], "claims"] = -1
    with pytest.raises(errors.NonPositiveError, match=r"'claims'.*rows 3, 7"):
        portfolio.summarise(df, "state", "severity", "claims")


# ---- aggregated input: cell summaries are a first-class input ---------------------------------


def _cell_summaries(df, by, response, weight=None):
    """What a publication prints: per-cell count, weight and mean, plus the pooled within SS."""
    w = df[weight] if weight else pd.Series(1.0, index=df.index)
    g = df.assign(__w=w, __wy=w * df[response]).groupby(by)
    cells = g.agg(n=(response, "size"), weight=("__w", "sum"), wy=("__wy", "sum")).reset_index()
    cells["mean"] = cells.wy / cells.weight
    m = df.merge(cells[[*by, "mean"]], on=by, how="left")["mean"].to_numpy()
    ss = float((w.to_numpy() * (df[response].to_numpy() - m) ** 2).sum())
    return cells.drop(columns="wy"), ss


def test_raw_rows_and_their_summaries_give_identical_statistics():
    from bayescred.datasets import simulate

    # unweighted crossed cells (counts are the weights)
    raw = simulate.crossed((3, 4), (2, 30), seed=5).data
    by = ["status", "experience"]
    cells, ss = _cell_summaries(raw, by, "payment")
    a = portfolio.sufficient(raw, by, "payment")
    b = portfolio.from_summaries(cells, by, "mean", "n", within_ss=ss, within_df=len(raw) - len(cells))
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=False, rtol=1e-12)
    assert a.within_ss == pytest.approx(b.within_ss, rel=1e-12)
    assert (a.within_df, a.n_obs, a.n_cells) == (b.within_df, b.n_obs, b.n_cells) == (len(raw) - 12, len(raw), 12)
    # weighted one-way layout: weight and count columns differ
    bs = simulate.buhlmann_straub(20, 4, seed=6).data
    cells, ss = _cell_summaries(bs, ["risk"], "loss", "weight")
    a = portfolio.sufficient(bs, "risk", "loss", "weight")
    b = portfolio.from_summaries(cells, "risk", "mean", "weight", n="n", within_ss=ss)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=False, rtol=1e-12)
    assert a.within_ss == pytest.approx(b.within_ss, rel=1e-12) and a.within_df == b.within_df == 60
    # and the pooled SS is the sum of summarise's per-risk within SS
    assert a.within_ss == pytest.approx(portfolio.summarise(bs, "risk", "loss", "weight").within_ss.sum(), rel=1e-12)


def test_credit_insurance_summaries_usable_as_they_are():
    cells = bc.datasets.load("credit_insurance")
    before = cells.copy()
    s = portfolio.from_summaries(cells, ["status", "experience"], "mean_payment", "count")
    # seed 002 Table 1 (lines 155-159): 9 cells, N = 401; derived SSW 10,578,584 on 392 df,
    # pooled within-cell variance 26,986.18 (REFERENCE-VALUES §6, derived)
    assert (s.n_cells, s.n_obs, s.within_df) == (9, 401, 392)
    assert s.within_ss == 10_578_584 and s.within == pytest.approx(26986.18, abs=0.005)
    assert s.table.loc[(3, 3), "mean"] == 366.61 and s.table.loc[(2, 1), "n"] == 54
    pd.testing.assert_frame_equal(cells, before)
    # the same from a polars frame (no attrs there: pass the derived SSW explicitly)
    import polars as pl

    t = portfolio.from_summaries(pl.from_pandas(cells), ["status", "experience"], "mean_payment", "count",
                                 within_ss=cells.attrs["within_ss"])
    pd.testing.assert_frame_equal(s.table, t.table, check_dtype=False, check_index_type=False)
    assert t.within_df == 392


def test_summarise_several_grouping_columns_gives_cells():
    df = bc.datasets.load("hachemeister").assign(half=lambda d: (d.period > 6).astype(int))
    s = portfolio.summarise(df, ["state", "half"], "severity", "claims")
    assert s.index.names == ["state", "half"] and len(s) == 10 and (s.n == 6).all()
    one = df[(df.state == 2) & (df.half == 1)]
    assert s.loc[(2, 1), "mean"] == pytest.approx(np.average(one.severity, weights=one.claims), rel=1e-14)
    assert s.weight.sum() == 174047  # total claims, REFERENCE-VALUES §5.1
