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
