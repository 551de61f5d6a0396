"""Simulators with known truth, one per model family (used by tests, SBC and coverage studies).

Every simulator takes an explicit ``seed`` (an int, a ``numpy.random.Generator`` or a
``SeedSequence``; the same seed gives the same numbers) and returns a :class:`Simulation`:

* ``data``: a tidy long pandas DataFrame, one row per observation, ready for the model
  of the same name (column names as documented per function);
* ``truth``: a dict of the structural parameters that generated it, named as in the fits'
  ``.structure`` (``collective``, ``between``, ``within``, ``k``, ...);
* ``effects``: a DataFrame indexed by risk (or cell) with the realised, unobservable
  per-risk quantities (true risk mean, true coefficients, true frailty).

Models follow docs/formulas.md §1-§7 (seed 004_07f8365c92996b9b.txt eqs 3.14 ff.): in
particular the residual variance is ``within / weight`` (Bühlmann–Straub), not
``within`` as in that seed's Appendix A ``sim.BS()`` (errata E23).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "Simulation",
    "buhlmann_straub",
    "hierarchical",
    "hachemeister",
    "poisson_gamma",
    "crossed",
    "gamma_severity",
]

SeedLike = int | np.random.Generator | np.random.SeedSequence


@dataclass(frozen=True)
class Simulation:
    """A simulated portfolio: ``data`` (long table), ``truth`` (parameters), ``effects`` (per risk)."""

    data: pd.DataFrame
    truth: dict
    effects: pd.DataFrame = field(repr=False)


def _rng(seed: SeedLike) -> np.random.Generator:
    if seed is None:
        raise ValueError("pass an explicit seed (int or numpy Generator): simulations must be reproducible")
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _periods(n_periods: int | Sequence[int], n_risks: int) -> np.ndarray:
    """Number of periods per risk: one int for all, or one per risk."""
    periods = np.broadcast_to(np.asarray(n_periods, dtype=int), (n_risks,)).copy()
    if (periods < 1).any():
        raise ValueError("every risk needs at least one period")
    return periods


def _weights(rng, size: int, weights) -> np.ndarray:
    """``None`` -> all 1; ``(low, high)`` -> uniform draws; an array -> used as given."""
    if weights is None:
        return np.ones(size)
    if isinstance(weights, tuple) and len(weights) == 2:
        low, high = weights
        return rng.uniform(low, high, size)
    w = np.broadcast_to(np.asarray(weights, dtype=float), (size,)).copy()
    if (w <= 0).any():
        raise ValueError("weights must be positive")
    return w


def _long(periods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Risk index (0-based) and period (1-based) of each row for per-risk period counts."""
    risk = np.repeat(np.arange(len(periods)), periods)
    start = np.repeat(np.cumsum(periods) - periods, periods)
    return risk, np.arange(len(risk)) - start + 1


def buhlmann_straub(
    n_risks: int = 100,
    n_periods: int | Sequence[int] = 5,
    *,
    collective: float = 80.0,
    between: float = 64.0,
    within: float = 100.0,
    weights=(0.5, 1.5),
    seed: SeedLike,
) -> Simulation:
    """Bühlmann–Straub portfolio: X_jt = m + Ξ_j + ε_jt, Ξ_j ~ N(0, τ²), ε_jt ~ N(0, σ²/w_jt).

    Defaults are the generator of seed 004_07f8365c92996b9b.txt Listing 3.1 (line 1152:
    J = 100, T = 5, m = 80, τ² = 64, σ² = 100, w = 0.5 + U(0, 1)). ``weights=None`` gives
    the balanced Bühlmann model (all w = 1). Columns: risk (1..J), period, weight, loss.
    ``effects``: per-risk ``mean`` = m + Ξ_j.
    """
    rng = _rng(seed)
    periods = _periods(n_periods, n_risks)
    risk, period = _long(periods)
    w = _weights(rng, len(risk), weights)
    xi = rng.normal(0.0, np.sqrt(between), n_risks)
    loss = collective + xi[risk] + rng.normal(0.0, 1.0, len(risk)) * np.sqrt(within / w)
    labels = np.arange(1, n_risks + 1)
    data = pd.DataFrame({"risk": labels[risk], "period": period, "weight": w, "loss": loss})
    truth = {"collective": collective, "between": between, "within": within, "k": within / between}
    effects = pd.DataFrame({"mean": collective + xi}, index=pd.Index(labels, name="risk"))
    return Simulation(data, truth, effects)


def hierarchical(
    n_groups: Sequence[int] = (10, 10),
    n_periods: int = 5,
    *,
    collective: float = 100.0,
    between: Sequence[float] = (100.0, 50.0),
    within: float = 400.0,
    levels: Sequence[str] = ("sector", "risk"),
    weights=(0.5, 1.5),
    seed: SeedLike,
) -> Simulation:
    """Jewell's nested model (docs/formulas.md §3): X_{s..jt} = m + Ξ_s + ... + Ξ_{s..j} + ε_t.

    ``n_groups[l]`` is the number of children per unit of the level above (level 0: number
    of top-level units); ``between[l]`` is the variance of level ``l``'s effects (outer to
    inner, e.g. ω², τ²); Var ε = σ²/w. Columns: one per level (inner labels are unique
    across the whole portfolio, 1..), period, weight, loss. ``effects`` is indexed by the
    innermost level, with the label of each enclosing level and ``mean`` = the true mean of
    the innermost unit; ``truth["level_means"]`` maps each level to its units' true means.
    """
    rng = _rng(seed)
    if not (len(n_groups) == len(between) == len(levels)):
        raise ValueError("n_groups, between and levels need one entry per level")
    mean = np.full(1, float(collective))
    means_by_level = {}
    ancestry = []  # ancestry[l][u]: index of unit u's ancestor at level l (current level: itself)
    for size, var, name in zip(n_groups, between, levels):
        parent = np.repeat(np.arange(len(mean)), size)  # each new unit's parent at the level above
        mean = mean[parent] + rng.normal(0.0, np.sqrt(var), len(parent))
        ancestry = [a[parent] for a in ancestry] + [np.arange(len(parent))]
        means_by_level[name] = pd.Series(mean, index=pd.Index(np.arange(1, len(mean) + 1), name=name))
    n_units = len(mean)
    periods = _periods(n_periods, n_units)
    unit, period = _long(periods)
    w = _weights(rng, len(unit), weights)
    loss = mean[unit] + rng.normal(0.0, 1.0, len(unit)) * np.sqrt(within / w)
    cols = {name: anc[unit] + 1 for name, anc in zip(levels, ancestry)}
    data = pd.DataFrame({**cols, "period": period, "weight": w, "loss": loss})
    inner = levels[-1]
    effects = pd.DataFrame({name: anc + 1 for name, anc in zip(levels[:-1], ancestry[:-1])})
    effects["mean"] = mean
    effects.index = pd.Index(np.arange(1, n_units + 1), name=inner)
    truth = {
        "collective": collective,
        "between": dict(zip(levels, map(float, between))),
        "within": within,
        "level_means": means_by_level,
    }
    return Simulation(data, truth, effects)


def hachemeister(
    n_risks: int = 5,
    n_periods: int = 12,
    *,
    collective: Sequence[float] = (1500.0, 30.0),
    between=((20000.0, 0.0), (0.0, 600.0)),
    within: float = 5.0e7,
    weights=(300.0, 10000.0),
    seed: SeedLike,
) -> Simulation:
    """Hachemeister regression credibility: X_jt = (1, t) β_j + ε_jt, β_j ~ N(β, U), ε ~ N(0, σ²/w_jt).

    docs/formulas.md §4 (seed 004_07f8365c92996b9b.txt eqs 3.24-3.27): ``collective`` = β
    (intercept, slope at t = 0), ``between`` = U (2 x 2), ``within`` = σ² per unit weight
    (claim severities with claim counts as weights: σ² is a per-claim variance). Time t =
    1..T. Columns: risk, period, weight, loss. ``effects``: per-risk ``intercept`` and
    ``slope`` (β_j).
    """
    rng = _rng(seed)
    U = np.asarray(between, dtype=float)
    beta = np.asarray(collective, dtype=float)
    if U.shape != (2, 2) or beta.shape != (2,):
        raise ValueError("collective must be (intercept, slope) and between a 2 x 2 matrix")
    coef = rng.multivariate_normal(beta, U, size=n_risks, method="cholesky" if np.all(np.linalg.eigvalsh(U) > 0) else "eigh")
    periods = _periods(n_periods, n_risks)
    risk, period = _long(periods)
    w = _weights(rng, len(risk), weights)
    loss = coef[risk, 0] + coef[risk, 1] * period + rng.normal(0.0, 1.0, len(risk)) * np.sqrt(within / w)
    labels = np.arange(1, n_risks + 1)
    data = pd.DataFrame({"risk": labels[risk], "period": period, "weight": w, "loss": loss})
    truth = {"collective": beta.copy(), "between": U.copy(), "within": within, "k": None}
    effects = pd.DataFrame(coef, columns=["intercept", "slope"], index=pd.Index(labels, name="risk"))
    return Simulation(data, truth, effects)


def poisson_gamma(
    n_risks: int = 200,
    n_periods: int = 5,
    *,
    collective: float = 0.1,
    between: float = 0.4,
    exposure=(1.0, 50.0),
    factors: dict[str, Sequence[float]] | None = None,
    seed: SeedLike,
) -> Simulation:
    """Poisson–gamma portfolio with exposure (docs/formulas.md §7 (b)/(c)).

    claims_it ~ Poisson(e_it · m · r_i · u_i), u_i ~ Gamma(shape 1/λ, rate 1/λ) (mean 1,
    variance λ = ``between``), m = ``collective`` claim frequency per unit exposure.
    ``factors`` (optional fixed effects) maps a column name to the log-relativities of its
    levels 1..L (level 1 should be 0, the base); each risk gets one level per factor,
    uniformly at random, and r_i = exp(sum of its log-relativities). Columns: risk, period,
    the factor columns, exposure, claims. ``effects``: per-risk ``u`` (frailty),
    ``relativity`` r_i and ``frequency`` = m r_i u_i. ``truth["k"]`` = 1/(λ m), the
    credibility constant in exposure units for a base-level risk (Z = e/(e + k)).
    """
    rng = _rng(seed)
    alpha = 1.0 / between
    u = rng.gamma(alpha, 1.0 / alpha, n_risks)
    factors = dict(factors or {})
    levels = {name: rng.integers(1, len(eff) + 1, n_risks) for name, eff in factors.items()}
    log_rel = np.zeros(n_risks)
    for name, eff in factors.items():
        log_rel += np.asarray(eff, dtype=float)[levels[name] - 1]
    periods = _periods(n_periods, n_risks)
    risk, period = _long(periods)
    e = _weights(rng, len(risk), exposure)
    claims = rng.poisson(e * collective * np.exp(log_rel[risk]) * u[risk])
    labels = np.arange(1, n_risks + 1)
    data = pd.DataFrame(
        {"risk": labels[risk], "period": period, **{n: lv[risk] for n, lv in levels.items()}, "exposure": e, "claims": claims}
    )
    truth = {
        "collective": collective,
        "between": between,
        "k": 1.0 / (between * collective),
        "factors": {n: list(map(float, eff)) for n, eff in factors.items()},
    }
    rel = np.exp(log_rel)
    effects = pd.DataFrame(
        {**{n: lv for n, lv in levels.items()}, "u": u, "relativity": rel, "frequency": collective * rel * u},
        index=pd.Index(labels, name="risk"),
    )
    return Simulation(data, truth, effects)


def crossed(
    n_levels: Sequence[int] = (3, 3),
    n_per_cell=(30, 60),
    *,
    collective: float = 250.0,
    between: Sequence[float] = (1000.0, 2500.0),
    interaction: float = 15.0,
    within: float = 27000.0,
    factors: Sequence[str] = ("status", "experience"),
    seed: SeedLike,
) -> Simulation:
    """Crossed classification with interaction (docs/formulas.md §6; seed 002_112bee5238c97912.txt eqs 61-62).

    y_ijt = m + a_i + b_j + c_ij + ε_ijt, a ~ N(0, σ₁²), b ~ N(0, σ₂²), c ~ N(0, σ₁₂²),
    ε ~ N(0, σ²). Defaults mimic the credit-insurance fit (docs/reference-values.md §6). ``n_per_cell``:
    an int, or ``(low, high)`` for uniform integer counts in [low, high]. Columns: the two
    factor names (levels 1..), payment. ``effects`` is indexed by cell (both factors) with
    ``a``, ``b``, ``c`` and the true cell ``mean``; ``interaction=0`` drops c.
    """
    rng = _rng(seed)
    f1, f2 = factors
    I, J = n_levels
    a = rng.normal(0.0, np.sqrt(between[0]), I)
    b = rng.normal(0.0, np.sqrt(between[1]), J)
    c = rng.normal(0.0, np.sqrt(interaction), (I, J)) if interaction > 0 else np.zeros((I, J))
    ii, jj = np.meshgrid(np.arange(I), np.arange(J), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    if isinstance(n_per_cell, tuple):
        counts = rng.integers(n_per_cell[0], n_per_cell[1] + 1, I * J)
    else:
        counts = np.full(I * J, int(n_per_cell))
    cell_mean = collective + a[ii] + b[jj] + c[ii, jj]
    cell = np.repeat(np.arange(I * J), counts)
    y = cell_mean[cell] + rng.normal(0.0, np.sqrt(within), len(cell))
    data = pd.DataFrame({f1: ii[cell] + 1, f2: jj[cell] + 1, "payment": y})
    truth = {
        "collective": collective,
        "between": {f1: float(between[0]), f2: float(between[1]), f"{f1}:{f2}": float(interaction)},
        "within": within,
    }
    effects = pd.DataFrame(
        {"a": a[ii], "b": b[jj], "c": c[ii, jj], "mean": cell_mean, "n": counts},
        index=pd.MultiIndex.from_arrays([ii + 1, jj + 1], names=[f1, f2]),
    )
    return Simulation(data, truth, effects)


def gamma_severity(
    n_risks: int = 50,
    n_periods: int | Sequence[int] = 5,
    *,
    collective: float = 1000.0,
    between: float = 250_000.0,
    nu: float = 1.5,
    claims=(1, 40),
    seed: SeedLike,
) -> Simulation:
    """Gamma severity portfolio (docs/formulas.md §12): claim sizes of risk i are Gamma(shape ν,
    rate λ_i), λ_i ~ Gamma(α, β) with α = 2 + μ²/between and β = μ(α − 1)/ν, so the risk's
    mean claim ν/λ_i has mean μ = ``collective`` and variance ``between``.

    Each period of a risk reports ``claims`` claims (an int, or ``(low, high)`` for uniform
    whole numbers in [low, high]) and their average ``severity`` ~ Gamma(nν, nλ_i) (the
    average of n gamma claims). Columns: risk, period, claims, severity. ``effects``: per-risk
    ``rate`` λ_i and ``mean`` = ν/λ_i (the true mean claim, the premium's target).
    ``truth``: collective, between, within = (μ² + between)/ν, k = (α − 1)/ν, nu, alpha.
    """
    rng = _rng(seed)
    if not (collective > 0 and between > 0 and nu > 0):
        raise ValueError("collective, between and nu must be positive")
    alpha = 2.0 + collective**2 / between
    beta = collective * (alpha - 1.0) / nu
    rate = rng.gamma(alpha, 1.0 / beta, n_risks)
    periods = _periods(n_periods, n_risks)
    risk, period = _long(periods)
    if isinstance(claims, tuple):
        n = rng.integers(claims[0], claims[1] + 1, len(risk))
    else:
        n = np.full(len(risk), int(claims))
    if (n < 1).any():
        raise ValueError("every period needs at least one claim")
    severity = rng.gamma(n * nu, 1.0 / (n * rate[risk]))
    labels = np.arange(1, n_risks + 1)
    data = pd.DataFrame({"risk": labels[risk], "period": period, "claims": n, "severity": severity})
    within = (collective**2 + between) / nu
    truth = {"collective": collective, "between": between, "within": within, "k": within / between,
             "nu": nu, "alpha": alpha}
    effects = pd.DataFrame({"rate": rate, "mean": nu / rate}, index=pd.Index(labels, name="risk"))
    return Simulation(data, truth, effects)
