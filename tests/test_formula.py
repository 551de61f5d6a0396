"""bayescred.formula without R: structure of parsed formulas, errors that name the problem,
factors / base levels through bc.lmm and the CLI, new data, engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import formula as fm
from bayescred.errors import DataError, FormulaError, MissingColumnError, NonFiniteError, NotNumericError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cake():
    """A cake-like design: temperature read from CSV as numbers (lme4's cake layout)."""
    rng = np.random.default_rng(5)
    rows = [(r, rep, t) for r in "ABC" for rep in range(1, 6) for t in (175, 185, 195, 205)]
    d = pd.DataFrame(rows, columns=["recipe", "replicate", "temperature"])
    d["angle"] = 30 + 0.05 * d["temperature"] + rng.normal(0, 2, 5)[d["replicate"] - 1] + rng.normal(0, 1, len(d))
    return d


def test_parse_structure():
    p = fm.parse("log(y) ~ x*f + poly(z, 2) + (1 + x | g) + (1 | a/b) + (0 + x || h) + offset(log(e)) - 1")
    assert p.response == "log(y)"
    assert p.fixed == "x * f + poly(z, 2) - 1"
    assert p.random == [("1 + x", "g", True), ("1", "a", True), ("1", "b:a", True), ("0 + x", "h", False)]
    assert p.offsets == ["log(e)"]
    assert p.variables == ["y", "e", "x", "f", "z", "g", "a", "b", "h"]
    q = fm.parse("cbind(s, n - s) ~ `my x` + (1 | `my group`:b)")
    assert q.response == "cbind(s, n - s)" and q.fixed == "`my x`"
    assert q.random == [("1", "my group:b", True)]
    assert fm.parse("~ x").response is None


def test_parse_is_cached_but_each_call_gets_its_own_formula():
    # a text is parsed once; a caller changing what it got changes nothing for the next caller
    text = "y ~ x + f + (1 + x | g) + offset(log(e))"
    first = fm.parse(text)
    assert fm._parse(text) is fm._parse(text)
    first.variables.append("z")
    first.random.clear()
    first.terms.pop()
    first.random_parts.clear()
    again = fm.parse(text)
    assert again is not first
    assert again.variables == ["y", "e", "x", "f", "g"] and again.random == [("1 + x", "g", True)]
    assert [fm.deparse(node) for _, node in again.terms] == ["x", "f"]
    assert again.random_parts[0][1] == ("g",)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y x", "needs a '~'"),
        ("y ~ (x", "expected '\\)'"),
        ("y ~ x +", "unexpected 'end of formula'"),
        ("y ~ foo(x)", "unknown function 'foo'"),
        ("y ~ x + 2", "number other than 0 or 1"),
        ("y ~ 'x'", "cannot be a term"),
        ("y ~ log(x, 2)", "exactly one argument"),
        ("y ~ poly(x, 2.5)", "whole number"),
        ("y ~ C(f, Bogus)", "unknown contrast 'Bogus'"),
        ("y ~ x - (1 | g)", "cannot subtract a random-effects term"),
        ("y ~ x + (1 | log(g))", "grouping factor"),
        ("y ~ I(x ~ z)", "found '~'"),
        ("y ~ `__class__`", "not a usable column name"),
        ("y ~ é", "backquotes"),
        ("y ~ `x\\`", "closing backquote"),
        ("y ~ " + "(" * 300 + "x" + ")" * 300, "nests or chains more than 200"),
        ("y ~ " + " + ".join(f"x{i}" for i in range(3000)), "at most"),
        ("y ~ " + " + ".join(f"x{i}" for i in range(300)), "chains more than 200"),
        ("y ~ I(f:x)", "cannot be used inside"),
        ("y ~ log(scale(x))", "must stand on its own"),
    ],
)
def test_parse_errors_name_the_problem(formula, message):
    with pytest.raises(FormulaError, match=message):
        fm.parse(formula)


def test_data_errors_name_the_column():
    d = pd.DataFrame({"y": [1.0, 2, 3], "x": [1.0, 0, 2], "f": ["a", "b", "a"]})
    with pytest.raises(MissingColumnError, match="'z'.*available columns: y, x, f"):
        fm.fixed_design("y ~ z", d)
    with pytest.raises(NonFiniteError, match=r"'log\(x\)'.*rows 1"):
        fm.fixed_design("y ~ log(x)", d)
    with pytest.raises(NotNumericError, match="'f'"):
        fm.fixed_design("f ~ x", d)
    with pytest.raises(DataError, match="base level 'q'"):
        fm.fixed_design("y ~ f", d, base_levels={"f": "q"})
    with pytest.raises(MissingColumnError, match="'w'"):
        fm.fixed_design("y ~ x", d, factors=["w"])
    with pytest.raises(FormulaError, match="base_levels must map"):
        fm.fixed_design("y ~ f", d, base_levels=["f"])
    assert fm.fixed_design("y ~ x", d, factors="x").names == ["(Intercept)", "x1", "x2"]  # one column as text


def test_numeric_codes_stay_numeric_unless_declared(cake):
    assert fm.fixed_design("angle ~ temperature", cake).names == ["(Intercept)", "temperature"]
    declared = fm.fixed_design("angle ~ temperature", cake, factors=["temperature"])
    assert declared.names == ["(Intercept)", "temperature185", "temperature195", "temperature205"]
    rebased = fm.fixed_design("angle ~ temperature", cake, base_levels={"temperature": "205"})
    assert rebased.names == ["(Intercept)", "temperature175", "temperature185", "temperature195"]
    called = fm.fixed_design("angle ~ C(temperature, Treatment(reference = 195))", cake)
    assert called.names[1:] == [f"C(temperature, Treatment(reference = 195)){t}" for t in (175, 185, 205)]
    # the same column space whichever way the factor is declared
    for other in (rebased, called):
        coef = np.linalg.lstsq(other.X, declared.X, rcond=None)[0]
        np.testing.assert_allclose(other.X @ coef, declared.X, atol=1e-10)


def test_lmm_factors_base_levels_and_predict(cake):
    before = cake.copy()
    a = bc.lmm("angle ~ recipe + factor(temperature) + (1 | recipe:replicate)", cake)
    b = bc.lmm("angle ~ recipe + temperature + (1 | recipe:replicate)", cake, factors=["temperature"],
               base_levels={"recipe": "C"})
    pd.testing.assert_frame_equal(cake, before)
    assert list(a.fixef.index)[3:] == ["factor(temperature)185", "factor(temperature)195", "factor(temperature)205"]
    assert list(b.fixef.index)[:3] == ["(Intercept)", "recipeA", "recipeB"]
    assert a.criterion == pytest.approx(b.criterion, rel=1e-10)
    pa, pb = a.predict(cake.iloc[:6]), b.predict(cake.iloc[:6])
    np.testing.assert_allclose(pa.iloc[:, 0], pb.iloc[:, 0], rtol=1e-9)


def test_poly_and_scale_state_is_kept_for_prediction():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 6)
    d = pd.DataFrame({"y": rng.normal(size=60) + g, "x": rng.uniform(0, 10, 60), "z": rng.normal(size=60), "g": g})
    fit = bc.lmm("y ~ poly(x, 2) + scale(z) + (1 | g)", d)
    whole = fit.predict(d).iloc[:, 0].to_numpy()
    part = fit.predict(d.iloc[[5, 17, 40]]).iloc[:, 0].to_numpy()  # a few rows: same state, same premiums
    np.testing.assert_allclose(part, whole[[5, 17, 40]], rtol=1e-12)


def test_engines_give_the_same_design(cake):
    pl = pytest.importorskip("polars")
    pandas_design = fm.fixed_design("angle ~ recipe * poly(temperature, 2)", cake)
    polars_design = fm.fixed_design("angle ~ recipe * poly(temperature, 2)", pl.from_pandas(cake))
    assert polars_design.names == pandas_design.names
    np.testing.assert_allclose(polars_design.X, pandas_design.X)


def test_cli_lmm_factor_and_base(tmp_path, cake):
    csv = tmp_path / "cake.csv"
    cake.to_csv(csv, index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "bayescred", "lmm", "angle ~ recipe + temperature + (1 | recipe:replicate)",
         "--data", str(csv), "--factor", "temperature", "--base", "temperature=205", "--base", "recipe=B", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    names = [row["term"] if isinstance(row, dict) else row for row in _fixef_names(json.loads(res.stdout))]
    assert names == ["(Intercept)", "recipeA", "recipeC", "temperature175", "temperature185", "temperature195"]
    bad = subprocess.run([sys.executable, "-m", "bayescred", "lmm", "angle ~ recipe + (1 | replicate)",
                          "--data", str(csv), "--base", "recipe"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--base takes COLUMN=LEVEL" in bad.stderr


def _fixef_names(out: dict) -> list:
    fixef = out["fixef"]
    return list(fixef) if isinstance(fixef, dict) else [row["term"] for row in fixef]


def test_offsets_and_cbind_response_on_new_rows():
    d = pd.DataFrame({"s": [1.0, 2, 3, 5], "n": [4.0, 5, 6, 8], "x": [1.0, 2, 4, 3], "e": [1.0, 2, 3, 4]})
    design = fm.fixed_design("cbind(s, n - s) ~ x + offset(log(e)) + offset(x)", d)
    np.testing.assert_allclose(design.y, np.column_stack([d.s, d.n - d.s]))
    np.testing.assert_allclose(design.offset, np.log(d.e) + d.x)
    np.testing.assert_allclose(design.offset_for(d.iloc[[3, 1]]), (np.log(d.e) + d.x).to_numpy()[[3, 1]])
    np.testing.assert_allclose(design.transform(d.iloc[[3, 1]]), design.X[[3, 1]])
    assert design.response_name == "cbind(s, n - s)"


@pytest.mark.parametrize("values", [
    pd.Series([5, 3, 11, 3, 0, 11]), pd.Series([0.5, -1.25, 0.5, 2.0]), pd.Series(list("zyxabcZ a") * 2),
    pd.Series(["10", "9", "2", "b", "B", "_"], dtype="string"), pd.Series([True, False, True]),
    pd.Series(["é", "e", "f", "E"]), pd.Series([3, 1, 2, 1], dtype="Int64"),
    pd.Series(pd.to_datetime(["2020-01-02", "2019-05-01", "2020-01-02"])),
    pd.Series([1, "a", 2.5, "b", 1], dtype=object),
    pd.Series(pd.Categorical(["b", "a", "c", "a"], categories=["c", "b", "a", "d"])),
], ids=["int", "float", "str", "string", "bool", "accents", "Int64", "dates", "mixed", "categorical"])
def test_grouping_factor_codes_and_labels_follow_r_levels(values):
    # one grouping column takes a one-pass path (pd.factorize) for numeric and string dtypes:
    # the same codes and labels as R's factor() order (r_levels) gives, whatever the dtype
    from bayescred.formula import grouping_factor, r_levels

    codes, labels = grouping_factor(["g"], pd.DataFrame({"g": values}))
    levels = r_levels(values)
    present = [lev for lev in levels if (values == lev).any()]
    assert labels == [str(lev) for lev in present]
    assert [present[c] for c in codes] == list(values)
    # with a second column: R's interaction() of the observed pairs, the first varying fastest
    other = pd.Series(["q", "p"] * len(values))[: len(values)]
    codes, labels = grouping_factor(["g", "h"], pd.DataFrame({"g": values, "h": other.to_numpy()}))
    pairs = sorted({(present.index(v), o) for v, o in zip(values, other)}, key=lambda t: (t[1], t[0]))
    assert labels == [f"{present[i]!s}:{o}" for i, o in pairs]
    assert [labels[c] for c in codes] == [f"{present[present.index(v)]!s}:{o}" for v, o in zip(values, other)]


DTYPE_ZOO = {
    "int": pd.Series([5, 3, 11, 3, 0, 11]), "uint8": pd.Series([3, 1, 3], dtype="uint8"),
    "float": pd.Series([0.5, -1.25, np.nan, 0.5, 2.0]), "float32": pd.Series([0.1, 0.2, 0.1], dtype="float32"),
    "zeros": pd.Series([-0.0, 1.0, 0.0]), "bool": pd.Series([True, False, True]),
    "str": pd.Series(["é", "e", None, "E", "z", "\U0001d518", "Z", "e"], dtype="str"),
    "string[pyarrow]": pd.Series(["b", None, "a", "b"], dtype="string[pyarrow]"),
    "string[python]": pd.Series(["b", None, "a"], dtype="string[python]"),
    # complete short text: coded by a set and a dict in Python, not pandas' factorize
    "str complete": pd.Series(["é", "e", "E", "z", "\U0001d518", "Z", "e", "10", "9"], dtype="str"),
    "string[pyarrow] complete": pd.Series(["b", "a", "b", "B"], dtype="string[pyarrow]"),
    "string[python] complete": pd.Series(["b", "a", "ä"], dtype="string[python]"),
    "str in two chunks": pd.concat([pd.Series(["b", "a"], dtype="str"), pd.Series(["c", "a"], dtype="str")],
                                   ignore_index=True),
    "numpy U": pd.Series(np.array(["b", "a", "b"], dtype="U1")), "bytes": pd.Series([b"b", b"a"], dtype="S1"),
    "Int64": pd.Series([3, None, 1, 3], dtype="Int64"), "Float64": pd.Series([2.5, None, 1.0], dtype="Float64"),
    "Float32": pd.Series([0.1, None, 0.2], dtype="Float32"),
    "boolean": pd.Series([True, None, False], dtype="boolean"), "complex": pd.Series([1 + 1j, 1 - 1j, 0j, 1 + 1j]),
    "object": pd.Series(["b", "a", "b"], dtype=object), "mixed": pd.Series([1, "a", 2.5, "b", 1], dtype=object),
    "long str": pd.Series(["é", "e", None, "E", "z", "\U0001d518", "Z", "e"] * 200, dtype="str"),
    "long string[python]": pd.Series(["b", None, "a"] * 400, dtype="string[python]"),
    "dates": pd.Series(pd.to_datetime(["2020-01-02", "2019-05-01", None])),
    "categorical": pd.Series(pd.Categorical(["b", "a", None, "a"], categories=["c", "b", "a", "d"])),
}


@pytest.mark.parametrize("values", DTYPE_ZOO.values(), ids=DTYPE_ZOO.keys())
def test_one_hashing_pass_equals_pandas_and_r_levels(values):
    # the designs code a numeric or text column by one hashing pass (_sorted_codes): the codes
    # and levels of pd.factorize(sort=True) (grouping labels, as an Index of the levels
    # iterates them), and R's factor() levels as r_levels defines them (sorted distinct values,
    # by their text when Python cannot order them), the same objects
    if fm._sorted_codes(values) is not None:
        codes, uniques = pd.factorize(values, sort=True)
        got_codes, got = fm._level_codes(values)
        np.testing.assert_array_equal(got_codes, codes)
        want = list(uniques)
        assert got == want and [type(v) for v in got] == [type(v) for v in want]
    distinct = pd.unique(values.dropna())
    if isinstance(values.dtype, pd.CategoricalDtype):
        want = [c for c in values.cat.categories if c in set(distinct)]
    else:
        try:
            want = sorted(distinct)
        except TypeError:
            want = sorted(distinct, key=lambda v: (type(v).__name__, str(v)))
    got = fm.r_levels(values)
    assert got == want and [type(v) for v in got] == [type(v) for v in want]


@pytest.mark.parametrize("values", DTYPE_ZOO.values(), ids=DTYPE_ZOO.keys())
def test_a_factor_is_coded_as_its_categorical(values, monkeypatch):
    # a plain design reads a factor's codes and level names without building the categorical
    # formulaic reads; both agree (the names as pandas boxes the levels: a date as a Timestamp)
    data = pd.DataFrame({"v": values}).dropna()
    fast = fm.fixed_design("~ v + 0", data, factors=["v"])
    categorical = fm._with_categories(data["v"], fast.levels["v"])
    np.testing.assert_array_equal(fast.X.argmax(axis=1), categorical.cat.codes.to_numpy())
    assert fast.names == [f"v{fm.r_level(v)}" for v in categorical.cat.categories]
    monkeypatch.setattr(fm._PlainTerms, "of", classmethod(lambda cls, pieces, leaves, frame: None))
    slow = fm.fixed_design("~ v + 0", data, factors=["v"])
    assert fast.names == slow.names and fast.levels == slow.levels
    np.testing.assert_array_equal(fast.X, slow.X)


@pytest.mark.filterwarnings("ignore::bayescred.errors.BoundaryWarning")
def test_plain_designs_build_no_categorical_and_no_frame(monkeypatch):
    # the designs formulaic is not needed for read the columns' codes: no pandas categorical and
    # no prepared frame (~0.1 ms each) for a fit such as lme4's Orthodont
    rng = np.random.default_rng(2)
    data = pd.DataFrame({"y": rng.normal(size=40), "x": rng.uniform(size=40), "f": list("ab") * 20,
                         "g": np.repeat(list("pqrst"), 8)}).astype({"f": "str", "g": "str"})
    monkeypatch.setattr(fm, "_with_categories", lambda *a: pytest.fail("a categorical was built"))
    monkeypatch.setattr(fm._Prepared, "frame", property(lambda self: pytest.fail("a frame was built")))
    fit = bc.lmm("y ~ x + f + (x | g)", data)
    assert list(fit.fixef.index) == ["(Intercept)", "x", "fb"]


def test_categorical_columns_with_unused_categories_are_recoded_without_pandas_warnings():
    # R's factor() keeps the categorical's order and drops its unused levels; pandas deprecates
    # rebuilding a categorical from categories that omit unused ones, so the codes are recoded
    import warnings

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=60), "f": pd.Categorical(rng.choice(["a", "b"], 60),
                                                                       categories=["c", "b", "a", "d"]),
                         "g": pd.Categorical(np.repeat(list("uvwxyz"), 10), categories=list("zyxwvuq"))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = bc.lmm("y ~ f + (1 | g)", data)
        predicted = fit.predict(data.head(4))
    assert list(fit.fixef.index) == ["(Intercept)", "fa"]  # base "b": the categorical's first level present
    assert fit.ranef()["level"].tolist()[:2] == ["z", "y"]
    assert np.isfinite(predicted["premium"]).all()


@pytest.mark.parametrize("formula", [
    "y ~ x", "y ~ x + z", "y ~ 0 + x + z", "y ~ x + z - 1", "y ~ 1 + z + x", "y ~ x + x", "y ~ `odd name` + x",
    "y ~ n", "y ~ x + f", "y ~ 0 + f + g", "y ~ g + 0 + f + x", "y ~ x + f + b", "y ~ t", "y ~ f - 1 + x",
    "y ~ x - z", "y ~ log(x) + z", "y ~ x:z", "y ~ f*x", "y ~ f*g", "y ~ 0 + f*g", "y ~ f:g", "y ~ 0 + f:g",
    "y ~ g:f + f", "y ~ x + f:x", "y ~ f:x", "y ~ 0 + x:f", "y ~ f*g*x", "y ~ (f + g):x", "y ~ (x + f)*g",
    "y ~ t*f", "y ~ f*b + x", "y ~ x*z + f", "y ~ f + f:g + g:f", "y ~ x:x + f", "y ~ f/g", "y ~ (f + g)^2",
    "y ~ f*g - f", "y ~ d + x", "y ~ d:f",
])
def test_plain_terms_design_equals_formulaics(formula, monkeypatch):
    # algebra on plain numeric columns and factors (main effects, ':' and '*') is built without
    # formulaic (its fixed cost is most of a small fit's set-up): the same matrix, names and
    # new-data transform as formulaic's (R's model.matrix: treatment contrasts when the term
    # without the factor is in the model, else every level; interactions by degree, the first
    # column varying fastest; "t" is numeric declared a factor, base 3)
    from bayescred import formula as fm

    rng = np.random.default_rng(3)
    data = pd.DataFrame({"y": rng.normal(size=24), "x": rng.uniform(1, 2, 24), "z": rng.normal(size=24),
                         "odd name": rng.normal(size=24), "n": rng.integers(0, 5, 24), "f": list("abc") * 8,
                         "g": pd.Categorical(list("vu") * 12, categories=["v", "u", "w"]), "b": [True, False] * 12,
                         "t": rng.choice([1.5, 3.0, 7.0], 24),
                         "d": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 3, 24), "D")})
    new = data.sample(7, random_state=1)
    options = dict(factors=["t"], base_levels={"t": 3.0})
    fast = fm.fixed_design(formula, data, **options)
    built_here = not any(t in formula for t in ("log", "- z", "/", "^", "- f"))
    assert isinstance(fast._spec, fm._PlainTerms) == built_here
    monkeypatch.setattr(fm._PlainTerms, "of", classmethod(lambda cls, pieces, leaves, frame: None))
    slow = fm.fixed_design(formula, data, **options)
    assert fast.names == slow.names
    np.testing.assert_array_equal(fast.X, slow.X)
    np.testing.assert_array_equal(fast.transform(new), slow.transform(new))
