"""From (formula, data) to the arrays the GLM engine fits: response, design, names, offset.

The project's one formula parser (``bayescred.formula.fixed_design``) reads the formula and
materialises X with R's names and coding; this module adds what a GLM needs on top: the
``cbind(successes, failures)`` response as a proportion with its totals, and prior weights
and an offset given as column names (or arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .. import formula as _formula
from ..errors import FormulaError, MissingColumnError, MissingValueError, NonFiniteError, NotNumericError


@dataclass
class Design:
    y: np.ndarray
    X: np.ndarray
    names: list[str]
    offset: np.ndarray
    weights: np.ndarray
    trials: np.ndarray | None  # binomial cbind: successes + failures per row
    transform: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]  # newdata -> (X, formula offsets)
    intercept: bool
    response: str


def _column(data: pd.DataFrame, col, what: str) -> np.ndarray:
    """A numeric, finite column (by name) or array of one value per row."""
    if isinstance(col, str):
        if col not in data.columns:
            raise MissingColumnError(f"named as {what} but not in the data", column=col)
        s = data[col]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            raise NotNumericError(f"{what} must be numeric, found dtype {s.dtype}", column=col)
        arr, name = s.to_numpy(float), col
    else:
        arr, name = np.asarray(col, float), what
        if arr.shape != (len(data),):
            raise FormulaError(f"{what} must be a column name or one value per row ({len(data)})")
    if np.isnan(arr).any():
        raise MissingValueError("holds missing values", column=name, rows=list(data.index[np.isnan(arr)]))
    if not np.isfinite(arr).all():
        raise NonFiniteError("holds infinite values", column=name, rows=list(data.index[~np.isfinite(arr)]))
    return arr


def build(formula: str, data: pd.DataFrame, weights=None, offset=None, base_levels=None, factors=(),
          need_response: bool = True) -> Design:
    """Arrays for the GLM engine; ``cbind(s, f)`` gives y = s / (s + f) and trials s + f."""
    d = _formula.fixed_design(formula, data, factors=factors, base_levels=base_levels)
    if d.formula.random:
        raise FormulaError(f"a GLM formula has no random terms ({d.formula.random[0].expr} | "
                           f"{d.formula.random[0].group}); use bc.glmm")
    y, trials = d.y, None
    if need_response and y is None:
        raise FormulaError(f"the formula {formula!r} has no response")
    if y is not None and y.ndim == 2:
        if y.shape[1] != 2:
            raise FormulaError("cbind() needs two columns: successes and failures")
        trials = y[:, 0] + y[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials > 0, y[:, 0] / np.where(trials > 0, trials, 1.0), 0.0)
    w = np.ones(len(data)) if weights is None else _column(data, weights, "weights")
    if np.any(w < 0):
        raise FormulaError("prior weights must be non-negative")
    off = np.asarray(d.offset, float)
    if offset is not None:
        off = off + _column(data, offset, "offset")

    def transform(newdata):
        return d.transform(newdata), np.asarray(d.offset_for(newdata), float)

    return Design(None if y is None else np.asarray(y, float), np.asarray(d.X, float), list(d.names),
                  off, w, trials, transform, "(Intercept)" in d.names, d.response_name or "")
