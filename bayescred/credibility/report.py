"""``summary()`` and ``predict()`` of every classical credibility fit, as actuar's.

``summary()`` is laid out as actuar's ``summary(cm(...))``: the structure parameters
(collective premium, between and within variances), then "Detailed premiums", one row
per risk: individual estimate, weight, credibility factor, credibility premium (for
regression credibility: individual coefficients, credibility matrix, adjusted
coefficients and the premium at the forecast period, one line per coefficient). Numbers
are printed as R prints a column: 7 significant digits, one number of decimals per column.

``predict(newdata)`` is actuar's ``predict(fit, newdata=)``: the premiums of the risks named
in ``newdata`` (its grouping columns); for regression credibility the forecast period is
chosen here, not at fit time: ``period=``, the time column of ``newdata`` (row by row), or
a ``newdata`` without the grouping column whose rows are periods applied to every risk.
"""

from __future__ import annotations

import math

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd

from ..errors import DataError, NewLevelError

DIGITS = 7  # R's options(digits = 7)


def _decimals(x: float, digits: int = DIGITS) -> int:
    """Decimals R needs to show x to ``digits`` significant digits without trailing zeros."""
    if x == 0 or not math.isfinite(x):
        return 0
    text = f"{x:.{digits - 1}e}"
    mantissa, exp = text.split("e")
    sig = len(mantissa.replace("-", "").replace(".", "").rstrip("0")) or 1
    return max(sig - 1 - int(exp), 0)


def format_column(values, digits: int = DIGITS) -> list[str]:
    """Format numbers as R formats a numeric vector (common decimals, fixed notation)."""
    vals = [float(v) for v in values]
    dec = max((_decimals(v, digits) for v in vals), default=0)
    out = [f"{v:.{dec}f}" if math.isfinite(v) else ("Inf" if v > 0 else "-Inf" if v < 0 else "NA") for v in vals]
    width = max(map(len, out), default=0)
    return [v.rjust(width) for v in out]


def _table(header: list[str], columns: list[list[str]], indent: str = "    ") -> list[str]:
    """Left-aligned columns, as actuar prints its detailed premiums."""
    widths = [max(len(h), *(len(c) for c in col)) for h, col in zip(header, columns)]
    lines = [indent + " ".join(h.ljust(w) for h, w in zip(header, widths))]
    for r in range(len(columns[0])):
        lines.append(indent + " ".join(col[r].ljust(w) for col, w in zip(columns, widths)))
    return lines


def _level_name(fit) -> str:
    names = [n for n in fit.table.index.names if n is not None]
    return ":".join(names) if names else "risk"


def summary(fit, max_rows: int | None = None) -> str:
    """actuar's ``summary(cm(...))`` for any classical fit (module doc)."""
    s, level = fit.structure, _level_name(fit)
    lines = [f"{fit.model} credibility ({fit.method}), {len(fit.table)} {fit._rows}", "",
             "Structure Parameters Estimators", ""]
    if hasattr(fit, "premium_at"):
        coll = s["collective"]
        lines.append("  Collective premium: " + " ".join(format_column([v])[0] for v in coll))
        lines.append("")
        between = s["between"].to_numpy()
        cols = [format_column(between[:, c]) for c in range(between.shape[1])]
        width = max(len(v) for c in cols for v in c)
        label = f"  Between {level} variance: "
        for r in range(between.shape[0]):
            lead = label if r == 0 else " " * len(label)
            lines.append(lead + " ".join(c[r].rjust(width) for c in cols))
    else:
        lines.append("  Collective premium: " + format_column([s["collective"]])[0])
        lines.append("")
        between = s["between"]
        if isinstance(between, dict):
            for name, value in between.items():
                lines.append(f"  Between {name} variance: " + format_column([value])[0])
        elif isinstance(between, pd.Series):
            for name, value in between.items():
                lines.append(f"  Between {name} variance: " + format_column([value])[0])
        else:
            lines.append(f"  Between {level} variance: " + format_column([between])[0])
    lines.append(f"  Within {level} variance: " + format_column([s["within"]])[0])
    if fit.boundary:
        lines.append(f"  BOUNDARY: {', '.join(fit.boundary_parameters)} at 0")
    lines += ["", "Detailed premiums", ""]
    table = fit.table if max_rows is None else fit.table.head(max_rows)
    labels = [str(i) if not isinstance(i, tuple) else ":".join(map(str, i)) for i in table.index]
    if hasattr(fit, "premium_at"):
        lines += _regression_rows(fit, table, labels, level)
    elif {"mean", "weight", "Z", "premium"} <= set(table.columns):
        lines += _table([level, "Indiv. mean", "Weight", "Cred. factor", "Cred. premium"],
                        [labels, format_column(table["mean"]), format_column(table["weight"]),
                         format_column(table["Z"]), format_column(table["premium"])])
    else:
        lines.append(table.to_string(float_format=lambda v: f"{v:.7g}"))
    if max_rows is not None and len(fit.table) > max_rows:
        lines.append(f"    ... {len(fit.table) - max_rows} more {fit._rows}")
    return "\n".join(lines)


def _regression_rows(fit, table, labels, level) -> list[str]:
    names = list(fit.structure["collective"].index)
    positions = [fit.table.index.get_loc(i) for i in table.index]
    p = len(names)
    B = np.array([[table[f"B_{n}"].iloc[r] for n in names] for r in range(len(table))])
    cw = fit._cw[positions]
    A = fit.A[positions]
    prem = fit.premium_at(fit.structure["future"]).iloc[positions].to_numpy()
    flat = lambda a: format_column(a.ravel())  # noqa: E731 - one format per printed column
    risk_col, prem_col = [], []
    for lab in labels:
        risk_col += [lab] + [""] * (p - 1)
    for v in format_column(prem):
        prem_col += [v] + [""] * (p - 1)
    indiv, adj = flat(B), flat(cw)
    mat = np.array(flat(A)).reshape(A.shape)  # one format for the whole matrix, as R's
    cred = [" ".join(row) for row in mat.reshape(-1, p)]
    return _table([level, "Indiv. coef.", "Cred. matrix", "Adj. coef.", "Cred. premium"],
                  [risk_col, indiv, cred, adj, prem_col])


def _positions(fit, frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    index = fit.table.index
    if len(keys) == 1:
        wanted = pd.Index(frame[keys[0]])
    else:
        wanted = pd.MultiIndex.from_frame(frame[keys])
    pos = index.get_indexer(wanted)
    if (pos < 0).any():
        bad = list(dict.fromkeys(wanted[pos < 0]))
        raise NewLevelError(f"risk(s) {', '.join(map(str, bad[:5]))} were not in the fitted data", column=keys[0],
                            rows=list(frame.index[pos < 0]))
    return pos


def predict(fit, newdata=None, period=None, regressors=None):
    """Credibility premiums (module doc). Returns a Series named ``premium``: by risk, or
    by row of ``newdata`` when it names the risks (a risks × periods frame for a list of
    periods)."""
    regression = hasattr(fit, "premium_at")
    if newdata is not None and not isinstance(newdata, pd.DataFrame) and np.ndim(newdata) <= 1 \
            and np.asarray(newdata).dtype.kind in "iuf":
        newdata, period = None, newdata  # a period, as in predict(fit, 13)
    if not regression and (period is not None or regressors):
        raise DataError(f"{fit.model} credibility has no forecast period; predict() takes the risks only")
    if newdata is None:
        if not regression:
            return fit.premiums()
        return fit.premium_at(fit.structure["future"] if period is None else period, regressors)
    if not isinstance(newdata, pd.DataFrame):
        newdata = nw.from_native(newdata, eager_only=True).to_pandas()
    keys = [k for k in fit.table.index.names if k is not None]
    if not all(k in newdata.columns for k in keys):
        if not regression:
            raise DataError(f"newdata needs the grouping column(s) {', '.join(keys)}", column=keys[0])
        if fit._time not in newdata.columns:
            raise DataError("newdata needs the grouping column or the time column", column=fit._time)
        return fit.premium_at(newdata[fit._time].to_numpy(float), _regressors(fit, newdata.iloc[0], regressors))
    pos = _positions(fit, newdata, keys)
    if not regression:
        values = fit.table["premium"].to_numpy()[pos]
    else:
        values = np.empty(len(newdata))
        for r, (_, row) in enumerate(newdata.iterrows()):
            t = period if period is not None else row[fit._time] if fit._time in newdata else fit.structure["future"]
            values[r] = fit.premium_at(float(t), _regressors(fit, row, regressors)).iloc[pos[r]]
    return pd.Series(values, index=newdata.index, name="premium")


def _regressors(fit, row, given):
    out = dict(given or {})
    for name in fit._extra:
        if name in row.index and name not in out:
            out[name] = row[name]
    return out or None
