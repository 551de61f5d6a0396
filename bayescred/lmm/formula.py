"""lme4 model formulas: ``y ~ fixed + (expr | group) + ...`` -> X, random-effect terms.

Supported syntax (lme4, Bates et al. 2015, section 2.1):

* fixed part: ``1``/``0``/``-1``, numeric and categorical variables, ``a:b`` and ``a*b``
  interactions, ``I(expr)``, ``log(x)``-style calls, ``offset(expr)``;
  categorical columns get R's treatment coding (first level is the base), and R's rule
  for when a factor in an interaction gets full indicator coding;
* random part: ``(1|g)``, ``(1+x|g)`` (unstructured covariance), ``(0+x|g)``,
  ``(1+x||g)`` (split into uncorrelated terms, as lme4), nested ``(1|a/b)`` =
  ``(1|a) + (1|b:a)``, interaction groups ``(1|a:b)``, any number of crossed factors.

Random terms are ordered as lme4 does (by decreasing number of levels, ties in reverse
formula order), so the variance-component table lines up with
``as.data.frame(VarCorr(fit))`` and θ with ``getME(fit, "theta")``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from ..errors import FormulaError, MissingColumnError

_FUNCS = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log1p": np.log1p,
    "log10": np.log10, "log2": np.log2, "I": lambda v: v, "sin": np.sin, "cos": np.cos,
}
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")


@dataclass
class RandomTerm:
    """One random-effects term ``(expr | group)``: its design ``X`` (n x k) per row and
    the grouping factor (integer ``codes`` into ``levels``)."""

    group: str
    names: list[str]
    X: np.ndarray
    codes: np.ndarray
    levels: list[str]
    expr_terms: list = field(default_factory=list)
    expr_intercept: bool = True
    expr_levels: dict = field(default_factory=dict)

    def design_for(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The term's effects design and level codes (-1 for unseen levels) on new data."""
        X, _ = model_matrix(self.expr_terms, self.expr_intercept, data, dict(self.expr_levels))
        index = {lev: i for i, lev in enumerate(self.levels)}
        codes = group_labels(self.group, data).map(index).fillna(-1).to_numpy(dtype=np.int64)
        return X, codes

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass
class ParsedFormula:
    response: str
    fixed_terms: list[tuple[str, ...]]
    intercept: bool
    random: list[tuple[str, str, bool]]  # (expr, group, correlated)
    offsets: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- parsing
def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at top-level characters in ``seps``; returns (sign, piece) pairs."""
    out, depth, start, sign = [], 0, 0, "+"
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch in seps and depth == 0:
            out.append((sign, text[start:i].strip()))
            sign, start = ch, i + 1
    out.append((sign, text[start:].strip()))
    return out


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def _is_bar(piece: str) -> bool:
    inner = piece.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        return False
    depth = 0
    for ch in inner[1:-1]:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            return True
    return False


def _expand_star(piece: str) -> list[tuple[str, ...]]:
    """``a*b:c`` -> [(a,), (b, c), (a, b, c)] (R's crossing rule)."""
    factors = [_split_top(f, ":") for _, f in _split_top(piece, "*")]
    factors = [tuple(p.strip() for _, p in f) for f in factors]
    terms: list[tuple[str, ...]] = []
    for r in range(1, len(factors) + 1):
        for combo in combinations(factors, r):
            t: tuple[str, ...] = ()
            for c in combo:
                t += tuple(v for v in c if v not in t)
            terms.append(t)
    return terms


def _parse_linear(rhs: str) -> tuple[list[tuple[str, ...]], bool, list[str]]:
    """Parse a linear predictor (no bars): terms, intercept flag, offset expressions."""
    terms: list[tuple[str, ...]] = []
    intercept = True
    offsets: list[str] = []
    for sign, piece in _split_top(rhs, "+-"):
        if piece == "":
            if sign == "-":
                raise FormulaError(f"cannot parse {rhs!r}")
            continue
        if piece in ("0", "1"):
            intercept = (piece == "1") and sign == "+"
            continue
        if sign == "-":
            raise FormulaError(f"removing terms other than the intercept is not supported: -{piece}")
        if piece.startswith("offset(") and piece.endswith(")"):
            offsets.append(piece[7:-1])
            continue
        piece = _strip_parens(piece) if not re.match(r"^\w+\(", piece) else piece
        if "+" in piece and not re.match(r"^[\w.]+\(", piece):
            raise FormulaError(f"unsupported grouping in {piece!r}; write the terms out")
        for t in _expand_star(piece):
            if t not in terms:
                terms.append(t)
    return terms, intercept, offsets


def parse(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed terms and random terms."""
    if "~" not in formula:
        raise FormulaError(f"formula needs a '~': {formula!r}")
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not response:
        raise FormulaError("formula has no response (left of '~')")
    fixed_pieces, random = [], []
    for sign, piece in _split_top(rhs, "+-"):
        if _is_bar(piece):
            if sign == "-":
                raise FormulaError(f"cannot subtract a random term: {piece}")
            inner = piece.strip()[1:-1]
            double = "||" in inner
            expr, group = inner.split("||" if double else "|", 1)
            expr, group = expr.strip(), group.strip()
            for g in _nested_groups(group):
                if double:
                    terms, icpt, _ = _parse_linear(expr)
                    if icpt:
                        random.append(("1", g, True))
                    for t in terms:
                        random.append(("0+" + ":".join(t), g, True))
                else:
                    random.append((expr, g, True))
        else:
            fixed_pieces.append(("" if sign == "+" else "-") + piece)
    fixed_rhs = "+".join(fixed_pieces).replace("+-", "-") if fixed_pieces else "1"
    terms, intercept, offsets = _parse_linear(fixed_rhs)
    return ParsedFormula(response, terms, intercept, random, offsets)


def _nested_groups(group: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``b:a``, ``c:b:a`` (lme4 writes the inner factor first);
    other groups unchanged."""
    parts = [p.strip() for p in group.split("/")]
    return [":".join(reversed(parts[: i + 1])) for i in range(len(parts))]


# ---------------------------------------------------------------- evaluation
def _names_in(expr: str) -> list[str]:
    return [n.strip("`") for n in _NAME.findall(expr) if n.strip("`") not in _FUNCS]


def variables(parsed: ParsedFormula) -> list[str]:
    """Every data column the formula refers to (response first)."""
    exprs = [parsed.response, *parsed.offsets]
    exprs += [v for t in parsed.fixed_terms for v in t]
    for expr, group, _ in parsed.random:
        exprs += [expr, *group.split(":")]
    out: list[str] = []
    for e in exprs:
        for n in _names_in(e):
            if n not in out and not re.fullmatch(r"[0-9.]+", n):
                out.append(n)
    return out


def check_columns(parsed: ParsedFormula, columns) -> None:
    cols = set(map(str, columns))
    for name in variables(parsed):
        if name not in cols:
            raise MissingColumnError(
                f"used in the formula but not in the data; available columns: {', '.join(map(str, columns))}",
                column=name,
            )


def is_categorical(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def levels_of(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().unique())
        return [c for c in series.cat.categories if c in present]
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return np.unique(values.to_numpy()).tolist()
    return sorted(values.unique(), key=lambda v: (str(type(v)), v))


def evaluate(expr: str, data: pd.DataFrame) -> np.ndarray | pd.Series:
    """A numeric expression (``x``, ``log(x)``, ``I(x^2)``) or a column as it is."""
    expr = expr.strip()
    if expr in data.columns:
        return data[expr]
    if expr.startswith("`") and expr.endswith("`") and expr[1:-1] in data.columns:
        return data[expr[1:-1]]
    code = re.sub(r"`([^`]+)`", lambda m: f"__c[{m.group(1)!r}]", expr).replace("^", "**")
    env = {**_FUNCS, "__c": data}
    env.update({c: data[c].to_numpy(dtype=float) for c in _names_in(expr) if c in data.columns})
    try:
        value = eval(code, {"__builtins__": {}}, env)  # noqa: S307  (column names and numpy only)
    except Exception as exc:  # pragma: no cover - message path
        raise FormulaError(f"cannot evaluate {expr!r}: {exc}") from exc
    return np.broadcast_to(np.asarray(value, dtype=float), (len(data),)).copy()


def model_matrix(
    terms: list[tuple[str, ...]], intercept: bool, data: pd.DataFrame, levels: dict | None = None
) -> tuple[np.ndarray, list[str]]:
    """R's ``model.matrix`` with treatment contrasts: columns and their names.

    ``levels`` (variable -> level list) fixes the coding (for new data); it is filled in
    with the levels found when given as an empty dict.

    A factor F in term T is coded by contrasts when T without F is already in the model
    (the intercept counts as the empty term), otherwise by full indicators (R's rule).
    """
    n = len(data)
    terms = sorted(terms, key=len)  # R orders terms by degree, stably
    cols, names = [], []
    present: set[frozenset] = set()
    if intercept:
        cols.append(np.ones(n))
        names.append("(Intercept)")
        present.add(frozenset())
    values = {v: evaluate(v, data) for t in terms for v in t}
    for term in terms:
        parts: list[tuple[list[np.ndarray], list[str]]] = []
        for v in term:
            val = values[v]
            if isinstance(val, pd.Series) and is_categorical(val):
                if levels is not None and v in levels:
                    levs = levels[v]
                else:
                    levs = levels_of(val)
                    if levels is not None:
                        levels[v] = levs
                rest = frozenset(term) - {v}
                use = levs[1:] if rest in present else levs
                if not rest and rest not in present:
                    present.add(frozenset())  # R: only the first such factor is coded in full
                arr = val.to_numpy()
                parts.append(([(arr == lev).astype(float) for lev in use], [f"{v}{lev}" for lev in use]))
            else:
                parts.append(([np.asarray(val, dtype=float)], [v]))
        block_cols, block_names = [np.ones(n)], [""]
        for pc, pn in parts:  # first variable varies fastest, as R
            block_cols = [b * c for c in pc for b in block_cols]
            block_names = [f"{b}:{m}" if b else m for m in pn for b in block_names]
        cols += block_cols
        names += block_names
        present.add(frozenset(term))
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return X, names


def grouping_factor(group: str, data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Integer codes and labels of a grouping factor; ``a:b`` is the interaction of the
    observed combinations (labels ``"a_level:b_level"``, ordered as R's ``interaction()``
    with the first factor varying fastest)."""
    parts = [p.strip() for p in group.split(":")]
    code, stride, keys = np.zeros(len(data), dtype=np.int64), 1, []
    for p in parts:
        levs = levels_of(data[p])
        c = pd.Categorical(data[p], categories=levs).codes.astype(np.int64)
        code += stride * c
        stride *= max(len(levs), 1)
        keys.append(levs)
    observed, codes = np.unique(code, return_inverse=True)
    if len(parts) == 1:
        return codes.astype(np.int64), [str(keys[0][c]) for c in observed]
    labels = []
    for oc in observed:
        bits = []
        for levs in keys:
            bits.append(str(levs[oc % len(levs)]))
            oc //= len(levs)
        labels.append(":".join(bits))
    return codes.astype(np.int64), labels


def group_labels(group: str, data: pd.DataFrame) -> pd.Series:
    """Level labels of a grouping factor per row (``"a:b"`` for interactions)."""
    labels = None
    for p in (p.strip() for p in group.split(":")):
        s = data[p].astype(str)
        labels = s if labels is None else labels + ":" + s
    return labels


def random_terms(parsed: ParsedFormula, data: pd.DataFrame) -> list[RandomTerm]:
    """Build the random-effects terms and order them as lme4."""
    out = []
    for expr, group, _ in parsed.random:
        terms, icpt, _ = _parse_linear(expr)
        levs: dict = {}
        X, names = model_matrix(terms, icpt, data, levs)
        if X.shape[1] == 0:
            raise FormulaError(f"random term ({expr} | {group}) has no effects")
        codes, levels = grouping_factor(group, data)
        out.append(RandomTerm(group, names, X, codes, levels, terms, icpt, levs))
    # lme4 (mkReTrms): if the numbers of levels are not already non-increasing, reorder
    # by rev(order(nl)), i.e. decreasing with ties in reverse formula order.
    nl = [t.n_levels for t in out]
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = sorted(range(len(out)), key=lambda i: (nl[i], i))[::-1]
        out = [out[i] for i in order]
    return out
