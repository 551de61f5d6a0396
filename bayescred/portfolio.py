"""Validation and sufficient statistics: the one door every model's data goes through.

Every credibility model in bayescred depends on the data only through per-risk (or
per-cell) sufficient statistics: the number of observations, the total weight, the
weighted mean and the weighted within sum of squares (FORMULAS.md §2; seed
004_07f8365c92996b9b.txt eqs 3.14-3.23), plus the cross-products Q'WQ, Q'Wy, y'Wy for
regression credibility (FORMULAS.md §4). So the reduction runs where the data lives:
pandas, polars, a DuckDB relation or a Dask frame all go through narwhals, the group-by
is executed by that engine, and only the per-risk summaries come back (as pandas).

The caller's frame is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd

from .errors import (
    DataError,
    EmptyDataError,
    MissingColumnError,
    MissingValueError,
    NegativeValueError,
    NonFiniteError,
    NonPositiveError,
    NotIntegerError,
    NotNumericError,
    TooFewRisksError,
)

__all__ = ["as_frame", "validate", "summarise", "cross_products", "as_list"]


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
    except TypeError as exc:
        raise DataError(
            f"expected a data frame (pandas, polars, DuckDB relation, Dask, ...), got {type(data).__name__}"
        ) from exc


def _is_lazy(frame) -> bool:
    return isinstance(frame, nw.LazyFrame)


def _offending_rows(frame, mask_expr) -> list:
    """Labels of the rows where ``mask_expr`` is true: the pandas index labels, row
    positions for other eager frames, or (for lazy engines, which have no row order)
    the first few offending rows written out."""
    if _is_lazy(frame):
        rows = frame.filter(mask_expr).head(5).collect().rows(named=True)
        return [str(r) for r in rows]
    native = frame.to_native()
    mask = frame.select(mask_expr.alias("__m")).get_column("__m").to_numpy()
    mask = np.asarray(mask, dtype=bool)
    if isinstance(native, pd.DataFrame):
        return list(native.index[mask])
    return list(np.flatnonzero(mask))


def _any(frame, expr) -> bool:
    out = frame.select(expr.any().alias("__any"))
    if _is_lazy(out):
        out = out.collect()
    value = out.item(0, "__any")
    return bool(value) if value is not None else False


def _count(frame) -> int:
    out = frame.select(nw.len().alias("__n"))
    if _is_lazy(out):
        out = out.collect()
    return int(out.item(0, "__n"))


def validate(
    data,
    *,
    groups: str | Sequence[str] | None = None,
    numeric: str | Sequence[str] | None = None,
    positive: str | Sequence[str] | None = None,
    counts: str | Sequence[str] | None = None,
    min_groups: int = 2,
):
    """Check the columns a model needs, before any computation; return the narwhals frame.

    * ``groups``: present, no missing values; together with ``min_groups`` distinct risks.
    * ``numeric``: present, numeric dtype, no missing values, finite.
    * ``positive``: numeric and strictly positive (weights, exposures).
    * ``counts``: numeric, non-negative whole numbers (claim counts).

    Each failure raises its own :class:`~bayescred.errors.DataError` subclass naming the
    column and the offending rows.
    """
    frame = as_frame(data)
    groups, numeric, positive, counts = map(as_list, (groups, numeric, positive, counts))
    schema = frame.collect_schema() if _is_lazy(frame) else frame.schema
    for col in dict.fromkeys(groups + numeric + positive + counts):
        if col not in schema:
            raise MissingColumnError(
                f"not in the data; available columns: {', '.join(map(str, schema))}", column=col
            )
    if _count(frame) == 0:
        raise EmptyDataError("the data has no rows")
    for col in groups:
        bad = nw.col(col).is_null()
        if _any(frame, bad):
            raise MissingValueError("grouping column has missing values", col, _offending_rows(frame, bad))
    for col in dict.fromkeys(numeric + positive + counts):
        if not schema[col].is_numeric() or schema[col] == nw.Boolean:
            raise NotNumericError(f"must be numeric, found dtype {schema[col]}", column=col)
        missing = nw.col(col).is_null() | nw.col(col).is_nan()
        if _any(frame, missing):
            raise MissingValueError("has missing values", col, _offending_rows(frame, missing))
        if schema[col].is_float():
            infinite = ~nw.col(col).is_finite()
            if _any(frame, infinite):
                raise NonFiniteError("has infinite values", col, _offending_rows(frame, infinite))
    for col in positive:
        bad = nw.col(col) <= 0
        if _any(frame, bad):
            raise NonPositiveError("must be strictly positive", col, _offending_rows(frame, bad))
    for col in counts:
        neg = nw.col(col) < 0
        if _any(frame, neg):
            raise NegativeValueError("claim counts must be non-negative", col, _offending_rows(frame, neg))
        frac = nw.col(col) != nw.col(col).round(0)
        if _any(frame, frac):
            raise NotIntegerError("claim counts must be whole numbers", col, _offending_rows(frame, frac))
    if groups and min_groups > 1:
        levels = frame.select(groups).unique()
        n_levels = _count(levels)
        if n_levels < min_groups:
            raise TooFewRisksError(
                f"needs at least {min_groups} risks, found {n_levels}", column=", ".join(groups)
            )
    return frame


def _to_pandas(frame) -> pd.DataFrame:
    if _is_lazy(frame):
        frame = frame.collect()
    return frame.to_pandas()


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

    computed by the engine that holds the data (FORMULAS.md §2).
    """
    by = as_list(by)
    if check:
        frame = validate(data, groups=by, numeric=response, positive=weight, min_groups=1)
    else:
        frame = as_frame(data)
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
    """Per-risk weighted cross-products for regression credibility (FORMULAS.md §4).

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
