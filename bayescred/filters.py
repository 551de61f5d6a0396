"""Row filters of run specs: a small declarative language, parsed here, run by the engine.

Grammar (``filter = "..."`` in a spec; nothing is evaluated as Python)::

    filter     := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := value (("==" | "!=" | "<" | "<=" | ">" | ">=") value)?
                | value ["not"] "in" "[" literal ("," literal)* "]"
                | "(" or ")"
    value      := column | literal
    column     := name | `any name in backquotes`
    literal    := number | "text" | 'text' | True | False

A bare value must be a Boolean column. Example (models/bus.toml):
``\\`co.id\\` != 145 and not (\\`tot.cost\\` < 0)``. The parsed filter becomes a narwhals
expression, so pandas, polars, DuckDB and other engines filter on their own side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import narwhals.stable.v2 as nw
import pandas as pd

from .errors import FilterError, NotAFrameError

MAX_LENGTH = 10_000
MAX_DEPTH = 50

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<quoted>`[^`]+`)
  | (?P<string>"[^"\\]*"|'[^'\\]*')
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    """,
    re.VERBOSE | re.ASCII,
)
_KEYWORDS = {"and", "or", "not", "in", "True", "False", "true", "false"}
_COMPARE = {"==": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Column:
    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    value: object


@dataclass(frozen=True)
class Compare:
    op: str
    left: object
    right: object
    pos: int


@dataclass(frozen=True)
class In:
    column: Column
    values: tuple
    negated: bool


@dataclass(frozen=True)
class Logic:
    op: str  # and | or
    operands: tuple


@dataclass(frozen=True)
class Not:
    operand: object


def _tokenize(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = "; write non-ASCII column names in backquotes" if ord(ch) > 127 else ""
            raise FilterError(f"filter: unexpected character {ch!r} at position {pos}{hint}")
        kind, value = m.lastgroup, m.group()
        if kind == "quoted":
            out.append(_Tok("column", value[1:-1], pos))
        elif kind == "string":
            out.append(_Tok("string", value[1:-1], pos))
        elif kind == "name":
            out.append(_Tok("keyword" if value in _KEYWORDS else "column", value, pos))
        elif kind != "space":
            out.append(_Tok(kind, value, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def fail(self, what: str):
        tok = self.peek()
        found = f"{tok.text!r} at position {tok.pos}" if tok.kind != "end" else "the end"
        raise FilterError(f"filter: expected {what}, found {found}")

    def logic(self, op: str, operand):
        operands = [operand()]
        while self.is_("keyword", op):
            self.take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Logic(op, tuple(operands))

    def or_(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"filter: nests deeper than {MAX_DEPTH} levels")
        out = self.logic("or", lambda: self.logic("and", self.not_))
        self.depth -= 1
        return out

    def not_(self):
        if self.is_("keyword", "not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterError(f"filter: nests deeper than {MAX_DEPTH} levels")
            out = Not(self.not_())
            self.depth -= 1
            return out
        return self.comparison()

    def comparison(self):
        if self.is_("op", "("):
            self.take()
            inner = self.or_()
            if not self.is_("op", ")"):
                self.fail("')'")
            self.take()
            return inner
        left = self.value()
        tok = self.peek()
        if tok.kind == "op" and tok.text in _COMPARE:
            self.take()
            return Compare(tok.text, left, self.value(), tok.pos)
        negated = False
        if self.is_("keyword", "not") and self.tokens[self.i + 1].text == "in":
            self.take()
            negated = True
        if self.is_("keyword", "in"):
            self.take()
            if not isinstance(left, Column):
                raise FilterError(f"filter: 'in' needs a column on its left, at position {tok.pos}")
            return In(left, self.list_(), negated)
        return left

    def list_(self) -> tuple:
        if not self.is_("op", "["):
            self.fail("'[' starting a list")
        self.take()
        values = []
        while True:
            v = self.value()
            if not isinstance(v, Literal):
                raise FilterError(f"filter: a list holds literals, found column {v.name!r} at position {v.pos}")
            values.append(v.value)
            if self.is_("op", ","):
                self.take()
                continue
            if self.is_("op", "]"):
                self.take()
                return tuple(values)
            self.fail("',' or ']'")

    def value(self):
        tok = self.peek()
        if tok.kind == "column":
            self.take()
            return Column(tok.text, tok.pos)
        if tok.kind == "string":
            self.take()
            return Literal(tok.text)
        if tok.kind == "number":
            self.take()
            number = float(tok.text)
            return Literal(int(number) if re.fullmatch(r"-?\d+", tok.text) else number)
        if tok.kind == "keyword" and tok.text in ("True", "False", "true", "false"):
            self.take()
            return Literal(tok.text in ("True", "true"))
        self.fail("a column, number, text or True/False")


def parse(text: str):
    """The syntax tree of a filter; FilterError naming the position of a problem."""
    if not isinstance(text, str):
        raise FilterError(f"filter must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"filter is {len(text)} characters long; at most {MAX_LENGTH} are read")
    parser = _Parser(text)
    if parser.is_("end"):
        raise FilterError("filter is empty")
    tree = parser.or_()
    if not parser.is_("end"):
        parser.fail("'and', 'or' or the end")
    return tree


# --------------------------------------------------------------------------- to narwhals


def _kind(dtype) -> str:
    if dtype == nw.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "number"
    if dtype in (nw.String, nw.Categorical, nw.Enum):
        return "text"
    return "other"


def _literal_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "text"


class _Compiler:
    def __init__(self, schema):
        self.schema = schema

    def column(self, col: Column) -> tuple[nw.Expr, str]:
        if col.name not in self.schema:
            raise FilterError(
                f"filter: column {col.name!r} (position {col.pos}) is not in the data; "
                f"available columns: {', '.join(self.schema)}"
            )
        return nw.col(col.name), _kind(self.schema[col.name])

    def value(self, node) -> tuple[nw.Expr, str, str]:
        if isinstance(node, Column):
            expr, kind = self.column(node)
            return expr, kind, f"column {node.name!r}"
        return nw.lit(node.value), _literal_kind(node.value), repr(node.value)

    def __call__(self, node) -> nw.Expr:
        if isinstance(node, Logic):  # flat, however long the chain (Kleene logic on nulls)
            combine = nw.all_horizontal if node.op == "and" else nw.any_horizontal
            return combine(*(self(operand) for operand in node.operands), ignore_nulls=False)
        if isinstance(node, Not):
            return ~self(node.operand)
        if isinstance(node, Compare):
            (lx, lk, ln), (rx, rk, rn) = self.value(node.left), self.value(node.right)
            if "other" not in (lk, rk) and lk != rk:
                raise FilterError(f"filter: cannot compare {ln} ({lk}) with {rn} ({rk}) at position {node.pos}")
            return getattr(lx, _COMPARE[node.op])(rx)
        if isinstance(node, In):
            expr, kind = self.column(node.column)
            for v in node.values:
                if kind != "other" and _literal_kind(v) != kind:
                    raise FilterError(f"filter: the list for column {node.column.name!r} ({kind}) holds {v!r}")
            test = expr.is_in(list(node.values))
            return ~test if node.negated else test
        if isinstance(node, Column):
            expr, kind = self.column(node)
            if kind != "bool":
                raise FilterError(f"filter: column {node.name!r} stands alone but is not True/False; compare it, e.g. {node.name} > 0")
            return expr
        raise FilterError(f"filter: a literal {node.value!r} cannot stand alone as a condition")


def expression(text: str, schema) -> nw.Expr:
    """The narwhals expression of filter ``text`` for a frame with ``schema`` (name -> dtype)."""
    return _Compiler(schema)(parse(text))


def apply(frame, text: str):
    """Rows of ``frame`` where filter ``text`` holds, as the same kind of frame (pandas in,
    pandas out with a fresh 0..n-1 index; polars, DuckDB, ... filtered engine-side)."""
    try:
        nw_frame = nw.from_native(frame)
    except TypeError as exc:
        raise NotAFrameError(f"expected a data frame (pandas, polars, DuckDB, ...), got {type(frame).__name__}") from exc
    schema = dict(nw_frame.collect_schema())
    expr = expression(text, schema)
    try:
        out = nw_frame.filter(expr).to_native()
    except Exception as exc:  # the engine's own message, e.g. an unsupported comparison
        shown = text if len(text) <= 60 else text[:57] + "..."
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise FilterError(f"filter {shown!r} cannot run on this data: {reason}") from exc
    if isinstance(out, pd.DataFrame):
        out = out.reset_index(drop=True)
    return out
