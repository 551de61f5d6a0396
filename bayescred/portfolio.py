"""Validation and sufficient statistics: the one door every model's data goes through.

Every credibility model in bayescred depends on the data only through per-risk (or
per-cell) sufficient statistics: the number of observations, the total weight, the
weighted mean and the weighted within sum of squares (docs/formulas.md §2; seed
004_07f8365c92996b9b.txt eqs 3.14-3.23), plus the cross-products Q'WQ, Q'Wy, y'Wy for
regression credibility (docs/formulas.md §4). So the reduction runs where the data lives:
pandas, polars, a DuckDB relation or a Dask frame all go through narwhals, the group-by
is executed by that engine, and only the per-risk summaries come back (as pandas).

Entry points:

* :func:`validate`: every check a model needs (columns, types, missing/infinite values,
  positive weights, number of risks, duplicates, periods per risk, time varying within a
  risk, complete crossed cells, nesting), one specific exception per kind of problem;
* :func:`summarise` (per risk or per cell), :func:`cross_products` and
  :func:`within_cross_products` (regression credibility), :func:`claim_totals` (claim counts
  and exposure);
* :class:`Sufficient`: the Gaussian sufficient statistics (cell counts, weights, means and the
  pooled within SS with its df), built from raw rows by :func:`sufficient` or from published
  cell summaries by :func:`from_summaries` (aggregated input is a first-class input).

The caller's frame is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd
from narwhals.exceptions import DuplicateError

from .errors import (
    ConstantCovariateError,
    DuplicateColumnError,
    DuplicateRowError,
    EmptyCellError,
    EmptyDataError,
    MissingColumnError,
    MissingValueError,
    NegativeValueError,
    NestingError,
    NonFiniteError,
    NonPositiveError,
    NotAFrameError,
    NotIntegerError,
    NotNumericError,
    SummaryError,
    TooFewPeriodsError,
    TooFewRisksError,
    ZeroWeightError,
)

__all__ = [
    "as_frame",
    "validate",
    "check_data",
    "Columns",
    "summarise",
    "centred",
    "largest",
    "cross_products",
    "within_cross_products",
    "claim_totals",
    "Sufficient",
    "sufficient",
    "from_summaries",
    "as_list",
    "offending_rows",
]

_SHOW = 5


def as_list(cols: str | Sequence[str] | None) -> list[str]:
    """A column argument as a list: ``"a"`` -> ``["a"]``, ``None`` -> ``[]``."""
    if cols is None:
        return []
    if isinstance(cols, str):
        return [cols]
    return list(cols)


def as_frame(data) -> nw.DataFrame | nw.LazyFrame:
    """Wrap any supported table (pandas, polars, DuckDB relation, Dask, ...) for narwhals."""
    if isinstance(data, (nw.DataFrame, nw.LazyFrame)):
        return data
    try:
        return nw.from_native(data)
    except DuplicateError as exc:
        raise DuplicateColumnError(f"column names must be unique: {exc}".replace("\n", " ")) from exc
    except TypeError as exc:
        raise NotAFrameError(
            f"expected a data frame (pandas, polars, DuckDB relation, Dask, ...), got {type(data).__name__}"
        ) from exc


def _is_lazy(frame) -> bool:
    return isinstance(frame, nw.LazyFrame)


def _eager(frame) -> nw.DataFrame:
    return frame.collect() if _is_lazy(frame) else frame


def _labels(frame, mask: np.ndarray) -> list:
    """Row labels where ``mask`` holds: the pandas index labels, else row positions."""
    native = frame.to_native()
    if isinstance(native, pd.DataFrame):
        return list(native.index[mask])
    return list(np.flatnonzero(mask))


def offending_rows(frame, mask_expr, show: Sequence[str] | None = None) -> list:
    """Labels of the rows where ``mask_expr`` is true: the pandas index labels, row
    positions for other eager frames, or (for lazy engines, which have no row order)
    the first few offending rows written out (only the columns ``show``)."""
    if _is_lazy(frame):
        hit = frame.filter(mask_expr)
        if show:
            hit = hit.select(list(dict.fromkeys(show)))
        return [str(r) for r in hit.head(_SHOW).collect().rows(named=True)]
    mask = frame.select(mask_expr.alias("__m")).get_column("__m").to_numpy()
    return _labels(frame, np.asarray(mask, dtype=bool))


def _rows_of_keys(frame, by: list[str], keys: pd.DataFrame) -> list:
    """Rows of ``frame`` whose ``by`` values are among ``keys`` (a small pandas frame);
    for lazy engines the keys themselves."""
    if _is_lazy(frame):
        return [str(r) for r in keys[by].head(_SHOW).to_dict("records")]
    own = frame.select(by).to_pandas()
    mask = pd.MultiIndex.from_frame(own).isin(pd.MultiIndex.from_frame(keys[by]))
    return _labels(frame, np.asarray(mask, dtype=bool))


def _keys_text(keys: pd.DataFrame, by: list[str]) -> str:
    shown = [", ".join(str(v) for v in row) for row in keys[by].head(_SHOW).itertuples(index=False)]
    more = f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return "; ".join(shown) + more


def _any(frame, expr) -> bool:
    value = _eager(frame.select(expr.any().alias("__any"))).item(0, "__any")
    return bool(value) if value is not None else False


def _count(frame) -> int:
    return int(_eager(frame.select(nw.len().alias("__n"))).item(0, "__n"))


def _per_group(frame, by: list[str], *aggs) -> pd.DataFrame:
    """A group-by run by the engine holding the data, collected as (small) pandas."""
    return _eager(frame.group_by(by).agg(*aggs)).to_pandas()


# -- numpy fast path: small eager pandas frames skip the engine round trips (a 60-row fit
# in ~1 ms instead of ~50 ms). It only ever *confirms* valid data; anything it does not
# cover, and every problem, goes the narwhals way, so the messages are the same.
FAST_ROWS = 200_000


class Columns:
    """A pandas frame's columns, each read and checked for missing values once: pandas
    builds a new Series at every ``frame[col]`` (~8 µs), and a mixed model reads a column
    for its dtype, the door's checks and its designs. Reads the frame as it is
    (``frame``), never modifies it."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.columns, self.index = frame, frame.columns, frame.index
        self._read: dict = {}
        self._missing: dict = {}

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, column) -> pd.Series:
        if column not in self._read:
            self._read[column] = self.frame[column]
        return self._read[column]

    def missing(self, column) -> np.ndarray:
        """The rows where ``column`` has a missing value: its array's mask (``Series.isna()``
        wraps the same mask in a new Series, 10 µs a column instead of 0.5)."""
        if column not in self._missing:
            self._missing[column] = np.asarray(self[column].array.isna(), dtype=bool)
        return self._missing[column]


def _pandas_native(frame) -> pd.DataFrame | None:
    """The pandas frame behind ``frame`` when the fast path applies, else None."""
    native = frame if isinstance(frame, pd.DataFrame) else None
    if native is None and isinstance(frame, nw.DataFrame):
        native = frame.to_native()
    if not isinstance(native, pd.DataFrame) or len(native) > FAST_ROWS or not native.columns.is_unique:
        return None
    return native


def _fast_key(series: pd.Series) -> bool:
    """Keys the fast group-by sorts exactly as the engine path: plain numbers or strings."""
    if isinstance(series.dtype, pd.StringDtype):  # pandas' str dtype (the default for text since pandas 3)
        return True
    if not isinstance(series.dtype, np.dtype):
        return False
    if series.dtype.kind in "iuf":
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=False) == "string"


def _fast_values(series: pd.Series) -> np.ndarray | None:
    """Float values of a numeric, non-boolean column without missing or infinite values."""
    if not isinstance(series.dtype, np.dtype) or series.dtype.kind not in "iuf":
        return None
    values = series.to_numpy(dtype=float)
    return values if np.isfinite(values).all() else None


def _fast_group_codes(native: pd.DataFrame, by: list[str]):
    """(codes, sorted levels) of a single plain key column, else None."""
    if len(by) != 1 or by[0] not in native.columns or not _fast_key(native[by[0]]):
        return None
    series = native[by[0]]
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":  # numbers: numpy's sort, no index
        values = series.to_numpy()
        if series.dtype.kind == "f" and np.isnan(values).any():
            return None
        levels, codes = np.unique(values, return_inverse=True)
        return codes.reshape(-1), levels
    codes, levels = pd.factorize(series, sort=True)
    return (codes, levels) if (codes >= 0).all() else None


def _validate_fast(native: Columns, groups, numeric, present, positive, counts, min_groups, nonnegative,
                   unique, min_periods, varying, complete, nested) -> bool:
    """True when the data passes every requested check (decided with numpy)."""
    if nested or complete or not len(native) or unique and unique != groups:
        return False
    # the grouping factors of a mixed model (bc.lmm's door): only "no missing labels" is asked
    labels_only = not (unique or min_periods or varying or nonnegative) and min_groups <= 1
    if len(groups) > 1 and not labels_only:
        return False
    values = list(dict.fromkeys(numeric + positive + counts + nonnegative + varying))
    if any(c not in native.columns for c in groups + present + values):
        return False
    labels = [c for c in dict.fromkeys(present + (groups if labels_only else [])) if c not in values]
    if any(native.missing(c).any() for c in labels):  # the values are checked finite below
        return False
    arrays = {}
    for col in values:
        v = _fast_values(native[col])
        if v is None:
            return False
        arrays[col] = v
    if any((arrays[c] <= 0).any() for c in positive) or any((arrays[c] < 0).any() for c in counts + nonnegative):
        return False
    if any((arrays[c] != np.round(arrays[c])).any() for c in counts):
        return False
    if labels_only:
        return True
    if not groups:
        return not nonnegative and not unique and not min_periods and not varying and \
            all(arrays[c].sum() > 0 for c in nonnegative)
    grouped = _fast_group_codes(native, groups)
    if grouped is None:
        return False
    codes, levels = grouped
    J = len(levels)
    sizes = np.bincount(codes, minlength=J)
    if J < min_groups or (min_periods and (sizes < min_periods).any()):
        return False
    if any((np.bincount(codes, arrays[c], minlength=J) <= 0).any() for c in nonnegative):
        return False
    if unique and (sizes > 1).any():
        return False
    for col in varying:
        lo = np.full(J, np.inf)
        hi = np.full(J, -np.inf)
        np.minimum.at(lo, codes, arrays[col])
        np.maximum.at(hi, codes, arrays[col])
        if (lo == hi).any():
            return False
    return True


def _summarise_fast(native: pd.DataFrame, by: list[str], response: str, weight: str | None):
    """:func:`summarise` by numpy (None when the fast path does not apply)."""
    grouped = _fast_group_codes(native, by)
    if grouped is None:
        return None
    codes, levels = grouped
    J = len(levels)
    y = native[response].to_numpy(dtype=float)
    w = np.ones(len(y)) if weight is None else native[weight].to_numpy(dtype=float)
    n = np.bincount(codes, minlength=J)
    total = np.bincount(codes, w, minlength=J)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero total weight gives NaN, as pandas
        mean = np.bincount(codes, w * y, minlength=J) / total
        within = np.bincount(codes, w * (y - mean[codes]) ** 2, minlength=J)
    index = pd.Index(levels, name=by[0])
    return pd.DataFrame({"n": n.astype("int64"), "weight": total, "mean": mean, "within_ss": within}, index=index)


# The one rule for weights and exposures, in every arm (classical, empirical Bayes, Bayes): a
# zero weight is refused like a negative one. A row with zero weight carries no information
# in any of the models (its precision is 0), and the likelihoods' sum of log weights is -inf.
ZERO_WEIGHT = "must be strictly positive, found zeros (a row with zero weight carries no information: drop it)"


def validate(data, **checks):
    """Check the columns a model needs, before any computation (the keywords and their checks:
    :func:`check_data`); return the narwhals frame. The one door for bad rows in every arm."""
    frame = as_frame(data)
    check_data(frame, **checks)
    return frame


def check_data(
    data,
    *,
    groups: str | Sequence[str] | None = None,
    numeric: str | Sequence[str] | None = None,
    present: str | Sequence[str] | None = None,
    positive: str | Sequence[str] | None = None,
    counts: str | Sequence[str] | None = None,
    min_groups: int = 2,
    nonnegative: str | Sequence[str] | None = None,
    unique: Sequence[str] | None = None,
    min_periods: int | None = None,
    varying: str | Sequence[str] | None = None,
    complete: Sequence[str] | None = None,
    nested: Sequence[str] | None = None,
) -> None:
    """Check the columns a model needs, before any computation (:func:`validate` also returns
    the narwhals frame; a caller keeping its own frame calls this: a small pandas frame, or a
    :class:`Columns` view of one, that passes is never wrapped for narwhals, ~20 µs, a tenth
    of a small mixed model's set-up).

    * ``groups``: present, no missing values; together with ``min_groups`` distinct risks.
    * ``numeric``: present, numeric dtype, no missing values, finite (responses, time, covariates).
    * ``present``: present and no missing values, any dtype (categorical covariates).
    * ``positive``: numeric and strictly positive (weights, exposures): negative values raise
      :class:`~bayescred.errors.NonPositiveError` (naming every row <= 0), zeros alone its
      subclass :class:`~bayescred.errors.ZeroWeightError`.
    * ``counts``: numeric, non-negative whole numbers (claim counts).
    * ``nonnegative``: numeric and >= 0, with a positive total within each level of ``groups``
      (weights that may be zero in some periods).
    * ``unique``: these columns together identify a row (e.g. ``[risk, period]``).
    * ``min_periods``: each level of ``groups`` has at least this many rows.
    * ``varying``: numeric, and not constant within any level of ``groups`` (time in regression
      credibility: a constant time leaves the slope unidentified).
    * ``complete``: factors of a crossed classification; every combination of their levels
      has data.
    * ``nested``: levels ``[outer, ..., inner]``; each unit of a level lies in one unit of the
      level above.

    Works on every engine (the checks are engine-side expressions and group-bys). Each failure
    raises its own :class:`~bayescred.errors.DataError` subclass naming the column and the
    offending rows (pandas index labels; row positions for other eager frames; the offending
    rows written out for lazy engines). The caller's frame is never modified.
    """
    groups, numeric, present, positive, counts = map(as_list, (groups, numeric, present, positive, counts))
    nonnegative, unique, varying, complete, nested = map(as_list, (nonnegative, unique, varying, complete, nested))
    view = data if isinstance(data, Columns) else None  # the fast path reads through it, the rest its frame
    if view is not None:
        data = view.frame
    native = _pandas_native(data)
    if native is not None and _validate_fast(Columns(native) if view is None else view, groups, numeric, present,
                                             positive, counts, min_groups, nonnegative, unique, min_periods, varying,
                                             complete, nested):
        return
    frame = as_frame(data)
    keys = list(dict.fromkeys(groups + nested + complete + unique))
    present = [c for c in dict.fromkeys(present) if c not in keys]
    values = list(dict.fromkeys(numeric + positive + counts + nonnegative + varying))
    schema = frame.collect_schema() if _is_lazy(frame) else frame.schema
    for col in dict.fromkeys(keys + present + values):
        if col not in schema:
            raise MissingColumnError(
                f"not in the data; available columns: {', '.join(map(str, schema))}", column=col
            )
    if _count(frame) == 0:
        raise EmptyDataError("the data has no rows")
    for col in keys:
        bad = nw.col(col).is_null()
        if schema[col].is_float():
            bad = bad | nw.col(col).is_nan()
        if _any(frame, bad):
            kind = "grouping" if col in groups + nested + complete else "key"
            raise MissingValueError(f"{kind} column has missing values", col, offending_rows(frame, bad, [col]))
    for col in present:
        if col in values:
            continue  # checked with the numeric columns
        bad = nw.col(col).is_null()
        if schema[col].is_float():
            bad = bad | nw.col(col).is_nan()
        if _any(frame, bad):
            raise MissingValueError("has missing values", col, offending_rows(frame, bad, [*keys, col]))
    for col in values:
        if not schema[col].is_numeric() or schema[col] == nw.Boolean:
            raise NotNumericError(f"must be numeric, found dtype {schema[col]}", column=col)
        missing = nw.col(col).is_null()
        if schema[col].is_float():
            missing = missing | nw.col(col).is_nan()
        if _any(frame, missing):
            raise MissingValueError("has missing values", col, offending_rows(frame, missing, [*keys, col]))
        if schema[col].is_float():
            infinite = ~nw.col(col).is_finite()
            if _any(frame, infinite):
                raise NonFiniteError("has infinite values", col, offending_rows(frame, infinite, [*keys, col]))
    for col in positive:
        bad = nw.col(col) <= 0
        if _any(frame, nw.col(col) < 0):
            raise NonPositiveError("must be strictly positive", col, offending_rows(frame, bad, [*keys, col]))
        if _any(frame, bad):
            raise ZeroWeightError(ZERO_WEIGHT, col, offending_rows(frame, bad, [*keys, col]))
    for col in nonnegative:
        bad = nw.col(col) < 0
        if _any(frame, bad):
            raise NegativeValueError("must be non-negative", col, offending_rows(frame, bad, [*keys, col]))
        if groups:
            totals = _per_group(frame, groups, nw.col(col).sum().alias("__total"))
            zero = totals[totals["__total"] <= 0]
            if len(zero):
                raise ZeroWeightError(
                    f"total weight is zero for {', '.join(groups)} = {_keys_text(zero, groups)}",
                    col,
                    _rows_of_keys(frame, groups, zero),
                )
        elif not _eager(frame.select(nw.col(col).sum())).item(0, col) > 0:
            raise ZeroWeightError("total weight is zero", col)
    for col in counts:
        neg = nw.col(col) < 0
        if _any(frame, neg):
            raise NegativeValueError("claim counts must be non-negative", col, offending_rows(frame, neg, [*keys, col]))
        frac = nw.col(col) != nw.col(col).round(0)
        if _any(frame, frac):
            raise NotIntegerError("claim counts must be whole numbers", col, offending_rows(frame, frac, [*keys, col]))
    if groups and min_groups > 1:
        n_levels = _count(frame.select(groups).unique())
        if n_levels < min_groups:
            raise TooFewRisksError(
                f"needs at least {min_groups} risks, found {n_levels}", column=", ".join(groups)
            )
    for outer, inner in zip(nested, nested[1:]):
        parents = _per_group(frame.select(outer, inner).unique(), [inner], nw.len().alias("__k"))
        bad = parents[parents["__k"] > 1]
        if len(bad):
            raise NestingError(
                f"{inner} = {_keys_text(bad, [inner])} appears under more than one {outer}; "
                f"give inner units labels unique within the portfolio",
                inner,
                _rows_of_keys(frame, [inner], bad),
            )
    if unique:
        dup = _per_group(frame, unique, nw.len().alias("__k"))
        dup = dup[dup["__k"] > 1]
        if len(dup):
            raise DuplicateRowError(
                f"({', '.join(unique)}) repeats for {_keys_text(dup, unique)}",
                ", ".join(unique),
                _rows_of_keys(frame, unique, dup),
            )
    if groups and min_periods:
        sizes = _per_group(frame, groups, nw.len().alias("__k"))
        short = sizes[sizes["__k"] < min_periods]
        if len(short):
            raise TooFewPeriodsError(
                f"each risk needs at least {min_periods} observations; too few for {_keys_text(short, groups)}",
                ", ".join(groups),
                _rows_of_keys(frame, groups, short),
            )
    for col in varying:
        if not groups:
            continue
        span = _per_group(frame, groups, nw.col(col).min().alias("__lo"), nw.col(col).max().alias("__hi"))
        flat = span[span["__lo"] == span["__hi"]]
        if len(flat):
            raise ConstantCovariateError(
                f"is constant within {', '.join(groups)} = {_keys_text(flat, groups)}, so its slope is not identified",
                col,
                _rows_of_keys(frame, groups, flat),
            )
    if len(complete) > 1:
        present = _eager(frame.select(complete).unique()).to_pandas()
        levels = [pd.unique(present[c]) for c in complete]
        full = pd.MultiIndex.from_product(levels, names=complete)
        empty = full.difference(pd.MultiIndex.from_frame(present[complete]))
        if len(empty):
            cells = empty.to_frame(index=False)
            raise EmptyCellError(
                f"cells without data: {_keys_text(cells, complete)}", ", ".join(complete), [
                    ", ".join(map(str, r)) for r in cells.itertuples(index=False)
                ]
            )


def _to_pandas(frame) -> pd.DataFrame:
    return _eager(frame).to_pandas()


def centred(data, column: str) -> tuple:
    """``(frame, c)``: the frame with ``column`` replaced by ``column − c`` (as float), c its
    mean; the shift every estimator makes before any sum of squares, so the sums keep the
    digits that carry the variances (``bayescred.credibility._common.location``).
    Small pandas frames are shifted by pandas directly, others by their engine."""
    frame = as_frame(data)
    native = _pandas_native(frame)
    if native is not None:
        values = native[column].astype(float)
        c = float(values.mean())
        shifted = native.copy(deep=False)
        shifted[column] = values - c
        return nw.from_native(shifted, eager_only=True), c
    out = frame.select(nw.col(column).cast(nw.Float64).mean().alias("__c"))
    c = float(_eager(out).item(0, "__c"))
    return frame.with_columns((nw.col(column).cast(nw.Float64) - c).alias(column)), c


def largest(data, column: str, *, absolute: bool = False) -> float:
    """max of ``column`` (of |column| when ``absolute``): by pandas for small pandas frames,
    else by the engine."""
    frame = as_frame(data)
    native = _pandas_native(frame)
    if native is not None:
        values = native[column].abs() if absolute else native[column]
        return float(values.max())
    expr = nw.col(column).abs() if absolute else nw.col(column)
    return float(_eager(frame.select(expr.max().alias("__m"))).item(0, "__m"))


def summarise(
    data,
    by: str | Sequence[str],
    response: str,
    weight: str | None = None,
    *,
    check: bool = True,
) -> pd.DataFrame:
    """Per-risk (per-cell) sufficient statistics of a weighted one-way layout.

    Returns one row per level of ``by`` (sorted), with columns

    * ``n``: number of observations T_j;
    * ``weight``: w_j. = sum_t w_jt (= n when unweighted);
    * ``mean``: X_j = sum_t w_jt X_jt / w_j. ;
    * ``within_ss``: sum_t w_jt (X_jt - X_j)^2 (two-pass, no cancellation);

    computed by the engine that holds the data (docs/formulas.md §2).
    """
    by = as_list(by)
    if check:
        frame = validate(data, groups=by, numeric=response, positive=weight, min_groups=1)
    else:
        frame = as_frame(data)
    native = _pandas_native(frame)
    fast = None if native is None else _summarise_fast(native, by, response, weight)
    if fast is not None:
        return fast
    w = nw.col(weight) if weight is not None else nw.lit(1.0)
    # engines such as Dask only aggregate plain columns: form the products first
    base = frame.select(
        *[nw.col(c) for c in by],
        nw.col(response).cast(nw.Float64).alias("__y"),
        w.cast(nw.Float64).alias("__w"),
    ).with_columns((nw.col("__w") * nw.col("__y")).alias("__wy"))
    first = (
        base.group_by(by)
        .agg(nw.len().alias("n"), nw.col("__w").sum().alias("weight"), nw.col("__wy").sum())
        .with_columns((nw.col("__wy") / nw.col("weight")).alias("mean"))
    )
    second = (
        base.join(first.select(*by, "mean"), on=by, how="left")
        .with_columns((nw.col("__w") * (nw.col("__y") - nw.col("mean")) ** 2).alias("__ss"))
        .group_by(by)
        .agg(nw.col("__ss").sum().alias("within_ss"))
    )
    out = first.join(second, on=by, how="left").select(*by, "n", "weight", "mean", "within_ss")
    table = _to_pandas(out).sort_values(by).reset_index(drop=True)
    table["n"] = table["n"].astype("int64")
    return table.set_index(by if len(by) > 1 else by[0])


def cross_products(
    data,
    group: str,
    response: str,
    regressors: Sequence[str],
    weight: str | None = None,
    *,
    intercept: bool = True,
    check: bool = True,
) -> dict:
    """Per-risk weighted cross-products for regression credibility (docs/formulas.md §4).

    With Q_j = [1, regressors] (T_j x p) and W_j = diag(w_jt), returns a dict with
    ``levels`` (sorted risk labels), ``n`` (J,), ``weight`` (J,), ``QWQ`` (J, p, p),
    ``QWy`` (J, p), ``yWy`` (J,) and ``names`` (the p column names of Q). The sums are
    computed by the engine holding the data.
    """
    regressors = as_list(regressors)
    if check:
        frame = validate(data, groups=group, numeric=[response, *regressors], positive=weight, min_groups=1)
    else:
        frame = as_frame(data)
    names = (["(Intercept)"] if intercept else []) + regressors
    native = _pandas_native(frame)
    grouped = None if native is None else _fast_group_codes(native, [group])
    if grouped is not None:
        codes, levels = grouped
        J = len(levels)
        y = native[response].to_numpy(dtype=float)
        w = np.ones(len(y)) if weight is None else native[weight].to_numpy(dtype=float)
        columns = [native[c].to_numpy(dtype=float) for c in regressors]
        Q = np.column_stack(([np.ones(len(y))] if intercept else []) + columns)
        p = Q.shape[1]
        wQ = w[:, None] * Q
        QWQ = np.empty((J, p, p))
        for a in range(p):
            for b in range(a, p):
                QWQ[:, a, b] = QWQ[:, b, a] = np.bincount(codes, wQ[:, a] * Q[:, b], minlength=J)
        return {
            "levels": np.asarray(levels),
            "names": names,
            "n": np.bincount(codes, minlength=J).astype(np.int64),
            "weight": np.bincount(codes, w, minlength=J),
            "QWQ": QWQ,
            "QWy": np.column_stack([np.bincount(codes, wQ[:, a] * y, minlength=J) for a in range(p)]),
            "yWy": np.bincount(codes, w * y * y, minlength=J),
        }
    w = (nw.col(weight) if weight is not None else nw.lit(1.0)).cast(nw.Float64)
    q = ([nw.lit(1.0)] if intercept else []) + [nw.col(c).cast(nw.Float64) for c in regressors]
    y = nw.col(response).cast(nw.Float64)
    p = len(q)
    products = [w.alias("weight"), (w * y * y).alias("yWy")]
    for a in range(p):
        products.append((w * q[a] * y).alias(f"QWy_{a}"))
        for b in range(a, p):
            products.append((w * q[a] * q[b]).alias(f"QWQ_{a}_{b}"))
    cols = ["weight", "yWy"] + [f"QWy_{a}" for a in range(p)] + [
        f"QWQ_{a}_{b}" for a in range(p) for b in range(a, p)
    ]
    rows = frame.select(nw.col(group), *products)
    aggregated = rows.group_by(group).agg(nw.len().alias("n"), *[nw.col(c).sum() for c in cols])
    table = _to_pandas(aggregated).sort_values(group).reset_index(drop=True)
    J = len(table)
    QWQ = np.empty((J, p, p))
    for a in range(p):
        for b in range(a, p):
            QWQ[:, a, b] = QWQ[:, b, a] = table[f"QWQ_{a}_{b}"].to_numpy(float)
    QWy = np.column_stack([table[f"QWy_{a}"].to_numpy(float) for a in range(p)])
    return {
        "levels": table[group].to_numpy(),
        "names": names,
        "n": table["n"].to_numpy(np.int64),
        "weight": table["weight"].to_numpy(float),
        "QWQ": QWQ,
        "QWy": QWy,
        "yWy": table["yWy"].to_numpy(float),
    }


def within_cross_products(
    data,
    group: str,
    columns: Sequence[str],
    weight: str | None = None,
    *,
    check: bool = True,
) -> dict:
    """Per-risk weighted cross-products of ``columns`` centred at each risk's weighted means
    (two passes, as :func:`summarise`, so they cannot cancel below 0): with d_jt the
    deviations of the columns from the risk's weighted means,
    S_j = Σ_t w_jt d_jt d_jt′ (docs/formulas.md §4, the stand-alone residual SS).

    Returns a dict with ``levels`` (sorted risk labels), ``names`` (``columns``) and ``S``
    (J, k, k), computed by the engine holding the data.
    """
    columns = as_list(columns)
    if check:
        frame = validate(data, groups=group, numeric=columns, positive=weight, min_groups=1)
    else:
        frame = as_frame(data)
    k = len(columns)
    native = _pandas_native(frame)
    grouped = None if native is None else _fast_group_codes(native, [group])
    if grouped is not None:
        codes, levels = grouped
        J = len(levels)
        V = np.column_stack([native[c].to_numpy(dtype=float) for c in columns])
        w = np.ones(len(V)) if weight is None else native[weight].to_numpy(dtype=float)
        total = np.bincount(codes, w, minlength=J)
        means = np.column_stack([np.bincount(codes, w * V[:, a], minlength=J) for a in range(k)]) / total[:, None]
        D = V - means[codes]
        wD = w[:, None] * D
        S = np.empty((J, k, k))
        for a in range(k):
            for b in range(a, k):
                S[:, a, b] = S[:, b, a] = np.bincount(codes, wD[:, a] * D[:, b], minlength=J)
        return {"levels": np.asarray(levels), "names": columns, "S": S}
    w = (nw.col(weight) if weight is not None else nw.lit(1.0)).cast(nw.Float64)
    base = frame.select(nw.col(group), w.alias("__w"),
                        *[nw.col(c).cast(nw.Float64).alias(f"__v{i}") for i, c in enumerate(columns)])
    base = base.with_columns(*[(nw.col("__w") * nw.col(f"__v{i}")).alias(f"__wv{i}") for i in range(k)])
    means = base.group_by(group).agg(nw.col("__w").sum(), *[nw.col(f"__wv{i}").sum() for i in range(k)])
    means = means.select(nw.col(group), *[(nw.col(f"__wv{i}") / nw.col("__w")).alias(f"__m{i}") for i in range(k)])
    dev = base.join(means, on=group, how="left").select(
        nw.col(group), nw.col("__w"), *[(nw.col(f"__v{i}") - nw.col(f"__m{i}")).alias(f"__d{i}") for i in range(k)]
    )
    prods = [(nw.col("__w") * nw.col(f"__d{a}") * nw.col(f"__d{b}")).alias(f"__s{a}_{b}")
             for a in range(k) for b in range(a, k)]
    sums = dev.select(nw.col(group), *prods).group_by(group).agg(
        *[nw.col(f"__s{a}_{b}").sum() for a in range(k) for b in range(a, k)]
    )
    table = _to_pandas(sums).sort_values(group).reset_index(drop=True)
    S = np.empty((len(table), k, k))
    for a in range(k):
        for b in range(a, k):
            S[:, a, b] = S[:, b, a] = table[f"__s{a}_{b}"].to_numpy(float)
    return {"levels": table[group].to_numpy(), "names": columns, "S": S}


def claim_totals(
    data,
    by: str | Sequence[str],
    claims: str,
    exposure: str,
    *,
    check: bool = True,
) -> pd.DataFrame:
    """Per-risk sufficient statistics of the Poisson–gamma model (docs/formulas.md §7 (b)).

    One row per level of ``by`` (sorted) with ``n`` (rows), ``exposure`` (Σ e_it),
    ``claims`` (Σ y_it) and ``frequency`` = claims / exposure; summed by the engine holding
    the data.
    """
    by = as_list(by)
    if check:
        frame = validate(data, groups=by, counts=claims, positive=exposure, min_groups=1)
    else:
        frame = as_frame(data)
    base = frame.select(
        *[nw.col(c) for c in by],
        nw.col(exposure).cast(nw.Float64).alias("__e"),
        nw.col(claims).cast(nw.Float64).alias("__y"),
    )
    out = base.group_by(by).agg(
        nw.len().alias("n"), nw.col("__e").sum().alias("exposure"), nw.col("__y").sum().alias("claims")
    )
    table = _to_pandas(out).sort_values(by).reset_index(drop=True)
    table["n"] = table["n"].astype("int64")
    table["claims"] = table["claims"].round().astype("int64")
    table["frequency"] = table["claims"] / table["exposure"]
    return table.set_index(by if len(by) > 1 else by[0])


@dataclass(frozen=True)
class Sufficient:
    """Sufficient statistics of a weighted one-way (or cell) layout under the Gaussian model.

    ``table``: one row per cell (index = the ``by`` columns) with ``n`` (observations),
    ``weight`` (w_c = Σ w) and ``mean`` (weighted cell mean). ``within_ss`` = Σ_c Σ_t
    w (y − ȳ_c)², pooled over cells, on ``within_df`` = N − K degrees of freedom. The
    Gaussian likelihood of every credibility model whose risk effects are constant within a
    cell depends on the data only through these (docs/formulas.md §2, §6), so raw rows
    (:func:`sufficient`) and published cell summaries (:func:`from_summaries`) give the
    same object.
    """

    by: tuple[str, ...]
    table: pd.DataFrame
    within_ss: float
    within_df: int

    @property
    def n_obs(self) -> int:
        """N, the number of observations."""
        return int(self.table["n"].sum())

    @property
    def n_cells(self) -> int:
        """K, the number of cells (risks)."""
        return len(self.table)

    @property
    def within(self) -> float:
        """Pooled within-cell variance per unit weight, within_ss / within_df (NaN when df = 0)."""
        return self.within_ss / self.within_df if self.within_df > 0 else float("nan")


def sufficient(data, by: str | Sequence[str], response: str, weight: str | None = None) -> Sufficient:
    """:class:`Sufficient` statistics from raw rows (the reduction runs in the data's engine)."""
    by = as_list(by)
    table = summarise(data, by, response, weight)
    return Sufficient(
        by=tuple(by),
        table=table[["n", "weight", "mean"]].copy(),
        within_ss=float(table["within_ss"].sum()),
        within_df=int(table["n"].sum() - len(table)),
    )


def from_summaries(
    cells,
    by: str | Sequence[str],
    mean: str,
    weight: str,
    *,
    n: str | None = None,
    within_ss: float | None = None,
    within_df: int | None = None,
) -> Sufficient:
    """:class:`Sufficient` statistics from published cell summaries (aggregated input).

    ``cells`` has one row per cell with the cell ``mean`` and its ``weight``; ``n`` names the
    column of observation counts (default: the weights are the counts, i.e. unweighted
    observations). ``within_ss`` and ``within_df`` are the pooled within-cell sum of squares
    and its degrees of freedom; when not given they are taken from ``cells.attrs`` (as
    ``bc.datasets.load("credit_insurance")`` carries them), and ``within_df`` defaults to
    N − K. A ``within_df`` other than N − K is inconsistent and raises
    :class:`~bayescred.errors.SummaryError`.
    """
    by = as_list(by)
    counts = n if n is not None else weight
    frame = validate(cells, groups=by, numeric=mean, positive=[weight, counts], counts=counts, unique=by, min_groups=1)
    attrs = getattr(cells, "attrs", {}) or {}
    if within_ss is None:
        within_ss = attrs.get("within_ss")
    if within_df is None:
        within_df = attrs.get("within_df")
    if within_ss is None:
        raise SummaryError(
            "the pooled within-cell sum of squares is needed (within_ss=); cell means and weights alone "
            "do not determine the within variance",
            column="within_ss",
        )
    within_ss = float(within_ss)
    if not np.isfinite(within_ss):
        raise NonFiniteError("must be finite", column="within_ss")
    if within_ss < 0:
        raise NegativeValueError("a sum of squares must be non-negative", column="within_ss")
    cols = [*by, mean, weight] + ([n] if n is not None else [])
    table = _to_pandas(frame.select(*dict.fromkeys(cols))).sort_values(by).reset_index(drop=True)
    table = pd.DataFrame(
        {
            **{c: table[c] for c in by},
            "n": table[counts].round().astype("int64"),
            "weight": table[weight].astype(float),
            "mean": table[mean].astype(float),
        }
    ).set_index(by if len(by) > 1 else by[0])
    df = int(table["n"].sum() - len(table))
    if within_df is None:
        within_df = df
    if within_df != df:
        raise SummaryError(
            f"within_df = {within_df} does not match N - K = {table['n'].sum()} - {len(table)} = {df}",
            column="within_df",
        )
    if df == 0 and within_ss > 0:
        raise SummaryError("within_ss > 0 but every cell has a single observation", column="within_ss")
    return Sufficient(by=tuple(by), table=table, within_ss=within_ss, within_df=int(within_df))
