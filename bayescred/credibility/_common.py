"""Shared pieces of the classical credibility estimators: the fit object, data preparation
(validation, per-risk reduction through :mod:`bayescred.portfolio`) and the
Bühlmann–Straub building blocks that several models reuse."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd

from ..errors import (
    BoundaryWarning,
    ConvergenceWarning,
    TooFewPeriodsError,
    TooFewRisksError,
)
from .._arguments import check_number, check_variance, column_arguments
from ..portfolio import as_list, centred, largest, offending_rows, summarise, validate

__all__ = [
    "CredibilityFit", "prepare", "all_rows", "rows_of", "require_periods", "pooled_within",
    "between_unbiased", "bichsel_straub", "truncate", "location", "zero_within", "flag_zero_within",
    "check_variance", "check_number", "magnitude",
]

# A variance below (ZERO_SD x the data's magnitude)^2 is below double-precision resolution of
# the data themselves (their spacing is ~2.2e-16 x magnitude), so it is treated as exactly 0.
ZERO_SD = 64 * np.finfo(float).eps


@dataclass(repr=False)
class CredibilityFit:
    """Result of a classical credibility estimator.

    ``structure``: dict of structure parameters ("collective", "between" (VHM), "within"
    (EPV), "k" = within/between, plus model-specific entries); ``table``: one row per risk
    (weight, mean = stand-alone estimate, Z, premium); ``boundary``: True when a variance
    estimate was negative and truncated to 0, or the within variance is 0 (every risk's
    observations agree exactly); a :class:`BoundaryWarning` was issued and the premiums are
    the limiting ones (Z = 0 for a zero between variance, Z = 1 for a zero within variance).
    """

    model: str
    method: str
    structure: dict
    table: pd.DataFrame
    boundary: bool = False
    boundary_parameters: list = field(default_factory=list)
    _rows = "risks"  # what a table row is, for the summary

    def premiums(self) -> pd.Series:
        """The credibility premium per risk (a copy of ``table["premium"]``)."""
        return self.table["premium"].copy()

    def summary(self, max_rows: int | None = 10) -> str:
        """actuar's ``summary(cm(...))``: structure parameters, then the premiums of the first
        ``max_rows`` risks (None: all). See :mod:`bayescred.credibility.report`."""
        from .report import summary

        return summary(self, max_rows)

    def __repr__(self) -> str:
        return self.summary()

    def predict(self, newdata=None, *, period=None, regressors=None) -> pd.Series | pd.DataFrame:
        """Premiums as actuar's ``predict(fit, newdata=)``: of the risks in ``newdata`` (its
        grouping columns; all risks when None); regression credibility takes the forecast
        period here (``period=``, a number, or the time column of ``newdata``). See
        :mod:`bayescred.credibility.report`."""
        from .report import predict

        return predict(self, newdata, period, regressors)


def rows_of(frame, column, labels) -> list:
    """Caller's row labels of the rows whose ``column`` value is one of ``labels``."""
    return offending_rows(frame, nw.col(column).is_in(list(labels)))


def prepare(data, keys, response, weight, *, regressors=(), min_risks: int = 2):
    """Validate the columns and reduce to per-risk sufficient statistics.

    The checks are :func:`bayescred.portfolio.validate`'s, the same in every arm: weights
    must be strictly positive (a zero weight raises :class:`ZeroWeightError`, a negative one
    :class:`NonPositiveError`, both naming the rows). Returns ``(frame, stats)``: the
    narwhals frame actually used, with the response centred (see :func:`location`), and
    :func:`bayescred.portfolio.summarise` of it by ``keys``. ``stats.attrs["location"]`` is
    the constant subtracted (every estimator adds it back to means and premiums) and
    ``stats.attrs["magnitude"]`` the largest |response| before centring.
    """
    column_arguments(group=keys, response=response, weight=weight, regressors=list(regressors))
    keys = as_list(keys)
    frame = validate(data, groups=keys, numeric=[response, *regressors], positive=weight, min_groups=1)
    frame, c = location(frame, response)
    stats = summarise(frame, by=keys, response=response, weight=weight, check=False)
    stats.attrs["location"] = c
    stats.attrs["magnitude"] = magnitude(frame, response, c)
    if len(stats) < min_risks:
        raise TooFewRisksError(
            f"needs at least {min_risks} risks, found {len(stats)} ({', '.join(map(str, stats.index))})",
            column=", ".join(keys),
            rows=all_rows(frame, keys),
        )
    return frame, stats


def location(frame, response):
    """Centre the response before anything is computed: returns the frame with
    ``response`` replaced by ``response − c`` and ``c``, the mean response.

    Every estimator is equivariant under a shift of the response (variances unchanged,
    means and premiums moved by the shift), but sums of squares of un-centred data lose
    the digits that carry the variances: at +1e10 the Hachemeister within variance came
    out 57% off. ``y − c`` is exact in floating point when y and c are close (Sterbenz), so
    the centred data carry every digit of the original ones."""
    return centred(frame, response)


def magnitude(frame, response, c) -> float:
    """The largest |response| before centring at ``c`` (the scale of the data's digits)."""
    return largest(frame, response, absolute=True) + abs(c)


def zero_within(within: float, stats) -> bool:
    """True when the within variance is 0 at the resolution of the data: all responses of
    each risk equal (or, for regression, exactly on each risk's line)."""
    return within <= (ZERO_SD * stats.attrs.get("magnitude", 0.0)) ** 2


def flag_zero_within(flagged: list, what: str = "within") -> None:
    """Record and warn: a zero within variance is the boundary of full credibility."""
    flagged.append(what)
    warnings.warn(
        f"the estimate of {what} is 0 (every risk's observations agree exactly); "
        "limiting premium: full credibility (Z = 1) where the between variance is positive, "
        "the collective where it is 0",
        BoundaryWarning,
        stacklevel=3,
    )


def all_rows(frame, keys) -> list:
    """Every row label of the frame (the grouping columns hold no missing values)."""
    return offending_rows(frame, ~nw.col(as_list(keys)[0]).is_null())


def _key_in(keys, labels):
    """Expression selecting the rows whose key (one column or a tuple of columns) is in labels."""
    if len(keys) == 1:
        return nw.col(keys[0]).is_in(list(labels))
    expr = nw.lit(False)
    for label in labels:
        term = nw.lit(True)
        for k, v in zip(keys, label):
            term = term & (nw.col(k) == v)
        expr = expr | term
    return expr


def require_periods(frame, keys, stats, minimum: int, why: str):
    """Raise :class:`TooFewPeriodsError` naming the risks (and rows) with fewer than
    ``minimum`` observations."""
    few = stats["n"].to_numpy() < minimum
    if few.any():
        short = stats.index[few]
        raise TooFewPeriodsError(
            f"risk(s) {', '.join(map(str, short))} have fewer than {minimum} periods; {why}",
            column=", ".join(as_list(keys)),
            rows=offending_rows(frame, _key_in(as_list(keys), short)),
        )


def pooled_within(stats, frame, keys) -> float:
    """Unbiased EPV σ² = Σ_j Σ_t w_jt (X_jt − X_j)² / Σ_j (T_j − 1) (seed
    004_07f8365c92996b9b.txt eq. 3.22). Needs at least one risk with two periods."""
    df = int((stats["n"] - 1).sum())
    if df == 0:
        raise TooFewPeriodsError(
            "every risk has a single period, so the within (EPV) variance cannot be estimated; "
            "give within= or add periods",
            column=", ".join(as_list(keys)),
            rows=all_rows(frame, keys),
        )
    return float(stats["within_ss"].sum()) / df


def between_unbiased(mean, weight, within) -> float:
    """Unbiased VHM of Bühlmann–Straub (seed 004_07f8365c92996b9b.txt eq. 3.23; actuar's
    ``bvar.unbiased``), before truncation:
    τ̂² = [Σ w_j (X_j − X_ww)² − (J − 1) σ̂²] / [w − Σ w_j² / w]."""
    mean, weight = np.asarray(mean, float), np.asarray(weight, float)
    total = weight.sum()
    centre = weight @ mean / total
    denominator = _spread_of_weights(weight)
    if not denominator > 0:
        return 0.0  # one risk carries all the weight: no information on the between variance
    return float((weight @ (mean - centre) ** 2 - (len(mean) - 1) * within) / denominator)


def between_matrix_unbiased(B, Minv, within, project: bool = True) -> np.ndarray:
    """Halliwell's moment estimator of the full between matrix of regression credibility, the
    matrix analogue of :func:`between_unbiased` (docs/formulas.md §4):
    Û = Σ_j (B_j − B̄)(B_j − B̄)′/(J − 1) − σ̂² Σ_j M_j⁻¹/J, B̄ the simple mean. Unbiased in
    any design, since E Σ_j (B_j − B̄)(B_j − B̄)′ = (1 − 1/J) Σ_j (U + σ²M_j⁻¹). Returned
    positive semi-definite: negative eigenvalues are set to 0 (the caller flags a singular U);
    ``project=False`` returns it as estimated (a caller that bounds the eigenvalues itself)."""
    J = len(B)
    d = B - B.sum(axis=0) / J
    U = d.T @ d / (J - 1) - within * (Minv.sum(axis=0) / J)
    U = (U + U.T) / 2
    if not project:
        return U
    values, vectors = np.linalg.eigh(U)
    if values[0] >= 0:
        return U
    U = (vectors * np.maximum(values, 0.0)) @ vectors.T
    return (U + U.T) / 2


def _spread_of_weights(weight) -> float:
    """w − Σ w_j²/w = Σ_j w_j (w − w_j)/w without cancellation when one weight dominates
    (the largest risk's complement is summed from the others, not subtracted)."""
    total = weight.sum()
    others = total - weight
    top = int(np.argmax(weight))
    others[top] = np.delete(weight, top).sum()
    return float(weight @ others / total)


def bichsel_straub(mean, weight, within, start, tol: float = 1e-13, maxit: int = 10_000) -> float:
    """Iterative (Bichsel–Straub / De Vylder) pseudo-estimator of the VHM (docs/formulas.md §2;
    actuar's ``bvar.iterative``): τ² ← Σ Z_j (X_j − X_z)² / (J − 1) until the relative
    change is below ``tol``."""
    mean, weight = np.asarray(mean, float), np.asarray(weight, float)
    tau2 = start
    for _ in range(maxit):
        z = weight / (weight + within / tau2)
        xz = z @ mean / z.sum()
        new = z @ (mean - xz) ** 2 / (len(mean) - 1)
        if new <= 0:
            return 0.0
        if abs(new - tau2) < tol * tau2:
            return float(new)
        tau2 = new
    warnings.warn("Bichsel–Straub iteration did not converge", ConvergenceWarning, stacklevel=3)
    return float(tau2)


def truncate(value: float, name: str, flagged: list) -> float:
    """max(value, 0); a negative (or zero) estimate is recorded in ``flagged`` and warned about."""
    if value > 0:
        return float(value)
    flagged.append(name)
    warnings.warn(
        f"the estimate of {name} is {value:.6g} <= 0; truncated to 0 (complete pooling, Z = 0)",
        BoundaryWarning,
        stacklevel=3,
    )
    return 0.0
