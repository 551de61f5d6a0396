"""Validation of override arguments (fixed variances, tolerances, prior parameters) and of
arrays or Series passed instead of column names: checked like data, before any computation,
with an error that names the argument."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError

__all__ = ["check_number", "check_variance", "aligned_values", "column_arguments"]


def check_number(value, name: str, *, minimum: float | None = None, strict: bool = False,
                 integer: bool = False, allow_none: bool = True):
    """Validate an override argument like data: a finite real number (optionally >= or >
    ``minimum``, optionally whole). Raises :class:`InvalidArgumentError` naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"{name}= must be a number, got {value!r}", column=name)
    value = float(value)
    if not np.isfinite(value):
        raise InvalidArgumentError(f"{name}= must be finite, got {value!r}", column=name)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise InvalidArgumentError(f"{name}= must be {'>' if strict else '>='} {minimum:g}, got {value!r}", column=name)
    if integer and value != round(value):
        raise InvalidArgumentError(f"{name}= must be a whole number, got {value!r}", column=name)
    return value


def check_variance(value, name: str):
    """A variance override: None, or a finite number >= 0."""
    return check_number(value, name, minimum=0.0)


def aligned_values(values, index: pd.Index, name: str) -> np.ndarray:
    """An array argument as one float per row of a frame with row labels ``index``.

    A pandas Series is aligned on the frame's row labels (its order does not matter); a
    Series whose labels are not exactly the frame's is refused. Anything else must have one
    value per row, in the frame's order."""
    if isinstance(values, pd.Series):
        if not (values.index.is_unique and index.is_unique) or len(values) != len(index) or not values.index.isin(index).all():
            raise InvalidArgumentError(
                f"{name}= is a Series whose index does not match the data's row labels; "
                "pass a column name, an array in row order, or a Series indexed like the data",
                column=name,
            )
        values = values.reindex(index)
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}= must be numeric", column=name) from None
    if out.shape != (len(index),):
        raise InvalidArgumentError(f"{name}= must have one value per row ({len(index)}), got shape {out.shape}", column=name)
    return out


def column_arguments(**columns) -> None:
    """Arguments that name columns (``group=``, ``response=``, ``weight=``, ...) must be
    column labels, or lists of them: an array or Series passed there is refused with an
    error naming the argument (the classical and Bayesian functions take columns only)."""
    for name, value in columns.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, (pd.Series, pd.Index, np.ndarray, list, dict, set)) or not _hashable(v):
                raise InvalidArgumentError(
                    f"{name}= must name a column of the data, got a {type(v).__name__}; "
                    "add the values to the frame as a column and pass its name",
                    column=name,
                )


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
