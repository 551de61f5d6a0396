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
