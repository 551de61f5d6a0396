"""One formula language for every bayescred model: R / lme4 formulas, never run as Python.

``response ~ fixed + (effects | group) + offset(expr)``, read by our own tokenizer and
parser (no ``eval`` of user text anywhere). The grammar and operator precedence are R's
(R Language Definition §10.4.2; lme4: Bates et al. 2015, §2.1):

* response: a column, a whitelisted transform (``log(y)``) or ``cbind(successes, failures)``;
* fixed part (Wilkinson-Rogers algebra): ``a + b``, ``a:b``, ``a*b`` = ``a + b + a:b``,
  ``a/b`` = ``a + a:b``, ``b %in% a`` = ``b:a``, ``(a + b)^2``, ``- term``, ``0``/``-1``/``+0``;
* factor expressions, from a whitelist only: ``factor(x)``, ``as.factor(x)``,
  ``C(x, Treatment(reference = "B"))``, ``C(x, Sum)``, ``C(x, Poly)``, ``C(x, Helmert)``
  (R spellings ``contr.sum`` etc. too), ``poly(x, k)`` (orthogonal, as R), ``scale(x)``,
  ``I(arithmetic)``, ``log``/``exp``/``sqrt``/``abs``/``log1p``/``log10``/``log2``;
  arithmetic is ``+ - * / ^`` on columns and numbers; backquotes for any column name;
* random part (lme4): ``(1 | g)``, ``(1 + x | g)``, ``(x || g)`` (uncorrelated),
  ``(1 | a/b)`` = ``(1 | a) + (1 | b:a)``, ``(1 | a:b)``.

Every name is checked against the whitelist and the data before anything is computed, and
the validated tree (not the user's text) is what reaches formulaic, which materialises the
fixed part (contrasts, ``poly``, ``scale`` with their learned state, for ``transform`` on
new data); algebra on plain columns alone (``x + zone``, ``zone * x``) is coded here
directly, the same way (``_PlainTerms``), without formulaic's fixed cost. Columns are coded
and named as R's ``model.matrix``: a categorical factor gets
treatment contrasts when the term without it is already in the model, full indicators
otherwise; names such as ``(Intercept)``, ``zoneB``, ``x:zoneB``, ``poly(x, 2)1``,
``factor(temperature)175``, ``C(a, Sum)1``.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import formulaic
import numpy as np
import pandas as pd
from formulaic.materializers import PandasMaterializer
from formulaic.materializers.types import ScopedFactor, ScopedTerm
from formulaic.parser.types import Factor
from formulaic.transforms import C as _formulaic_C
from formulaic.transforms import poly as _poly
from formulaic.transforms import scale as _scale
from formulaic.transforms.contrasts import HelmertContrasts, PolyContrasts, SumContrasts, TreatmentContrasts
from formulaic.utils.layered_mapping import LayeredMapping
from interface_meta import override

from .errors import (
    BayescredError,
    DataError,
    FormulaError,
    MissingColumnError,
    MissingValueError,
    NonFiniteError,
    NotNumericError,
)
from .portfolio import Columns

MAX_LENGTH = 10_000  # characters of a formula
MAX_DEPTH = 200  # depth of the syntax tree: nested parentheses, calls and chained operators

# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z.][A-Za-z0-9._]*)
  | (?P<quoted>`[^`\\]+`)
  | (?P<string>"[^"\\]*"|'[^'\\]*')
  | (?P<op>\|\||%in%|\*\*|[~+\-*/:^(),|=])
    """,
    re.VERBOSE | re.ASCII,
)


class _Token(NamedTuple):
    kind: str  # number | name | string | op | end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = "; write non-ASCII column names in backquotes" if ord(ch) > 127 else ""
            if ch in "`\\":
                hint = "; a backquoted name needs a closing backquote and no backslash"
            raise FormulaError(f"unexpected character {ch!r} at position {pos} of the formula{hint}")
        kind = m.lastgroup
        if kind == "quoted":
            out.append(_Token("name", m.group()[1:-1], pos))
        elif kind == "string":
            out.append(_Token("string", m.group()[1:-1], pos))
        elif kind != "space":
            out.append(_Token(kind, m.group(), pos))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    kwargs: tuple  # ((name, node), ...)


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * / : %in% ^ | ||
    left: object
    right: object


@dataclass(frozen=True)
class Unary:
    op: str
    operand: object


@dataclass(frozen=True)
class Paren:
    inner: object


# binding powers, R's precedence (R Language Definition §10.4.2): | < +- < */ < %in% < : < unary < ^
_BINARY = {"|": 1, "||": 1, "+": 2, "-": 2, "*": 3, "/": 3, "%in%": 4, ":": 5, "^": 7, "**": 7}
_UNARY_BP = 6


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.depths: dict[int, int] = {}  # id(node) -> depth of its subtree

    def node(self, node, *children):
        depth = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise FormulaError(f"the formula nests or chains more than {MAX_DEPTH} operations; split it up")
        self.depths[id(node)] = depth
        return node

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op",):
            raise FormulaError(f"expected {text!r} at position {tok.pos} of the formula, found {tok.text or 'the end'!r}")

    def expression(self, min_bp: int = 0):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"the formula nests or chains more than {MAX_DEPTH} operations; split it up")
        tok = self.take()
        if tok.kind == "op" and tok.text in "+-":
            operand = self.expression(_UNARY_BP)
            left = self.node(Unary(tok.text, operand), operand)
        else:
            left = self.primary(tok)
        while True:
            op = self.peek()
            if op.kind != "op" or op.text not in _BINARY:
                break
            bp = _BINARY[op.text]
            if bp <= min_bp and not (op.text in ("^", "**") and bp == min_bp):
                break
            self.take()
            right = self.expression(bp if op.text not in ("^", "**") else bp - 1)
            left = self.node(BinOp("^" if op.text == "**" else op.text, left, right), left, right)
        self.depth -= 1
        return left

    def primary(self, tok: _Token):
        if tok.kind == "number":
            return Num(float(tok.text))
        if tok.kind == "string":
            return Str(tok.text)
        if tok.kind == "name":
            if self.peek().text == "(" and self.peek().kind == "op":
                self.take()
                return self.call(tok.text)
            return Name(tok.text)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expression()
            self.expect(")")
            return self.node(Paren(inner), inner)
        where = f"at position {tok.pos}" if tok.kind != "end" else "at the end"
        raise FormulaError(f"unexpected {tok.text or 'end of formula'!r} {where} of the formula")

    def call(self, func: str) -> Call:
        args, kwargs = [], []
        if self.peek().text != ")":
            while True:
                tok = self.peek()
                nxt = self.tokens[min(self.i + 1, len(self.tokens) - 1)]
                if tok.kind == "name" and nxt.kind == "op" and nxt.text == "=":
                    self.i += 2
                    kwargs.append((tok.text, self.expression()))
                else:
                    if kwargs:
                        raise FormulaError(f"positional argument after a named one in {func}() at position {tok.pos}")
                    args.append(self.expression())
                if self.peek().text == ",":
                    self.take()
                    continue
                break
        self.expect(")")
        return self.node(Call(func, tuple(args), tuple(kwargs)), *args, *(v for _, v in kwargs))


# --------------------------------------------------------------------------- R deparse


@functools.lru_cache(maxsize=1024)
def _r_name(name: str) -> str:
    """A column name as R prints it: backquoted unless syntactic."""
    if re.fullmatch(r"(?:[A-Za-z]|\.(?![0-9]))[A-Za-z0-9._]*|\.", name) and name not in _R_RESERVED:
        return name
    return f"`{name}`"


_R_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE",
               "NULL", "Inf", "NaN", "NA", "in"}


def _r_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


def deparse(node) -> str:
    """R's deparse of a formula piece (the text R uses in model-matrix column names)."""
    if isinstance(node, Num):
        return _r_number(node.value)
    if isinstance(node, Str):
        return f'"{node.value}"'
    if isinstance(node, Name):
        return node.id if node.id in _BOOL else _r_name(node.id)
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    if isinstance(node, BinOp):
        if node.op in ("^", ":"):
            return f"{deparse(node.left)}{node.op}{deparse(node.right)}"
        return f"{deparse(node.left)} {node.op} {deparse(node.right)}"
    args = [deparse(a) for a in node.args] + [f"{k} = {deparse(v)}" for k, v in node.kwargs]
    return f"{node.func}({', '.join(args)})"


# --------------------------------------------------------------------------- whitelist

_NUMERIC = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log1p": np.log1p,
            "log10": np.log10, "log2": np.log2, "I": lambda v: v}
_CONTRASTS = {"Treatment": "Treatment", "treatment": "Treatment", "contr.treatment": "Treatment",
              "Sum": "Sum", "sum": "Sum", "contr.sum": "Sum", "Poly": "Poly", "poly": "Poly",
              "contr.poly": "Poly", "Helmert": "Helmert", "helmert": "Helmert", "contr.helmert": "Helmert"}
_BOOL = {"TRUE": True, "FALSE": False}
_FACTOR_FUNCS = ("factor", "as.factor", "C")
_STATEFUL = ("poly", "scale")


def _check_arith(node, where: str, columns: list) -> None:
    """Arithmetic inside a call: columns, numbers, + - * / ^, unary signs, numeric functions."""
    if isinstance(node, Num):
        return
    if isinstance(node, Name):
        _check_name(node.id)
        columns.append(node.id)
        return
    if isinstance(node, Paren):
        return _check_arith(node.inner, where, columns)
    if isinstance(node, Unary):
        return _check_arith(node.operand, where, columns)
    if isinstance(node, BinOp) and node.op in ("+", "-", "*", "/", "^"):
        _check_arith(node.left, where, columns)
        return _check_arith(node.right, where, columns)
    if isinstance(node, Call) and node.func in _NUMERIC:
        if len(node.args) != 1 or node.kwargs:
            raise FormulaError(f"{node.func}() takes exactly one argument, in {where}")
        return _check_arith(node.args[0], where, columns)
    if isinstance(node, Call) and node.func in _STATEFUL + _FACTOR_FUNCS:
        raise FormulaError(f"{node.func}() must stand on its own as a term, not inside an expression: {where}")
    if isinstance(node, Call):
        raise FormulaError(f"unknown function {node.func!r} in {where}; allowed: {', '.join(_allowed())}")
    if isinstance(node, Str):
        raise FormulaError(f"text literal {node.value!r} is not a number, in {where}")
    raise FormulaError(f"operator {getattr(node, 'op', '?')!r} cannot be used inside {where}")


def _allowed() -> list[str]:
    return sorted(set(_NUMERIC) | set(_STATEFUL) | {"factor", "as.factor", "C", "offset", "cbind"})


def _check_name(name: str) -> None:
    if name.startswith("__") or name == ".":
        raise FormulaError(f"{name!r} is not a usable column name in a formula")


def _literal(node):
    if isinstance(node, Num | Str):
        return node.value
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Num):
        return -node.operand.value
    if isinstance(node, Name) and node.id in _BOOL:
        return _BOOL[node.id]
    raise FormulaError(f"expected a number, text or TRUE/FALSE, found {deparse(node)!r}")


def _check_factor(node, columns: list) -> None:
    """A factor expression (a leaf of the formula algebra): column or whitelisted call."""
    where = deparse(node)
    if isinstance(node, Name):
        _check_name(node.id)
        columns.append(node.id)
        return
    if not isinstance(node, Call):
        return _check_arith(node, where, columns)
    kw = dict(node.kwargs)
    if node.func in ("factor", "as.factor"):
        if len(node.args) != 1 or kw or not isinstance(node.args[0], Name):
            raise FormulaError(f"{node.func}() takes one column name, in {where}")
        return _check_factor(node.args[0], columns)
    if node.func == "C":
        if not 1 <= len(node.args) <= 2 or kw or not isinstance(node.args[0], Name | Call):
            raise FormulaError(f"C() takes a column and a contrast, e.g. C(x, Sum), in {where}")
        if isinstance(node.args[0], Call) and node.args[0].func not in ("factor", "as.factor"):
            raise FormulaError(f"C() takes a column (or factor(column)), in {where}")
        _check_factor(node.args[0], columns)
        if len(node.args) == 2:
            _contrast(node.args[1], where)
        return
    if node.func == "poly":
        if len(node.args) != 2 or set(kw) - {"raw"}:
            raise FormulaError(f"poly() takes a column and a degree, e.g. poly(x, 2), in {where}")
        degree = _literal(node.args[1])
        if not (isinstance(degree, float) and degree == int(degree) and 1 <= degree <= 20):
            raise FormulaError(f"the degree of poly() must be a whole number from 1 to 20, in {where}")
        if "raw" in kw and not isinstance(_literal(kw["raw"]), bool):
            raise FormulaError(f"raw = must be TRUE or FALSE, in {where}")
        return _check_arith(node.args[0], where, columns)
    if node.func == "scale":
        if len(node.args) != 1 or set(kw) - {"center", "scale"}:
            raise FormulaError(f"scale() takes one column (center =, scale = TRUE/FALSE), in {where}")
        for v in kw.values():
            if not isinstance(_literal(v), bool):
                raise FormulaError(f"center = and scale = must be TRUE or FALSE, in {where}")
        return _check_arith(node.args[0], where, columns)
    return _check_arith(node, where, columns)


def _contrast(node, where: str) -> tuple[str, object]:
    """(contrast kind, reference level or None) of C()'s second argument."""
    if isinstance(node, Name) and node.id in _CONTRASTS:
        return _CONTRASTS[node.id], None
    if isinstance(node, Call) and _CONTRASTS.get(node.func) == "Treatment":
        kw = dict(node.kwargs)
        if len(node.args) + len(kw) != 1 or set(kw) - {"reference", "base"}:
            raise FormulaError(f"write the base level as Treatment(reference = \"B\"), in {where}")
        return "Treatment", _literal(node.args[0] if node.args else next(iter(kw.values())))
    raise FormulaError(
        f"unknown contrast {deparse(node)!r} in {where}; use Treatment, Treatment(reference = ...), Sum, Poly or Helmert"
    )


# --------------------------------------------------------------------------- formula structure


class RandomSpec(NamedTuple):
    """One random-effects term ``(expr | group)``; ``group`` is ``"a"`` or ``"b:a"``."""

    expr: str
    group: str
    correlated: bool


@dataclass
class Formula:
    """A parsed formula: texts as R deparses them, plus the checked syntax trees."""

    text: str
    response: str | None
    fixed: str
    random: list[RandomSpec]
    offsets: list[str]
    variables: list[str]  # every data column used, in order of appearance (response first)
    # the checked syntax trees behind the texts
    response_parts: list = field(repr=False, default_factory=list)  # one node, two for cbind()
    terms: list = field(repr=False, default_factory=list)  # (sign, node) of each fixed term
    random_parts: list = field(repr=False, default_factory=list)  # (effects node, group columns (tuple), correlated)
    offset_parts: list = field(repr=False, default_factory=list)


def _split_sum(node, sign: str = "+") -> list[tuple[str, object]]:
    """Top-level ``+``/``-`` pieces of an expression, with their signs."""
    if isinstance(node, BinOp) and node.op in "+-":
        right_sign = node.op if sign == "+" else ("+" if node.op == "-" else "-")
        return _split_sum(node.left, sign) + _split_sum(node.right, right_sign)
    if isinstance(node, Unary):
        return _split_sum(node.operand, node.op if sign == "+" else ("+" if node.op == "-" else "-"))
    return [(sign, node)]


def _bar(node):
    inner = node.inner if isinstance(node, Paren) else None
    return inner if isinstance(inner, BinOp) and inner.op in ("|", "||") else None


def _group_columns(node, where: str) -> list[list[str]]:
    """``a`` -> [[a]]; ``a:b`` -> [[a, b]]; ``a/b/c`` -> [[a], [b, a], [c, b, a]] (lme4)."""
    if isinstance(node, Paren):
        return _group_columns(node.inner, where)
    if isinstance(node, Name):
        _check_name(node.id)
        return [[node.id]]
    if isinstance(node, BinOp) and node.op == ":":
        left, right = _group_columns(node.left, where), _group_columns(node.right, where)
        if len(left) != 1 or len(right) != 1:
            raise FormulaError(f"cannot read the grouping factor in ({where}); write a/b or a:b")
        return [left[0] + right[0]]
    if isinstance(node, BinOp) and node.op == "/":
        outer = _group_columns(node.left, where)
        inner = _group_columns(node.right, where)
        if len(inner) != 1:
            raise FormulaError(f"cannot read the grouping factor in ({where})")
        return outer + [inner[0] + outer[-1]]
    raise FormulaError(f"the grouping factor of ({where}) must be column names joined by ':' or '/'")


def _formula_leaves(node, where: str, columns: list, leaves: list) -> None:
    """Walk the term algebra; check each factor expression and collect them in order."""
    if isinstance(node, Paren):
        return _formula_leaves(node.inner, where, columns, leaves)
    if isinstance(node, Unary):
        return _formula_leaves(node.operand, where, columns, leaves)
    if isinstance(node, BinOp):
        if node.op in ("|", "||"):
            raise FormulaError(f"a random-effects term must be a whole term in parentheses: ({deparse(node)})")
        if node.op == "^":
            power = node.right.inner if isinstance(node.right, Paren) else node.right
            if not (isinstance(power, Num) and power.value == int(power.value) and power.value >= 1):
                raise FormulaError(f"the power in {deparse(node)!r} must be a whole number")
            return _formula_leaves(node.left, where, columns, leaves)
        _formula_leaves(node.left, where, columns, leaves)
        return _formula_leaves(node.right, where, columns, leaves)
    if isinstance(node, Num):
        if node.value not in (0, 1):
            raise FormulaError(f"a number other than 0 or 1 cannot be a term: {deparse(node)!r} in {where!r}")
        return
    if isinstance(node, Str):
        raise FormulaError(f"text {node.value!r} cannot be a term of {where!r}")
    if isinstance(node, Call) and node.func in ("offset", "cbind"):
        raise FormulaError(f"{node.func}() cannot be used inside a term, in {where!r}")
    _check_factor(node, columns)
    leaves.append(node)


def parse(formula: str) -> Formula:
    """Parse and check ``formula`` (no data needed); raise FormulaError naming the problem.
    A text is parsed once (a fit's door and its designs, and every fit of the same formula,
    parse it; 20-40 µs a time): the syntax trees are immutable and each call gets its own lists."""
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be text, got {type(formula).__name__}")
    f = _parse(formula)
    return Formula(f.text, f.response, f.fixed, list(f.random), list(f.offsets), list(f.variables),
                   list(f.response_parts), list(f.terms), list(f.random_parts), list(f.offset_parts))


@functools.lru_cache(maxsize=256)
def _parse(formula: str) -> Formula:
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"the formula is {len(formula)} characters long; at most {MAX_LENGTH} are read")
    parser = _Parser(formula)
    if not any(t.kind == "op" and t.text == "~" for t in parser.tokens):
        raise FormulaError(f"formula needs a '~' between response and predictors: {formula!r}")
    lhs = None
    if not (parser.peek().kind == "op" and parser.peek().text == "~"):
        lhs = parser.expression()
    if not (parser.peek().kind == "op" and parser.peek().text == "~"):
        tok = parser.peek()
        if tok.kind == "end":
            raise FormulaError(f"formula needs a '~' between response and predictors: {formula!r}")
        raise FormulaError(f"unexpected {tok.text!r} at position {tok.pos} of the formula")
    parser.take()
    rhs = parser.expression()
    tok = parser.peek()
    if tok.kind != "end":
        raise FormulaError(f"unexpected {tok.text!r} at position {tok.pos} of the formula")

    columns: list[str] = []
    response, response_nodes = None, []
    if lhs is not None:
        response = deparse(lhs)
        if isinstance(lhs, Call) and lhs.func == "cbind":
            if len(lhs.args) != 2 or lhs.kwargs:
                raise FormulaError(f"cbind() takes two columns (successes, failures), in {response!r}")
            response_nodes = list(lhs.args)
        else:
            response_nodes = [lhs]
        for node in response_nodes:
            _check_arith(node, f"the response {response!r}", columns)

    fixed, random, offsets = [], [], []
    for sign, piece in _split_sum(rhs):
        bar = _bar(piece)
        if bar is not None:
            if sign == "-":
                raise FormulaError(f"cannot subtract a random-effects term: {deparse(piece)}")
            where = deparse(bar)
            for group in _group_columns(bar.right, where):
                random.append((bar.left, tuple(group), bar.op == "|"))
            continue
        if isinstance(piece, Call) and piece.func == "offset":
            if sign == "-" or len(piece.args) != 1 or piece.kwargs:
                raise FormulaError(f"write an offset as + offset(expression): {deparse(piece)}")
            _check_arith(piece.args[0], deparse(piece), columns)
            offsets.append(piece.args[0])
            continue
        fixed.append((sign, piece))

    leaves: list = []
    fixed_text = _join(fixed) if fixed else "1"
    for _, piece in fixed:
        _formula_leaves(piece, fixed_text, columns, leaves)
    specs = []
    for effects, group, correlated in random:
        where = f"{deparse(effects)} | {':'.join(group)}"
        _formula_leaves(effects, where, columns, leaves)
        columns += group
        if correlated:
            specs.append((effects, group, True))
        else:  # lme4's ||: one term per effect, intercept first
            pieces = _split_sum(effects)
            if any(isinstance(p, Num) and p.value == 1 and s == "+" for s, p in pieces) or not any(
                isinstance(p, Num) for s, p in pieces
            ):
                specs.append((Num(1), group, False))
            for s, p in pieces:
                if isinstance(p, Num):
                    continue
                if s == "-":
                    raise FormulaError(f"cannot subtract {deparse(p)!r} inside ({where})")
                specs.append((BinOp("+", Num(0), p), group, False))
    return Formula(
        text=formula,
        response=response,
        fixed=fixed_text,
        random=[RandomSpec(deparse(e), ":".join(g), c) for e, g, c in specs],
        offsets=[deparse(o) for o in offsets],
        variables=list(dict.fromkeys(columns)),
        response_parts=response_nodes,
        terms=fixed,
        random_parts=specs,
        offset_parts=offsets,
    )


def _join(pieces: list[tuple[str, object]]) -> str:
    text = ""
    for sign, node in pieces:
        body = deparse(node)
        text = (f"{text} {sign} {body}" if text else (body if sign == "+" else f"-{body}"))
    return text


# --------------------------------------------------------------------------- to formulaic


@functools.lru_cache(maxsize=1024, typed=True)  # typed: the labels 1, 1.0 and True are told apart
def _alias(column: str) -> str:
    """The identifier a column goes by inside formulaic: the hex of its UTF-8 bytes, so no
    character of a column name reaches formulaic's expression evaluator either."""
    return "_v" + str(column).encode().hex()


def _unalias(text: str) -> str:
    return re.sub(r"_v((?:[0-9a-f]{2})+)", lambda m: bytes.fromhex(m.group(1)).decode(errors="replace"), text)


def _py(node, formula_level: bool) -> str:
    """The checked tree as formulaic input: term algebra at formula level, Python inside calls."""
    if isinstance(node, Num):
        return _r_number(node.value) if formula_level else repr(node.value)
    if isinstance(node, Str):
        return repr(node.value)
    if isinstance(node, Name):
        if not formula_level and node.id in _BOOL:
            return repr(_BOOL[node.id])
        return _alias(node.id)
    if isinstance(node, Paren):
        return f"({_py(node.inner, formula_level)})"
    if isinstance(node, Unary):
        return f"{node.op}{_py(node.operand, formula_level)}"
    if isinstance(node, BinOp):
        op = {"%in%": ":", "^": "**"}.get(node.op, node.op) if formula_level else ("**" if node.op == "^" else node.op)
        return f"({_py(node.left, formula_level)} {op} {_py(node.right, formula_level)})"
    if node.func in ("factor", "as.factor"):
        return f"r_factor({_py(node.args[0], False)})"
    if node.func == "C":
        kind, reference = _contrast(node.args[1], deparse(node)) if len(node.args) == 2 else ("Treatment", None)
        return f"r_C({_py(node.args[0], False)}, {kind!r}, {reference!r})"
    if node.func == "poly":
        raw = _literal(dict(node.kwargs)["raw"]) if node.kwargs else False
        return f"poly({_py(node.args[0], False)}, {int(node.args[1].value)}, raw={raw!r})"
    if node.func == "scale":
        kw = {k: _literal(v) for k, v in node.kwargs}
        return f"scale({_py(node.args[0], False)}, center={kw.get('center', True)!r}, scale={kw.get('scale', True)!r})"
    return f"{node.func}({_py(node.args[0], False)})"


def _factor_expr(node) -> str:
    """The expression formulaic records for a factor (its normalised text)."""
    if isinstance(node, Name):
        return _alias(node.id)
    for term in formulaic.Formula(_py(node, True)):
        for factor in term.factors:
            if factor.eval_method is not Factor.EvalMethod.LITERAL:
                return factor.expr
    raise FormulaError(f"cannot read the term {deparse(node)!r}")  # pragma: no cover - every leaf is a factor


# --------------------------------------------------------------------------- transforms


def r_levels(values: pd.Series) -> list:
    """Levels as R's ``factor()`` sets them: a categorical's own order (levels present),
    otherwise the sorted distinct values."""
    return _factor_of(values)[0]


def _factor_of(values: pd.Series) -> tuple[list, np.ndarray | None]:
    """R's ``factor()`` of a column: its levels (:func:`r_levels`) and each row's code into
    them where one hashing pass gives them (numeric and text columns), else None."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique())
        return [c for c in values.cat.categories if c in present], None
    sorted_codes = None if values.dtype.kind == "c" else _sorted_codes(values)  # Python cannot order complex numbers
    if sorted_codes is not None:
        codes, distinct = sorted_codes
        return list(distinct), codes
    distinct = pd.unique(values.dropna())
    try:
        return sorted(distinct), None
    except TypeError:
        return sorted(distinct, key=lambda v: (type(v).__name__, str(v))), None


_TEXT_ROWS = 1000  # up to this many rows, text is hashed as Python strings (see _sorted_codes)


def _sorted_codes(values: pd.Series) -> tuple[np.ndarray, object] | None:
    """``pd.factorize(values, sort=True)`` for numeric and text dtypes: each row's code into
    the sorted distinct values (-1 where missing) and those values (an array), by one
    hashing pass and a sort of the distinct values only, as pandas does it, without the
    Index pandas wraps them in (0.1 ms for a text column). A short text column is hashed
    and sorted as Python strings (code-point order, pyarrow's UTF-8 byte order): without
    missing values by a set and a dict look-up a row (:func:`_complete_text`; inside a fit
    ~35 µs a column less than pandas' factorize, and 3x faster than pyarrow's own
    dictionary encoding), with them by pandas' factorize; a long one by pyarrow, without a
    Python object a row. None for other dtypes (object, whose values may mix types,
    categoricals, dates)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind not in "biufcSU":  # numbers and text; an object column's values may mix types
            return None
        array = values.to_numpy()
    elif isinstance(dtype, pd.StringDtype) and len(values) <= _TEXT_ROWS:
        text = _complete_text(values)
        if text is not None:
            distinct = sorted(set(text))
            index = dict(zip(distinct, range(len(distinct))))
            return np.fromiter(map(index.__getitem__, text), np.int64, len(text)), np.array(distinct, dtype=object)
        array = values.to_numpy()
    elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        array = values.array
    else:
        return None
    codes, distinct = pd.factorize(array)
    order = distinct.argsort()
    return _recode(codes, order), distinct[order]


def _complete_text(values: pd.Series) -> list | None:
    """A text column's strings, None when a value is missing; pyarrow's storage hands them
    over in one call (pandas' ``to_numpy`` takes ~25 Python calls of its own)."""
    if values.dtype.storage == "pyarrow":
        import pyarrow as pa

        array = pa.array(values.array)
        return None if array.null_count else array.to_pylist()
    return None if values.array.isna().any() else values.to_numpy().tolist()


def _recode(codes: np.ndarray, order) -> np.ndarray:
    """Codes into ``values`` as codes into ``values[order]`` (-1, a missing value, stays -1)."""
    lookup = np.full(len(order) + 1, -1, dtype=np.int64)  # the last slot is where -1 points
    lookup[order] = np.arange(len(order))
    return lookup[codes]


def _with_categories(s: pd.Series, categories) -> pd.Series:
    """``s`` as a categorical with exactly ``categories`` (whose values it holds); a
    categorical's codes are recoded (pandas no longer rebuilds one from categories that omit
    its unused ones)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.set_categories(categories)
    return pd.Series(pd.Categorical(s, categories=categories), index=s.index)


def _as_categorical(values) -> pd.Series:
    s = pd.Series(getattr(values, "__wrapped__", values))
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s
    return pd.Series(pd.Categorical(s, categories=r_levels(s)), index=s.index)


class _RTreatment(TreatmentContrasts):
    """Treatment contrasts whose base level may be given as the level's text (``"175"``)."""

    @override
    def _find_base_index(self, levels):
        if self.base is None or self.base is TreatmentContrasts.base:
            return 0
        for i, lev in enumerate(levels):
            if lev == self.base:
                return i
        for i, lev in enumerate(levels):
            if r_level(lev) == r_level(self.base):
                return i
        raise DataError(f"base level {self.base!r} is not a level of the factor (levels: {[r_level(v) for v in levels]})")


_CONTRAST_CLASSES = {"Sum": SumContrasts, "Poly": PolyContrasts, "Helmert": HelmertContrasts}


def _r_factor(values):
    return _formulaic_C(_as_categorical(values), contrasts=_RTreatment())


def _r_C(values, kind: str, reference):
    contrasts = _RTreatment(base=reference) if kind == "Treatment" else _CONTRAST_CLASSES[kind]()
    return _formulaic_C(_as_categorical(values), contrasts=contrasts)


SAFE_CONTEXT = {**_NUMERIC, "r_factor": _r_factor, "r_C": _r_C, "poly": _poly, "scale": _scale}


def r_level(value) -> str:
    """A level as R prints it in a column name: ``175``, ``1.5``, ``TRUE``, ``B``."""
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float | np.floating):
        return _r_number(float(value)) if math.isfinite(value) else str(value)
    return str(value)


# --------------------------------------------------------------------------- materializer


class _RMaterializer(PandasMaterializer):
    """formulaic's pandas materializer with R's coding rule and R's column names, and a
    context holding only the data and our whitelisted transforms (no numpy module)."""

    REGISTER_NAME = "bayescred-r"  # registered by name only, never picked for plain pandas input

    @override
    def __init__(self, data, context=None, *, display=None, order=None, **params):
        super().__init__(data, context=context, display=display, order=order, **params)
        self.display = display or {}
        self.order = order or []
        self.layered_context = LayeredMapping(
            LayeredMapping(self.data_context, name="data"), LayeredMapping(SAFE_CONTEXT, name="transforms")
        )

    def _name(self, expr: str) -> str:
        return self.display.get(expr, expr)

    def _rank(self, evaled) -> int:
        name = self._name(evaled.expr)
        return self.order.index(name) if name in self.order else len(self.order)

    @override
    def _get_scoped_terms(self, terms, ensure_full_rank=True):
        """R's rule (Chambers & Hastie 1992, §2.4.1; model.matrix): a factor F in term T
        is coded by contrasts when T without F is already in the model (the intercept is
        the empty term), otherwise by indicators of all its levels."""
        present: set[frozenset] = set()
        for term in terms:
            evaled = [self.factor_cache[f.expr] for f in term.factors]
            evaled = [e for e in evaled if e.values.__wrapped__ is not None]
            scale = 1
            for e in evaled:
                if e.metadata.kind is Factor.Kind.CONSTANT:
                    scale *= e.values
            factors = sorted((e for e in evaled if e.metadata.kind is not Factor.Kind.CONSTANT), key=self._rank)
            names = frozenset(e.expr for e in factors)
            scoped = []
            for e in factors:
                if e.metadata.spans_intercept:
                    rest = names - {e.expr}
                    reduced = rest in present
                    if not rest:
                        present.add(frozenset())  # only the first main effect of a no-intercept model is full
                    scoped.append(ScopedFactor(e, reduced=reduced))
                else:
                    scoped.append(ScopedFactor(e))
            present.add(names)
            yield term, [ScopedTerm(factors=scoped, scale=scale)]

    @override
    def _flatten_encoded_evaled_factor(self, name, values):
        label = self._name(name)
        if not isinstance(values, dict):
            return {label: values}
        metadata = getattr(values, "__formulaic_metadata__", None)
        fmt = metadata.get_format() if metadata is not None else ""
        # R numbers the columns of sum and Helmert contrasts and of matrices (poly) 1, 2, ...
        numbered = "[S." in fmt or "[H." in fmt or (metadata is not None and metadata.kind is not Factor.Kind.CATEGORICAL)
        fields = [f for f in values if not (isinstance(f, str) and f.startswith("__"))]
        return {f"{label}{i if numbered else r_level(f)}": values[f] for i, f in enumerate(fields, 1)}


# --------------------------------------------------------------------------- designs


def _to_pandas(data) -> pd.DataFrame | Columns:
    """``data`` as pandas (a :class:`~bayescred.portfolio.Columns` view of a pandas frame as it is)."""
    if isinstance(data, pd.DataFrame | Columns):
        return data
    import narwhals.stable.v2 as nw

    from .errors import NotAFrameError

    try:
        frame = nw.from_native(data)
    except TypeError as exc:
        raise NotAFrameError(f"expected a data frame (pandas, polars, DuckDB, ...), got {type(data).__name__}") from exc
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    return frame.to_pandas()


def check_columns(parsed: Formula, columns) -> None:
    """MissingColumnError for the first formula variable not among ``columns`` (as text)."""
    text = isinstance(columns, pd.Index) and columns.inferred_type == "string"
    if text and all(v in columns for v in parsed.variables):
        return  # text labels: a hash look-up each, no set of the (maybe many) names
    cols = set(map(str, columns))
    for name in parsed.variables:
        if name not in cols:
            raise MissingColumnError(
                f"used in the formula but not in the data; available columns: {', '.join(map(str, columns))}",
                column=name,
            )


def _is_numeric(dtype) -> bool:
    """A numeric, non-boolean dtype (numpy's read from its kind: the pandas predicates cost ~2 µs)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "iufc"
    if isinstance(dtype, pd.StringDtype):  # pandas' text
        return False
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


class _Prepared:
    """The columns a design reads, under their aliases (no column name reaches formulaic),
    as the data holds them; a factor with its levels in R's order (the base level first)
    and each row's code into them. formulaic's frame, every factor a categorical, is built
    only when formulaic is called: a categorical and a frame cost ~0.1 ms each, more than
    a plain design (:class:`_PlainTerms`) reading the codes."""

    def __init__(self, index: pd.Index, columns: dict, levels: dict, codes: dict):
        self.index, self.columns, self.levels, self._codes = index, columns, levels, codes
        self._categoricals: dict[str, pd.Series] = {}

    def __len__(self) -> int:
        return len(self.index)

    def categorical(self, alias: str) -> pd.Series:
        if alias not in self._categoricals:
            self._categoricals[alias] = _with_categories(self.columns[alias], self.levels[alias])
        return self._categoricals[alias]

    def codes(self, alias: str) -> np.ndarray:
        """Each row's code into the factor's levels (the categorical's, where no hashing pass gave them)."""
        codes = self._codes.get(alias)
        return self.categorical(alias).cat.codes.to_numpy() if codes is None else codes

    def labels(self, alias: str) -> list[str]:
        """The factor's levels as R prints them in column names: as the categorical holds
        them (pandas boxes a numpy date as a Timestamp), which for the numeric and text
        levels of a hashing pass is as they are."""
        levels = self.levels[alias] if self._codes.get(alias) is not None else self.categorical(alias).cat.categories
        return [r_level(v) for v in levels]

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """formulaic's input."""
        out = {alias: (self.categorical(alias) if alias in self.levels else s).reset_index(drop=True)
               for alias, s in self.columns.items()}
        return pd.DataFrame(out, index=pd.RangeIndex(len(self)))


def _prepare(columns: dict, index: pd.Index, factors, base_levels: dict, levels: dict | None) -> tuple[_Prepared, dict]:
    """The used ``columns`` (as :func:`_read` returns them), every factor column with its
    levels in R's order (the base level first); ``levels`` fixes them (new data), otherwise
    they are learned."""
    learned, out, factor_levels, codes = {}, {}, {}, {}
    for col, s in columns.items():
        alias = _alias(col)
        out[alias] = s
        if levels is not None:
            if col in levels:
                known = levels[col]
                unseen = ~s.isin(known) & s.notna()
                if unseen.any():
                    raise DataError(
                        f"levels not seen in the fit (known: {[r_level(v) for v in known]})",
                        col,
                        list(index[unseen.to_numpy()]),
                    )
                factor_levels[alias] = known
        elif col in factors or col in base_levels or not _is_numeric(s.dtype):
            levs, codes[alias] = _factor_of(s)
            if col in base_levels:
                base = match_level(col, levs, base_levels[col])
                order = [levs.index(base)] + [i for i, v in enumerate(levs) if v != base]
                levs = [levs[i] for i in order]
                codes[alias] = None if codes[alias] is None else _recode(codes[alias], order)
            learned[col] = factor_levels[alias] = levs
    return _Prepared(index, out, factor_levels, codes), learned


def match_level(column: str, levels: list, wanted):
    """The level of ``column`` equal to ``wanted``, or whose text R prints the same (``4`` and
    ``"4"``); DataError naming the column and its levels otherwise."""
    for lev in levels:
        if lev == wanted:
            return lev
    for lev in levels:
        if r_level(lev) == r_level(wanted):
            return lev
    raise DataError(f"base level {wanted!r} is not a level of the factor (levels: {[r_level(v) for v in levels]})", column)


def _read(data: pd.DataFrame | Columns, columns) -> dict[str, pd.Series]:
    """``columns`` of ``data`` (through a :class:`~bayescred.portfolio.Columns` view: each
    read and checked once), MissingValueError naming the rows of any missing value."""
    view = data if isinstance(data, Columns) else Columns(data)
    out = {}
    for col in columns:
        out[col] = view[col]
        bad = view.missing(col)
        if bad.any():
            raise MissingValueError("has missing values", col, list(view.index[bad]))
    return out


def _materialise_error(exc: Exception, what: str) -> BayescredError:
    if isinstance(exc, BayescredError):
        return exc
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, BayescredError):
        cause = cause.__cause__
    if isinstance(cause, BayescredError):
        return cause
    reason = _unalias(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
    return FormulaError(f"cannot compute {what}: {reason}")


def _materialise(spec, frame: pd.DataFrame, what: str):
    """``spec``'s model matrix on ``frame``, or a BayescredError naming ``what`` (values such
    as log(0) are left for the caller, which names the rows)."""
    try:
        with np.errstate(all="ignore"):
            return spec.get_model_matrix(frame, context={})
    except Exception as exc:
        raise _materialise_error(exc, what) from exc


class _Expression:
    """One numeric expression (response part, offset), materialised by formulaic."""

    def __init__(self, node, frame: pd.DataFrame, display: str):
        self.display = display
        if not isinstance(node, Name | Call):  # arithmetic such as n - s, not term algebra
            node = Call("I", (node,), ())
        spec = formulaic.ModelSpec(
            formulaic.Formula(f"0 + {_py(node, True)}"),
            materializer=_RMaterializer,
            materializer_params={"display": {_factor_expr(node): display}},
            na_action="raise",
            output="pandas",
        )
        mm = self._evaluate(spec, frame)
        self.spec, self.values = mm.model_spec, mm.iloc[:, 0].to_numpy(dtype=float)

    def _evaluate(self, spec, frame: pd.DataFrame):
        mm = _materialise(spec, frame, self.display)
        if mm.shape[1] != 1:
            raise NotNumericError("must be numeric, not categorical", column=self.display)
        return mm

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        return self._evaluate(self.spec, frame).iloc[:, 0].to_numpy(dtype=float)


def _finite(values: np.ndarray, name: str, index) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise NonFiniteError("is infinite or undefined (e.g. log of a value <= 0)", name, list(index[bad]))


@dataclass
class FixedDesign:
    """The fixed-effects design of a formula on one data set (R's model.frame + model.matrix).

    ``y``: response, (n,) or (n, 2) for ``cbind``; None without a response. ``X``: (n, p)
    with R's column ``names``. ``offset``: sum of the ``offset()`` terms (zeros if none).
    ``transform(newdata)`` rebuilds X on new rows with the learned levels, contrasts and
    ``scale``/``poly`` state; ``offset_for(newdata)`` the offsets.
    """

    formula: Formula
    y: np.ndarray | None
    X: np.ndarray
    names: list[str]
    offset: np.ndarray
    response_name: str | None
    levels: dict  # factor column -> its levels (base first)
    _spec: object = field(repr=False, default=None)
    _offsets: list = field(repr=False, default_factory=list)

    def _frame(self, newdata) -> _Prepared:
        data = _to_pandas(newdata)
        needed = _fixed_columns(self.formula)
        for col in needed:
            if col not in data.columns:
                raise MissingColumnError("needed for prediction but not in the new data", column=col)
        frame, _ = _prepare(_read(data, needed), data.index, (), {}, self.levels)
        return frame

    def transform(self, newdata) -> np.ndarray:
        """X for the rows of ``newdata`` (same columns, coding and names as the fit)."""
        frame = self._frame(newdata)
        if self._spec is None:
            return np.ones((len(frame), 0))
        data = frame if isinstance(self._spec, _PlainTerms) else frame.frame
        return _materialise(self._spec, data, "the fixed effects on the new data").to_numpy(dtype=float)

    def offset_for(self, newdata) -> np.ndarray:
        frame = self._frame(newdata)
        total = np.zeros(len(frame))
        for expression in self._offsets:
            total += expression(frame.frame)
        return total


def _fixed_columns(parsed: Formula) -> list[str]:
    cols: list[str] = []
    for _, piece in parsed.terms:
        _formula_leaves(piece, parsed.fixed, cols, [])
    for node in parsed.offset_parts:
        _check_arith(node, "offset", cols)
    return list(dict.fromkeys(cols))


_CONSTANT_DESIGNS: dict[tuple, tuple] = {}  # term algebra (immutable trees) -> (spec, its one row, names)


def _rhs_design(pieces, leaves: list, columns: list, frame: _Prepared, what: str):
    """formulaic ModelSpec and matrix of the term algebra ``pieces`` with R's coding and names;
    ``leaves`` and ``columns``: its factor expressions and the columns they read, as
    :func:`_formula_leaves` collects them. Algebra that reads no column (``1``, the effects of
    ``(1 | g)``) has the same row everywhere: it is built once on one row (formulaic's fixed
    cost is milliseconds a fit)."""
    if not columns:
        key = tuple(pieces)
        if key not in _CONSTANT_DESIGNS:
            spec, row, names = _rhs_materialise(pieces, leaves, pd.DataFrame(index=pd.RangeIndex(1)), what)
            _CONSTANT_DESIGNS[key] = (spec, row, names)
        spec, row, names = _CONSTANT_DESIGNS[key]
        return spec, np.repeat(row, len(frame), axis=0), names
    main = _PlainTerms.of(pieces, leaves, frame)
    if main is not None:
        return main, main.matrix(frame), main.names
    return _rhs_materialise(pieces, leaves, frame.frame, what)


def _plain_terms(node) -> list[tuple[str, ...]] | None:
    """The terms of algebra on plain column names with ``+``, ``:`` and ``*`` (``a*b`` = ``a +
    b + a:b``), each as its columns in the order written; None for anything else."""
    if isinstance(node, Paren):
        return _plain_terms(node.inner)
    if isinstance(node, Name):
        return [(node.id,)]
    if not (isinstance(node, BinOp) and node.op in ("+", ":", "*")):
        return None
    left, right = _plain_terms(node.left), _plain_terms(node.right)
    if left is None or right is None:
        return None
    if node.op == "+":
        return left + right
    crossed = [tuple(dict.fromkeys(a + b)) for b in right for a in left]
    return crossed if node.op == ":" else left + right + crossed


@dataclass(frozen=True)
class _PlainTerms:
    """The design of algebra on plain columns (``x + zone``, ``0 + f + x``, ``recipe *
    temperature``, ``x:zone``), built without formulaic (its fixed cost is 1-4 ms a design,
    most of a small REML fit's set-up), by R's model.matrix rules as ``_RMaterializer``
    applies them: terms by degree, the formula's order within a degree, each term's
    columns in the order they first appear in the formula; a numeric column as it is; a
    factor (a categorical column of the prepared frame, base level first) by treatment
    contrasts when the term without it is already in the model (the intercept is the empty
    term), else by indicators of all its levels; an interaction's columns are the products
    of its columns' codings, the first column varying fastest, named ``a:b``. Equal to
    formulaic's design (tests/test_formula.py). Reads the prepared columns (:class:`_Prepared`)."""

    intercept: bool
    terms: tuple  # per term, per column: (alias in the prepared frame, level codes indicated; None: numeric)
    names: list

    @classmethod
    def of(cls, pieces, leaves, frame: _Prepared):
        """The design of ``pieces`` (whose factor expressions, in the formula's order, are
        ``leaves``, as :func:`_formula_leaves` collects them) when it is of this kind, else None."""
        numbers = [(sign, node.value) for sign, node in pieces if isinstance(node, Num)]
        if len(numbers) > 1 or (numbers and numbers[0] not in (("+", 1), ("+", 0), ("-", 1))):
            return None
        intercept = not numbers or numbers[0] == ("+", 1)
        written = []
        for sign, node in pieces:
            if isinstance(node, Num):
                continue
            terms = _plain_terms(node) if sign == "+" else None
            if terms is None:
                return None
            written += terms
        rank = {leaf.id: i for i, leaf in reversed(list(enumerate(leaves)))}
        unique = {frozenset(t): t for t in reversed(written)}  # the first occurrence of each set
        terms = sorted(dict.fromkeys(unique[frozenset(t)] for t in written), key=len)
        present = {frozenset()} if intercept else set()
        coded, names = [], ["(Intercept)"] * intercept
        for term in terms:
            columns, labels = [], []
            for name in sorted(term, key=rank.__getitem__):
                column = _alias(name)
                if column not in frame.columns:
                    return None
                values, label = frame.columns[column], deparse(Name(name))
                if column in frame.levels:
                    rest = frozenset(term) - {name}
                    levels = frame.labels(column)
                    codes = tuple(range(1 if rest in present else 0, len(levels)))
                    if not rest:  # only the first main effect of a model without intercept is full
                        present.add(frozenset())
                    columns.append((column, codes))
                    labels.append([f"{label}{levels[c]}" for c in codes])
                elif _is_numeric(values.dtype):
                    columns.append((column, None))
                    labels.append([label])
                else:
                    return None
            present.add(frozenset(term))
            coded.append(tuple(columns))
            names += [":".join(reversed(combo)) for combo in itertools.product(*reversed(labels))]
        return cls(intercept, tuple(coded), names) if coded else None

    def matrix(self, frame: _Prepared) -> np.ndarray:
        out = [np.ones(len(frame))] if self.intercept else []
        for term in self.terms:
            parts = []
            for column, codes in term:
                if codes is None:
                    parts.append([frame.columns[column].to_numpy(dtype=float)])
                else:
                    observed = frame.codes(column)
                    parts.append([(observed == c).astype(float) for c in codes])
            out += [functools.reduce(np.multiply, reversed(combo)) for combo in itertools.product(*reversed(parts))]
        return np.column_stack(out)

    def get_model_matrix(self, frame: _Prepared, context=None) -> pd.DataFrame:
        """As formulaic's ModelSpec (FixedDesign.transform on new data)."""
        return pd.DataFrame(self.matrix(frame), columns=self.names)


def _rhs_materialise(pieces, leaves, frame: pd.DataFrame, what: str):
    """``_rhs_design``'s formulaic step on ``frame``."""
    display = {_factor_expr(leaf): deparse(leaf) for leaf in leaves}
    order = list(dict.fromkeys(deparse(leaf) for leaf in leaves))
    text = " ".join(f"{sign} {_py(node, True)}" for sign, node in pieces) if pieces else "1"
    text = text[2:] if text.startswith("+ ") else text
    if text.startswith("- "):
        text = "1 " + text  # R: a leading '- term' still keeps the intercept
    spec = formulaic.ModelSpec(
        formulaic.Formula(text),
        materializer=_RMaterializer,
        materializer_params={"display": display, "order": order},
        na_action="raise",
        output="pandas",
    )
    mm = _materialise(spec, frame, what)
    names = []
    for s in mm.model_spec.structure:
        intercept = all(f.eval_method is Factor.EvalMethod.LITERAL for f in s.term.factors)
        names += ["(Intercept)"] if intercept and s.columns else list(s.columns)
    return mm.model_spec, mm.to_numpy(dtype=float), names


def _response_part(node, frame: _Prepared) -> np.ndarray:
    """One part of the response: a numeric column as it is, any other expression by formulaic."""
    if isinstance(node, Name) and _alias(node.id) not in frame.levels:
        return frame.columns[_alias(node.id)].to_numpy(dtype=float)
    return _Expression(node, frame.frame, deparse(node)).values


def fixed_design(formula, data, *, factors=(), base_levels=None) -> FixedDesign:
    """Response, fixed-effects design and offsets of ``formula`` on ``data``.

    ``factors``: numeric columns to treat as categorical (as ``factor(x)`` would);
    ``base_levels``: ``{column: level}``, the reference level of a factor (R's ``relevel``);
    naming a column here makes it a factor too.
    """
    parsed = formula if isinstance(formula, Formula) else parse(formula)
    data = _to_pandas(data)
    factors = (factors,) if isinstance(factors, str) else tuple(factors or ())
    if base_levels is not None and not isinstance(base_levels, Mapping):
        raise FormulaError(f"base_levels must map columns to levels, e.g. {{'zone': 'B'}}, got {type(base_levels).__name__}")
    base_levels = dict(base_levels or {})
    for col in (*factors, *base_levels):
        if col not in data.columns:
            raise MissingColumnError(f"declared a factor but not in the data; available columns: {', '.join(map(str, data.columns))}", col)
    check_columns(parsed, data.columns)
    used = _read(data, dict.fromkeys([*parsed.variables, *factors, *base_levels]))
    leaves: list = []
    columns: list[str] = []
    for _, piece in parsed.terms:
        _formula_leaves(piece, parsed.fixed, columns, leaves)
    read = set(columns)  # with the response's and offsets' below; the grouping columns are the random terms' business
    for what, nodes in (("the response", parsed.response_parts), ("an offset", parsed.offset_parts)):
        cols: list[str] = []
        for node in nodes:
            _check_arith(node, what, cols)
        for col in cols:
            if not _is_numeric(used[col].dtype):
                raise NotNumericError(f"{what} must be numeric, found dtype {used[col].dtype}", column=col)
        read.update(cols)
    prepared = {c: s for c, s in used.items() if c in read or c in factors or c in base_levels}
    frame, levels = _prepare(prepared, data.index, factors, base_levels, None)
    y = None
    if parsed.response_parts:
        parts = [_response_part(node, frame) for node in parsed.response_parts]
        for part, node in zip(parts, parsed.response_parts):
            if not np.isfinite(part).all():
                _finite(part, deparse(node), data.index)
        y = parts[0] if len(parts) == 1 else np.column_stack(parts)
    offsets = [_Expression(node, frame.frame, f"offset({deparse(node)})") for node in parsed.offset_parts]
    total = np.zeros(len(frame))
    for expression in offsets:
        _finite(expression.values, expression.display, data.index)
        total += expression.values
    spec, X, names = _rhs_design(parsed.terms, leaves, columns, frame, parsed.fixed)
    if not np.isfinite(X).all():
        for j, name in enumerate(names):
            _finite(X[:, j], name, data.index)
    return FixedDesign(parsed, y, X, names, total, parsed.response, levels, spec, offsets)


# --------------------------------------------------------------------------- random terms


@dataclass
class RandomTerm:
    """One random-effects term ``(expr | group)``: its design ``X`` (n x k) per row and
    the grouping factor (integer ``codes`` into ``levels``)."""

    group: str
    names: list[str]
    X: np.ndarray
    codes: np.ndarray
    levels: list[str]
    columns: tuple = ()  # the grouping columns
    effects: FixedDesign | None = field(default=None, repr=False)

    def design_for(self, data) -> tuple[np.ndarray, np.ndarray]:
        """The term's effects design and level codes (-1 for unseen levels) on new data."""
        data = _to_pandas(data)
        X = self.effects.transform(data)
        index = {lev: i for i, lev in enumerate(self.levels)}
        codes = group_labels(self.columns, data).map(index).fillna(-1).to_numpy(dtype=np.int64)
        return X, codes

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)


def grouping_factor(columns, data: pd.DataFrame, coded: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer codes and labels of a grouping factor; several columns are the interaction
    of the observed combinations (labels ``"a_level:b_level"``, ordered as R's
    ``interaction()`` with the first factor varying fastest). ``data``: a frame, or its
    columns as read (:func:`_read`); ``coded``: each column's codes and levels once coded
    (terms such as (1 | a/b) share a column)."""
    coded = {} if coded is None else coded
    for p in columns:
        if p not in coded:
            coded[p] = _level_codes(data[p])
    if len(columns) == 1:
        codes, levels = coded[columns[0]]
        return codes, [str(v) for v in levels]
    code, stride, keys = 0, 1, []
    for p in columns:
        c, levs = coded[p]
        code += stride * c
        stride *= max(len(levs), 1)
        keys.append(levs)
    observed, codes = np.unique(code, return_inverse=True)
    labels = []
    for oc in observed:
        bits = []
        for levs in keys:
            bits.append(str(levs[oc % len(levs)]))
            oc //= len(levs)
        labels.append(":".join(bits))
    return codes.astype(np.int64), labels


def _level_codes(values: pd.Series) -> tuple[np.ndarray, list]:
    """Each row's code into the column's levels in R's ``factor()`` order (:func:`r_levels`;
    every level occurs). A numeric or string column takes one hashing pass (its levels as an
    Index of them iterates them: numpy's as Python values); object columns (whose values may
    mix types), categoricals and dates take r_levels itself."""
    sorted_codes = _sorted_codes(values)
    if sorted_codes is not None:
        codes, distinct = sorted_codes
        return codes, distinct.tolist() if isinstance(distinct, np.ndarray) else list(distinct)
    levels = r_levels(values)
    return _with_categories(values, levels).cat.codes.to_numpy().astype(np.int64), levels


def group_labels(columns, data: pd.DataFrame) -> pd.Series:
    """Level labels of a grouping factor per row (``"a:b"`` for interactions)."""
    labels = None
    for p in columns:
        if p not in data.columns:
            raise MissingColumnError("grouping factor needed for prediction but not in the new data", column=p)
        s = data[p].astype(str)
        labels = s if labels is None else labels + ":" + s
    return labels


def _effects_formula(effects) -> Formula:
    """The effects of a random term as a formula of its own (``~ 1 + x``)."""
    text = deparse(effects)
    pieces = _split_sum(effects)
    columns: list[str] = []
    for _, piece in pieces:
        _formula_leaves(piece, text, columns, [])
    return Formula(text=f"~ {text}", response=None, fixed=text, random=[], offsets=[],
                   variables=list(dict.fromkeys(columns)), terms=pieces)


def random_terms(formula, data, *, factors=(), base_levels=None) -> list[RandomTerm]:
    """The random-effects terms of ``formula`` on ``data``, ordered as lme4 (decreasing
    number of levels, ties in reverse formula order), so the variance-component table
    lines up with ``as.data.frame(VarCorr(fit))`` and θ with ``getME(fit, "theta")``."""
    parsed = formula if isinstance(formula, Formula) else parse(formula)
    data = _to_pandas(data)
    data = data if isinstance(data, Columns) else Columns(data)  # terms share columns: (1 | a/b), (x || g)
    check_columns(parsed, data.columns)
    out, coded = [], {}
    for (effects, group, _), spec in zip(parsed.random_parts, parsed.random):
        sub = _effects_formula(effects)
        design = fixed_design(
            sub,
            data,
            factors=[c for c in factors if c in sub.variables],
            base_levels={c: v for c, v in (base_levels or {}).items() if c in sub.variables},
        )
        if design.X.shape[1] == 0:
            raise FormulaError(f"random term ({spec.expr} | {spec.group}) has no effects")
        codes, levels = grouping_factor(group, _read(data, group), coded)
        out.append(RandomTerm(spec.group, design.names, design.X, codes, levels, tuple(group), design))
    # lme4 (mkReTrms): if the numbers of levels are not already non-increasing, reorder
    # by rev(order(nl)), i.e. decreasing with ties in reverse formula order.
    nl = [t.n_levels for t in out]
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = sorted(range(len(out)), key=lambda i: (nl[i], i))[::-1]
        out = [out[i] for i in order]
    return out
