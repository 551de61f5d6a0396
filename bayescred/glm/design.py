"""From (formula, data) to the arrays the GLM engine fits: response, design, names, offset.

The project has one formula parser (``bayescred.formula.fixed_design``); this module only
adapts its result to the GLM (a ``cbind(successes, failures)`` response, prior weights and an
offset given as column names). Until that module is present the fixed-effects part of the
``bc.lmm`` parser serves (same syntax: factors, ``a*b``, ``a:b``, ``I()``, ``offset()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import FormulaError, MissingColumnError, MissingValueError, NonFiniteError, NotNumericError

_CBIND = re.compile(r"^\s*cbind\s*\((.*)\)\s*$", re.S)


@dataclass
class Design:
    y: np.ndarray
    X: np.ndarray
    names: list[str]
    offset: np.ndarray
    weights: np.ndarray
    trials: np.ndarray | None  # binomial cbind: successes + failures per row
    transform: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]  # newdata -> (X, formula offset)
    intercept: bool
    response: str


def _split_comma(text: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _fixed(formula: str, data: pd.DataFrame, base_levels: dict | None):
    """(y, X, names, formula offset, transform, intercept) from the project's parser."""
    try:
        from .. import formula as shared  # the one parser, once it has landed
    except ImportError:
        shared = None
    if shared is not None and hasattr(shared, "fixed_design"):
        d = shared.fixed_design(formula, data, base_levels=base_levels)
        off = np.zeros(len(data)) if d.offset is None else np.asarray(d.offset, float)

        def transform(newdata):
            nd = d.transform(newdata)
            return np.asarray(nd.X, float), (np.zeros(len(newdata)) if nd.offset is None
                                              else np.asarray(nd.offset, float))

        names = list(d.names)
        return np.asarray(d.y, float), np.ascontiguousarray(d.X, float), names, off, transform, \
            "(Intercept)" in names
    if base_levels:
        raise FormulaError("base_levels needs the shared formula parser (bayescred.formula)")
    from ..lmm import formula as lf

    parsed = lf.parse(formula)
    if parsed.random:
        raise FormulaError(f"a GLM formula has no random terms; use bc.glmm for {formula!r}")
    lf.check_columns(parsed, data.columns)
    levels: dict = {}
    X, names = lf.model_matrix(parsed.fixed_terms, parsed.intercept, data, levels)

    def offset_of(frame):
        off = np.zeros(len(frame))
        for expr in parsed.offsets:
            off = off + np.asarray(lf.evaluate(expr, frame), float)
        return off

    def transform(newdata):
        Xn, _ = lf.model_matrix(parsed.fixed_terms, parsed.intercept, newdata, dict(levels))
        return Xn, offset_of(newdata)

    y = lf.evaluate(parsed.response, data) if not _CBIND.match(parsed.response) else None
    return y, np.ascontiguousarray(X, float), names, offset_of(data), transform, parsed.intercept


def _numeric(values, name: str, data: pd.DataFrame) -> np.ndarray:
    s = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy(), index=data.index)
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        if pd.api.types.is_bool_dtype(s):
            return s.to_numpy(float)
        raise NotNumericError("must be numeric for a GLM", column=name)
    arr = s.to_numpy(float)
    if np.isnan(arr).any():
        raise MissingValueError("holds missing values; drop or impute them first", column=name,
                                rows=list(data.index[np.isnan(arr)]))
    if not np.isfinite(arr).all():
        raise NonFiniteError("holds infinite values", column=name, rows=list(data.index[~np.isfinite(arr)]))
    return arr


def _column(data: pd.DataFrame, col, what: str) -> np.ndarray:
    if isinstance(col, str):
        if col not in data.columns:
            raise MissingColumnError(f"named as {what} but not in the data", column=col)
        return _numeric(data[col], col, data)
    arr = np.asarray(col, float)
    if arr.shape != (len(data),):
        raise FormulaError(f"{what} must be a column name or one value per row ({len(data)})")
    return _numeric(arr, what, data)


def build(formula: str, data: pd.DataFrame, weights=None, offset=None, base_levels=None) -> Design:
    """Arrays for the GLM engine; ``cbind(s, f)`` gives y = s / (s + f) and trials s + f."""
    if "~" not in formula:
        raise FormulaError(f"formula needs a '~': {formula!r}")
    lhs, rhs = formula.split("~", 1)
    y, X, names, off, transform, intercept = _fixed(formula if not _CBIND.match(lhs) else "_y_ ~" + rhs,
                                                    data.assign(_y_=0.0) if _CBIND.match(lhs) else data, base_levels)
    trials = None
    m = _CBIND.match(lhs)
    if m:
        parts = _split_comma(m.group(1))
        if len(parts) != 2:
            raise FormulaError(f"cbind() needs two columns (successes, failures): {lhs.strip()!r}")
        counts = [_numeric(_fixed(f"{p} ~ 1", data, None)[0], p, data) for p in parts]
        trials = counts[0] + counts[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials > 0, counts[0] / np.where(trials > 0, trials, 1.0), 0.0)
    else:
        y = _numeric(y, lhs.strip(), data)
    w = np.ones(len(data)) if weights is None else _column(data, weights, "weights")
    if np.any(w < 0):
        raise FormulaError("prior weights must be non-negative")
    if offset is not None:
        off = off + _column(data, offset, "offset")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise NonFiniteError("the design matrix has missing or infinite entries", rows=list(data.index[bad]))
    return Design(y, X, names, off, w, trials, transform, intercept, lhs.strip())
