"""lme4 formula syntax -> design (column names and coding as R's model.matrix / lme4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayescred import formula as fm


@pytest.fixture
def data():
    return pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "x": [0.5, 1, 2, 3, 5, 8],
                         "f": ["lo", "mid", "hi", "lo", "mid", "hi"], "g": ["u", "u", "v", "v", "w", "w"],
                         "a": [1, 1, 2, 2, 3, 3], "b": [1, 2, 1, 2, 1, 2]})


def names(form, data):
    return fm.fixed_design(form, data).names


def test_treatment_coding_and_interactions(data):
    # R: model.matrix(~ x * f) with levels sorted (hi base)
    assert names("y ~ x * f", data) == ["(Intercept)", "x", "flo", "fmid", "x:flo", "x:fmid"]
    assert names("y ~ 0 + f", data) == ["fhi", "flo", "fmid"]
    # R codes only the first factor of a no-intercept model in full
    assert names("y ~ 0 + f + g", data) == ["fhi", "flo", "fmid", "gv", "gw"]
    # a factor interacting with a numeric variable whose main effect is absent: full coding
    assert names("y ~ x:f", data) == ["(Intercept)", "x:fhi", "x:flo", "x:fmid"]
    assert names("y ~ f:g", data)[0] == "(Intercept)"
    d = fm.fixed_design("y ~ I(x^2) + log(x)", data)
    assert d.names == ["(Intercept)", "I(x^2)", "log(x)"]
    np.testing.assert_allclose(d.X[:, 1], data.x**2)
    np.testing.assert_allclose(d.X[:, 2], np.log(data.x))


def test_random_terms_expand_as_lme4(data):
    p = fm.parse("y ~ x + (1 + x || g) + (1 | a/b) + offset(log(x))")
    assert p.random == [("1", "g", False), ("0 + x", "g", False), ("1", "a", True), ("1", "b:a", True)]
    assert p.offsets == ["log(x)"]
    terms = fm.random_terms(p, data)
    # lme4 (mkReTrms): rev(order(nl)), so ties come in reverse formula order; checked in
    # R 4 / lme4 1.1-31: as.data.frame(VarCorr(.))$grp = b:a, a, g.1 (x), g ((Intercept))
    assert [t.group for t in terms] == ["b:a", "a", "g", "g"]
    ba = terms[0]
    assert ba.levels == ["1:1", "2:1", "1:2", "2:2", "1:3", "2:3"]  # interaction(): first fastest
    assert [t.names for t in terms[2:]] == [["x"], ["(Intercept)"]]


def test_correlated_slope_term(data):
    terms = fm.random_terms(fm.parse("y ~ (1 + x | g)"), data)
    assert terms[0].names == ["(Intercept)", "x"] and terms[0].k == 2
    assert terms[0].levels == ["u", "v", "w"]
    assert terms[0].codes.tolist() == [0, 0, 1, 1, 2, 2]


class _CountingFrame(pd.DataFrame):
    """A pandas frame counting the reads of each column (frame[col] builds a new Series)."""

    reads: dict = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            _CountingFrame.reads[key] = _CountingFrame.reads.get(key, 0) + 1
        return super().__getitem__(key)


@pytest.mark.filterwarnings("ignore::bayescred.errors.BoundaryWarning")
def test_lmm_reads_each_column_once():
    # bc.lmm's door (dtypes, portfolio's checks) and its designs (fixed effects, the random
    # terms' effects and grouping factors) share one portfolio.Columns view of the frame
    import bayescred as bc

    rng = np.random.default_rng(4)
    data = _CountingFrame({"y": rng.normal(size=60), "x": rng.uniform(size=60), "f": list("abc") * 20,
                           "g": np.repeat(list("pqrstu"), 10), "h": np.tile(list("vw"), 30),
                           "w": rng.uniform(1, 2, 60), "unused": 0.0})
    _CountingFrame.reads = {}
    fit = bc.lmm("y ~ x + f + (x | g) + (1 | g:h)", data, weights="w")
    assert _CountingFrame.reads == {"y": 1, "x": 1, "f": 1, "g": 1, "h": 1, "w": 1}
    assert fit._data is data


def _rank_check_column_by_column(X, names, w):
    """The rule _rank_check applies: each column against the columns kept before it."""
    Xs = X * np.sqrt(w)[:, None]
    Xs = Xs / np.maximum(np.linalg.norm(Xs, axis=0), 1e-300)
    kept, dropped = [], []
    for j in range(X.shape[1]):
        s = np.linalg.svd(Xs[:, kept + [j]], compute_uv=False)
        if s[-1] <= 1e-9 * s[0] or np.linalg.norm(Xs[:, j]) == 0:
            dropped.append(names[j])
        else:
            kept.append(j)
    return dropped


def test_rank_check_accepts_by_one_svd_and_names_as_column_by_column():
    # one SVD accepts a design of full rank (so is every block of its first columns:
    # singular values interlace); a rank-deficient one is named column by column, as before
    from bayescred.errors import RankDeficientError
    from bayescred.lmm.model import _rank_check

    rng = np.random.default_rng(5)
    for trial in range(300):
        n, p = rng.integers(4, 30), rng.integers(1, 6)
        X = rng.normal(size=(n, p)) * 10.0 ** rng.integers(-3, 4, p)
        for j in rng.choice(p, rng.integers(0, p + 1), replace=False):
            if j > 0:  # a combination of earlier columns, exact or nearly
                noise = 10.0 ** rng.integers(-14, -2) * rng.normal(size=n) * rng.integers(0, 2)
                X[:, j] = X[:, :j] @ rng.normal(size=j) + noise
        if trial % 7 == 0:
            X[:, rng.integers(p)] = 0.0
        names, w = [f"c{j}" for j in range(p)], rng.uniform(0.5, 2, n)
        dropped = _rank_check_column_by_column(X, names, w)
        if dropped:
            with pytest.raises(RankDeficientError) as exc:
                _rank_check(X, names, w)
            assert str(exc.value).endswith(": " + ", ".join(dropped))
        else:
            _rank_check(X, names, w)


def test_nested_terms_code_a_shared_grouping_column_once(monkeypatch):
    """(1 | batch/cask) is (1 | batch) + (1 | batch:cask): batch's levels are coded once and
    serve both terms, with the same codes and labels as coding each term on its own."""
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"y": rng.normal(size=60), "batch": np.repeat(list("ABCDEFGHIJ"), 6),
                         "cask": np.tile(list("abc"), 20)})
    calls = []
    original = fm._level_codes

    def counted(values):
        calls.append(values.name)
        return original(values)

    monkeypatch.setattr(fm, "_level_codes", counted)
    terms = fm.random_terms("y ~ 1 + (1|batch/cask)", data)
    assert sorted(calls) == ["batch", "cask"]
    for t in terms:
        codes, levels = fm.grouping_factor(list(t.columns), data)
        assert np.array_equal(t.codes, codes) and t.levels == levels
