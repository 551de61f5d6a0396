"""Property: no formula, filter or spec text runs code, and each gives a result or a
BayescredError, never another exception (issue 10). Generated: fragments of the formula and
filter languages mixed with Unicode look-alikes (fullwidth, Cyrillic), escapes (octal, hex,
\\N{...}), dunder names, backquotes, quotes, Python syntax, code payloads that would create a
canary file, random printable text and very long input. Derandomised: the same examples on
every run."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

import bayescred as bc
from bayescred import filters, sources
from bayescred.errors import BayescredError
from bayescred.spec import load_spec

CANARY = Path(tempfile.gettempdir()) / f"bayescred-canary-{os.getpid()}"
PAYLOAD = f"__import__('os').system('touch {CANARY}')"
OCTAL = "".join(f"\\{ord(c):03o}" for c in PAYLOAD)
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

NASTY = [
    PAYLOAD, f"'{OCTAL}'", f"'{PAYLOAD}'", f"@{PAYLOAD}", "__import__", "__class__", "__globals__", "__builtins__",
    "__subclasses__()", "os", "system", "eval", "exec", "np", "pd", "lambda", ".", "..", "@", "{", "}", "[", "]",
    ";", "#", "\\", "\\x41", "\\u0041", "\\N{LATIN SMALL LETTER A}", "\\100\\111", "ｅｖａｌ", "ｔｏ_ｆｒａｍｅ", "ｘ",
    "ехес", "х", "\u202e", "\x00", "\n", "\t", "`", "'", '"', "$", "!", "&", "?", "=", "==", "<-", "->",
]
FORMULA_BITS = [
    "y", "x", "g", "f", "`my col`", "`y`", "~", "+", "-", "*", "/", ":", "^", "**", "%in%", "|", "||", "(", ")",
    ",", "0", "1", "2", "2.5", "1e3", "I(", "log(", "exp(", "sqrt(", "C(", "Sum", "contr.sum", "Treatment(",
    "reference =", "poly(", "factor(", "as.factor(", "scale(", "offset(", "cbind(", "TRUE", " ",
]
VALID_TERMS = ["x", "f", "log(x + 3)", "poly(x, 2)", "factor(g)", "x:f", "C(f, Sum)", "I(x^2)", "`my col`",
               "scale(x)", "f/x", "x %in% f", "(1 | g)", "(x || g)", "(1 | g/f)", "(1 + x | g)", "offset(x)"]
FILTER_BITS = [
    "x", "f", "g", "`my col`", "`x`", "and", "or", "not", "in", "not in", "==", "!=", "<", "<=", ">", ">=",
    "(", ")", "[", "]", ",", "1", "-2.5", "'a'", '"b"', "True", "False", " ",
]


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 5)
    return pd.DataFrame({"y": rng.normal(size=30) + g, "x": rng.uniform(0.1, 2, 30), "g": g,
                         "f": rng.choice(["a", "b"], 30), "my col": rng.normal(size=30)})


DATA = _data()


def fragments(bits: list[str]) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(bits), st.sampled_from(NASTY), st.text(max_size=4))
    return st.lists(piece, max_size=25).map(" ".join)


formulas = st.one_of(
    st.tuples(fragments(FORMULA_BITS), fragments(FORMULA_BITS)).map(lambda t: f"{t[0]} ~ {t[1]}"),
    st.lists(st.sampled_from(VALID_TERMS), min_size=1, max_size=5).map(lambda t: "y ~ " + " + ".join(t)),
    st.tuples(st.lists(st.sampled_from(VALID_TERMS), min_size=1, max_size=3), st.sampled_from(NASTY)).map(
        lambda t: "y ~ " + " + ".join(t[0]) + " + " + t[1]),
    fragments(FORMULA_BITS),
    st.text(max_size=200),
    st.integers(1_000, 20_000).map(lambda n: "y ~ " + "x + " * (n // 4) + "x"),
    st.integers(10, 5_000).map(lambda n: "y ~ " + "(" * n + "x" + ")" * n),
    st.integers(10, 5_000).map(lambda n: "y ~ " + "I(" * n + "x" + ")" * n),
)
filter_texts = st.one_of(
    fragments(FILTER_BITS),
    st.text(max_size=200),
    st.integers(10, 5_000).map(lambda n: "not " * n + "x > 1"),
    st.integers(10, 5_000).map(lambda n: "(" * n + "x > 1" + ")" * n),
)


def _no_canary():
    assert not CANARY.exists(), "a generated text ran code"


@SETTINGS
@given(formulas)
@example("y ~ " + "x + " * 2_400 + "x")  # long chains: no RecursionError anywhere
@example("y ~ " + "(" * 4_000 + "x" + ")" * 4_000)
@example("y ~ I(x" + " + x" * 2_400 + ")")
@example(" ~ as.factor(")  # once an IndexError
def test_formulas_never_run_code(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the whole entry point: parse, fixed design, random terms, fit
            bc.lmm(text, DATA)
        except BayescredError:
            pass
    _no_canary()


@SETTINGS
@given(filter_texts)
@example(" and ".join(["x > 1"] * 990))
@example(" or ".join(["(x > 1)"] * 900))
@example("x in [" + ", ".join(["1"] * 3_000) + "]")
def test_filters_never_run_code(text):
    try:
        filters.apply(DATA, text)
    except BayescredError:
        pass
    _no_canary()


def _toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly."""
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                      else f"\\U{ord(c):08x}" for c in text)
    return f'"{escaped}"'


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(filter_texts)
def test_spec_filters_never_run_code(text):
    """A saved spec's filter, read back as `bayescred fit` and `bayescred report` do."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.toml"
        path.write_text('name = "hostile"\ntitle = "t"\nmodel = "hachemeister"\ndataset = "hachemeister"\n'
                        f"filter = {_toml_string(text)}\n[arguments]\ngroup = \"state\"\n", encoding="utf-8")
        try:
            sources.load_data(load_spec(path))
        except BayescredError:
            pass
    _no_canary()
