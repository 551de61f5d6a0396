"""Gamma severity credibility: cell statistics, the exact marginal likelihood and the exact
conditional draws of the risk effects (docs/formulas.md §12).

Claim sizes of risk i are Gamma(shape ν, rate λ_i) and λ_i ~ Gamma(α, β), so the risk's mean
claim μ(Θ_i) = ν/λ_i is inverse gamma with mean μ = νβ/(α − 1). A cell c of risk i (a period,
or a single claim) reports n_c claims and their average x̄_c ~ Gamma(n_c ν, n_c λ_i). With
N_i = Σ_c n_c and S_i = Σ_c n_c x̄_c, integrating λ_i out gives, per risk,

    log L_i = ν A_i − B_i − Σ_c log Γ(n_c ν)
              + α log β − log Γ(α) + log Γ(α + ν N_i) − (α + ν N_i) log(β + S_i),

A_i = Σ_c n_c log(n_c x̄_c), B_i = Σ_c log x̄_c: a generalised beta prime law. Given
(ν, α, β), λ_i | data ~ Gamma(α + ν N_i, β + S_i) (conjugate), so the premium
E[ν/λ_i | data] = ν(β + S_i)/(α + ν N_i − 1) = Z_i x̄_i + (1 − Z_i) μ with
Z_i = ν N_i/(ν N_i + α − 1).

The log-likelihood is written once for numpy and pytensor (argument ``xp``); the data enter
through :class:`SeverityCells`: per-risk sums and, for the Γ(n_c ν) terms, the distinct claim
counts of each risk with their multiplicity (so one row per claim costs one term per risk).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd

from .._arguments import column_arguments
from ..errors import DegenerateResponseError
from ..portfolio import _to_pandas, summarise, validate
from .arrays import segsum

__all__ = ["SeverityCells", "cells", "log_marginal", "log_conditional", "posterior_shape_rate",
           "premium", "credibility_factor", "rate_of", "components", "draw_rates", "without_effects"]

# ν N above which the log-likelihood's terms (~ ν N log(ν N)) carry rounding errors above 1e-3
# in double precision: the claim sizes vary too little for a gamma likelihood to be evaluated
_RESOLVABLE = 1e11


@dataclass(frozen=True)
class SeverityCells:
    """Sufficient statistics of the gamma severity model, one entry per risk (sorted labels).

    ``cells`` T_i (rows), ``claims`` N_i = Σ n_c, ``amount`` S_i = Σ n_c x̄_c, ``mean`` x̄_i =
    S_i/N_i, ``within_ss`` Σ_c n_c (x̄_c − x̄_i)² (Bühlmann–Straub's, claim-count weights),
    ``log_a`` A_i = Σ_c n_c log(n_c x̄_c), ``log_b`` B_i = Σ_c log x̄_c; and the Γ(n_c ν) table:
    ``count_risk`` (risk position), ``count_n`` (a claim count n) and ``count_cells`` (how many
    of the risk's cells have n claims). ``group`` and ``severity`` name the columns,
    ``magnitude`` is the largest severity and ``frame`` the validated data (for errors that name
    rows).
    """

    group: str
    severity: str
    levels: pd.Index
    cells: np.ndarray
    claims: np.ndarray
    amount: np.ndarray
    within_ss: np.ndarray
    log_a: np.ndarray
    log_b: np.ndarray
    count_risk: np.ndarray
    count_n: np.ndarray
    count_cells: np.ndarray
    magnitude: float
    frame: object = field(repr=False, compare=False)

    @property
    def mean(self) -> np.ndarray:
        return self.amount / self.claims

    @property
    def size(self) -> int:
        return len(self.levels)

    def arrays(self) -> dict:
        """The statistics :func:`log_marginal` reads, as numpy arrays."""
        return {"claims": self.claims, "amount": self.amount, "log_a": self.log_a, "log_b": self.log_b,
                "count_risk": self.count_risk, "count_n": self.count_n, "count_cells": self.count_cells,
                "size": self.size}


def cells(data, group: str, severity: str, claims: str | None = None, *, min_risks: int = 2) -> SeverityCells:
    """Validate and reduce the data once, for every arm (classical, empirical Bayes, Bayes).

    ``data``: one row per claim (``claims=None``: ``severity`` is the claim size) or one row per
    cell with ``severity`` the average claim and ``claims`` the number of claims (a whole number
    ≥ 1). Severities must be strictly positive (gamma claim sizes). The sums are formed by the
    engine that holds the data."""
    column_arguments(group=group, severity=severity, claims=claims)
    positive = [severity] if claims is None else [severity, claims]
    frame = validate(data, groups=group, positive=positive, counts=claims, min_groups=min_risks)
    stats = summarise(frame, by=group, response=severity, weight=claims, check=False)
    n = nw.col(claims).cast(nw.Float64) if claims is not None else nw.lit(1.0)
    base = frame.select(nw.col(group), n.alias("__n"), nw.col(severity).cast(nw.Float64).alias("__x"))
    base = base.with_columns(
        (nw.col("__n") * (nw.col("__n") * nw.col("__x")).log()).alias("__a"), nw.col("__x").log().alias("__b"),
    )
    logs = _to_pandas(base.group_by(group).agg(nw.col("__a").sum(), nw.col("__b").sum(), nw.col("__x").max()))
    logs = logs.set_index(group).reindex(stats.index)
    counts = _to_pandas(base.group_by(group, "__n").agg(nw.len().alias("__k"))).sort_values([group, "__n"])
    return SeverityCells(
        group=group,
        severity=severity,
        levels=stats.index,
        cells=stats["n"].to_numpy(),
        claims=stats["weight"].to_numpy(float),
        amount=(stats["weight"] * stats["mean"]).to_numpy(float),
        within_ss=stats["within_ss"].to_numpy(float),
        log_a=logs["__a"].to_numpy(float),
        log_b=logs["__b"].to_numpy(float),
        count_risk=stats.index.get_indexer(counts[group]),
        count_n=counts["__n"].to_numpy(float),
        count_cells=counts["__k"].to_numpy(float),
        magnitude=float(logs["__x"].max()),
        frame=frame,
    )


def _gammaln(xp):
    """log Γ in the namespace ``xp`` (pytensor.tensor has it; numpy has not: scipy's, loaded
    on first use so that importing the classical estimators does not load scipy)."""
    if hasattr(xp, "gammaln"):
        return xp.gammaln
    from scipy.special import gammaln

    return gammaln


def _rows(xp, nu, stats):
    """The part of the data density that does not involve λ_i: ν A_i − B_i − Σ_c log Γ(n_c ν)."""
    lgamma = _gammaln(xp)
    terms = stats["count_cells"] * lgamma(stats["count_n"] * nu)
    return nu * stats["log_a"] - stats["log_b"] - segsum(xp, terms, stats["count_risk"], stats["size"])


def log_marginal(xp, nu, alpha, beta, stats):
    """Exact log marginal likelihood of each risk's cells, λ_i integrated out (module docstring),
    with α log β − (α + νN) log(β + S) written as −νN log β − (α + νN) log1p(S/β) so that large
    α loses no digits there. numpy or pytensor (``xp``); ``nu``, ``alpha``, ``beta`` scalars or
    (draws, 1) arrays."""
    lgamma = _gammaln(xp)
    shape = alpha + nu * stats["claims"]
    return (_rows(xp, nu, stats) + lgamma(shape) - lgamma(alpha)
            - nu * stats["claims"] * xp.log(beta) - shape * xp.log1p(stats["amount"] / beta))


def log_conditional(xp, nu, rate, stats):
    """log density of each risk's cells given its rate λ_i (the latent-effect likelihood)."""
    return _rows(xp, nu, stats) + nu * stats["claims"] * xp.log(rate) - rate * stats["amount"]


def rate_of(nu, alpha, collective):
    """β = μ(α − 1)/ν: the risk effect's rate for a collective mean claim μ."""
    return collective * (alpha - 1.0) / nu


def components(nu, alpha, collective) -> dict:
    """The structure in Bühlmann–Straub units (per claim): between = Var μ(Θ) = μ²/(α − 2),
    within = E Var(X | Θ) = (μ² + between)/ν, k = within/between = (α − 1)/ν."""
    between = collective**2 / (alpha - 2.0)
    return {"collective": collective, "between": between, "within": (collective**2 + between) / nu,
            "k": (alpha - 1.0) / nu}


def posterior_shape_rate(nu, alpha, beta, stats):
    """λ_i | data ~ Gamma(α + ν N_i, β + S_i)."""
    return alpha + nu * stats["claims"], beta + stats["amount"]


def premium(nu, alpha, beta, stats):
    """E[ν/λ_i | data] = ν(β + S_i)/(α + ν N_i − 1), the conjugate credibility premium."""
    shape, rate = posterior_shape_rate(nu, alpha, beta, stats)
    return nu * rate / (shape - 1.0)


def credibility_factor(nu, alpha, stats):
    """Z_i = ν N_i/(ν N_i + α − 1) = N_i/(N_i + k)."""
    return nu * stats["claims"] / (nu * stats["claims"] + alpha - 1.0)


def draw_rates(rng: np.random.Generator, nu, alpha, beta, stats) -> np.ndarray:
    """Exact draws of λ_i from Gamma(α + ν N_i, β + S_i); hyperparameters (draws, 1) arrays,
    the result (draws, risks)."""
    shape, rate = posterior_shape_rate(nu, alpha, beta, stats)
    return rng.gamma(shape, 1.0 / rate)


def without_effects(c: SeverityCells) -> tuple[float, float]:
    """ML (ν, μ) of the model without risk effects (every λ_i = ν/μ): μ = ΣS/ΣN and ν the root of
    the score Σ A_i − N log μ + N log ν − Σ_c n_c ψ(n_c ν), decreasing in log ν (docs/formulas.md §12).

    Raises :class:`DegenerateResponseError` when the claim sizes do not vary (the score has no
    root: ν = ∞) or vary too little for the likelihood to be resolved in double precision."""
    from scipy import special

    N, mu = c.claims.sum(), c.amount.sum() / c.claims.sum()
    lead = c.log_a.sum() - N * np.log(mu)

    def score(log_nu):
        return lead + N * log_nu - c.count_cells @ (c.count_n * special.digamma(c.count_n * np.exp(log_nu)))

    lo, hi = -5.0, 5.0
    while score(lo) < 0 and lo > -700:
        lo -= 10.0
    while score(hi) > 0 and np.log(N) + hi < np.log(_RESOLVABLE):
        hi += 10.0
    nu = float(np.exp(_bisect(score, lo, hi))) if score(hi) <= 0 else np.inf
    if not nu * N < _RESOLVABLE:
        cv = np.sqrt(c.within_ss.sum() / N) / mu
        raise DegenerateResponseError(
            f"the claim sizes hardly vary (coefficient of variation within risks {cv:.2g}): the gamma shape ν "
            "is not finite or not resolvable in double precision; use the classical estimator",
            column=c.severity,
        )
    return nu, float(mu)


def _bisect(f, lo: float, hi: float) -> float:
    """The root of a decreasing f in [lo, hi] by bisection, to the resolution of doubles (the
    classical arm imports this module, so it stays free of scipy.optimize)."""
    while True:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            return mid
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
