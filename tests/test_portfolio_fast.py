"""The numpy fast path of bayescred.portfolio (small eager pandas frames) gives what the
narwhals path gives: the same sufficient statistics and cross-products, the same fitted
models and, for bad data, the same exception and message (the fast path only confirms
valid data; every problem is reported by the narwhals path)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import portfolio


def _frame(seed=0, keys="str"):
    rng = np.random.default_rng(seed)
    n = 90
    risk = rng.integers(0, 9, n)
    return pd.DataFrame({
        "risk": [f"r{r}" for r in risk] if keys == "str" else risk,
        "t": np.tile(np.arange(10), 9)[:n],
        "y": rng.normal(100, 10, n),
        "w": rng.uniform(0.5, 2, n),
        "c": rng.integers(0, 5, n),
    }, index=pd.RangeIndex(100, 100 + n))


@pytest.fixture
def engine_only(monkeypatch):
    def run(fn):
        monkeypatch.setattr(portfolio, "FAST_ROWS", -1)
        try:
            return fn()
        finally:
            monkeypatch.undo()
    return run


@pytest.mark.parametrize("keys", ["str", "int"])
def test_summaries_equal_the_engine_path(keys, engine_only):
    df = _frame(keys=keys)
    fast = portfolio.summarise(df, "risk", "y", "w")
    slow = engine_only(lambda: portfolio.summarise(df, "risk", "y", "w"))
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-13)
    cf = portfolio.cross_products(df, "risk", "y", ["t"], "w")
    cs = engine_only(lambda: portfolio.cross_products(df, "risk", "y", ["t"], "w"))
    for key in ("levels", "names", "n"):
        np.testing.assert_array_equal(cf[key], cs[key])
    for key in ("weight", "QWQ", "QWy", "yWy"):
        np.testing.assert_allclose(cf[key], cs[key], rtol=1e-13)
    wf = portfolio.within_cross_products(df, "risk", ["y", "t"], "w")
    ws = engine_only(lambda: portfolio.within_cross_products(df, "risk", ["y", "t"], "w"))
    np.testing.assert_array_equal(wf["levels"], ws["levels"])
    np.testing.assert_allclose(wf["S"], ws["S"], rtol=1e-12)
    assert wf["names"] == ws["names"] == ["y", "t"]
    # S_yy of the centred products is the within SS of summarise
    np.testing.assert_allclose(wf["S"][:, 0, 0], fast["within_ss"].to_numpy(), rtol=1e-12)


def test_centring_equals_the_engine_path(engine_only):
    df = _frame().assign(y=lambda d: d["y"] + 1e9)
    before = df.copy()
    (fast, c_fast), (slow, c_slow) = portfolio.centred(df, "y"), engine_only(lambda: portfolio.centred(df, "y"))
    assert c_fast == c_slow
    pd.testing.assert_frame_equal(fast.to_native(), slow.to_native())
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is untouched
    for absolute in (False, True):
        assert portfolio.largest(fast, "y", absolute=absolute) == engine_only(
            lambda: portfolio.largest(slow, "y", absolute=absolute))


def test_fits_equal_the_engine_path(engine_only):
    h = bc.datasets.load("hachemeister")
    for fit in (lambda: bc.credibility.buhlmann_straub(h, "state", "severity", "claims"),
                lambda: bc.credibility.hachemeister(h, "state", "period", "severity", "claims"),
                lambda: bc.credibility.hachemeister(h, "state", "period", "severity", "claims", centering="group",
                                                    tau_estimated_on="uncentred")):
        a, b = fit(), engine_only(fit)
        np.testing.assert_allclose(a.premiums().to_numpy(float), b.premiums().to_numpy(float), rtol=1e-12)
        np.testing.assert_allclose(a.structure["within"], b.structure["within"], rtol=1e-12)
        np.testing.assert_allclose(np.asarray(a.structure["between"], float), np.asarray(b.structure["between"], float),
                                   rtol=1e-12)


@pytest.mark.parametrize("edit, kwargs", [
    (lambda d: d.assign(y=d.y.where(d.index != 105)), dict(groups="risk", numeric="y")),
    (lambda d: d.assign(y=d.y.mask(d.index == 107, np.inf)), dict(groups="risk", numeric="y")),
    (lambda d: d.assign(w=d.w.mask(d.index == 110, -1.0)), dict(groups="risk", positive="w")),
    (lambda d: d.assign(w=d.w.mask(d.index == 110, 0.0)), dict(groups="risk", positive="w")),
    (lambda d: d.assign(x=np.where(d.index == 104, None, "a")), dict(groups="risk", present="x")),
    (lambda d: d.assign(c=d.c.mask(d.index == 111, 1.5)), dict(groups="risk", counts="c")),
    (lambda d: d.assign(y=d.y.astype(str)), dict(groups="risk", numeric="y")),
    (lambda d: d, dict(groups="risk", numeric="y", min_periods=20)),
    (lambda d: d, dict(groups="risk", unique=["risk"])),
    (lambda d: d.assign(t=1.0), dict(groups="risk", varying="t")),
    (lambda d: d, dict(groups="nope", numeric="y")),
    (lambda d: d.assign(risk=d.risk.where(d.index != 103)), dict(groups="risk", numeric="y")),
    # several factors (a mixed model's grouping factors): a missing label in the second one
    (lambda d: d.assign(t=d.t.where(d.index != 106)), dict(groups=["risk", "t"], numeric="y", min_groups=1)),
    (lambda d: d.assign(w=d.w.mask(d.index == 110, 0.0)), dict(groups=["risk", "t"], positive="w", min_groups=1)),
])
def test_bad_data_raises_the_engine_message(edit, kwargs, engine_only):
    df = edit(_frame())
    with pytest.raises(bc.errors.DataError) as fast:
        portfolio.validate(df, **kwargs)
    with pytest.raises(bc.errors.DataError) as slow:
        engine_only(lambda: portfolio.validate(df, **kwargs))
    assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)


def test_valid_data_passes_both_paths(engine_only):
    df = _frame()
    kw = dict(groups="risk", numeric=["y", "t"], positive="w", counts="c", min_periods=2, varying="t")
    portfolio.validate(df, **kw)
    engine_only(lambda: portfolio.validate(df, **kw))


def test_several_factors_take_the_fast_path_and_agree(engine_only, monkeypatch):
    """The grouping factors of a mixed model (bc.lmm's door): valid data is confirmed by numpy
    without an engine round trip."""
    df = _frame()
    kw = dict(groups=["risk", "t"], numeric="y", positive="w", min_groups=1)
    engine_only(lambda: portfolio.validate(df, **kw))
    monkeypatch.setattr(portfolio, "_any", lambda *a: pytest.fail("the engine path ran"))
    portfolio.validate(df, **kw)


@pytest.mark.parametrize("edit, kwargs", [
    (lambda d: d.assign(y=d.y.where(d.index != 105)), dict(groups="risk", numeric="y", min_groups=1)),
    (lambda d: d.assign(y=d.y.mask(d.index == 107, np.inf)), dict(groups="risk", numeric="y", min_groups=1)),
    (lambda d: d.assign(w=d.w.mask(d.index == 110, 0.0)), dict(groups="risk", positive="w", min_groups=1)),
    (lambda d: d.assign(x=np.where(d.index == 104, None, "a")), dict(groups="risk", present="x", min_groups=1)),
    (lambda d: d.assign(risk=d.risk.where(d.index != 103)), dict(groups=["risk", "t"], present="y", min_groups=1)),
    (lambda d: d.assign(y=d.y.astype(str)), dict(groups="risk", numeric="y", min_groups=1)),
    (lambda d: d, dict(groups="nope", numeric="y", min_groups=1)),
])
def test_check_data_through_a_view_raises_what_validate_raises(edit, kwargs):
    # bc.lmm's door: check_data reads a portfolio.Columns view (each column read and checked
    # once, shared with the designs); bad rows get validate's exception, message and rows
    df = edit(_frame())
    with pytest.raises(bc.errors.DataError) as want:
        portfolio.validate(df, **kwargs)
    for data in (df, portfolio.Columns(df)):
        with pytest.raises(bc.errors.DataError) as got:
            portfolio.check_data(data, **kwargs)
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
        assert got.value.rows == want.value.rows


def test_check_data_confirms_a_small_frame_without_narwhals(monkeypatch):
    # validate returns the narwhals frame; check_data, for a caller keeping its own frame,
    # never builds one for valid data (~20 µs, a tenth of a small mixed model's set-up)
    df = _frame()
    before = df.copy()
    monkeypatch.setattr(portfolio, "as_frame", lambda data: pytest.fail("check_data wrapped the frame"))
    kw = dict(groups=["risk", "t"], numeric=["y"], present=["risk", "y", "t"], positive="w", min_groups=1)
    portfolio.check_data(df, **kw)
    view = portfolio.Columns(df)
    portfolio.check_data(view, **kw)
    assert view["y"] is view["y"] and view.missing("risk") is view.missing("risk")  # read and checked once
    pd.testing.assert_frame_equal(df, before)
