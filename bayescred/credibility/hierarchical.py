"""Jewell hierarchical credibility with any number of nested levels (docs/formulas.md §3;
Bühlmann & Gisler 2005 ch. 6), computed as actuar's ``cm(~a + a:b + ..., method=)``.

Two levels: X_sjt = m + Ξ_s + Ξ_sj + ε_sjt, Var Ξ_s = ω², Var Ξ_sj = τ², Var ε = σ²/w.
Bottom up, each level's nodes are weighted by the credibility factors of the level below:
Z_sj = w_sj / (w_sj + σ²/τ²), B_s = Σ_j Z_sj X_sj / Σ_j Z_sj, Z_s = Q_s/(Q_s + τ²/ω²)
with Q_s = Σ_j Z_sj; top down, μ̂_s = m̂ + Z_s (B_s − m̂), μ̂_sj = μ̂_s + Z_sj (X_sj − μ̂_s).
The premiums equal the BLUP of ``y ~ 1 + (1|a) + (1|a:b)`` at the same variances.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import ConvergenceWarning, TooFewPeriodsError, TooFewRisksError
from ..portfolio import as_list
from ._common import (
    CredibilityFit,
    all_rows,
    check_number,
    check_variance,
    flag_zero_within,
    prepare,
    truncate,
    zero_within,
)

__all__ = ["hierarchical", "HierarchicalFit"]

_METHODS = ("Buhlmann-Gisler", "Ohlsson", "iterative")


class HierarchicalFit(CredibilityFit):
    """Hierarchical fit; ``.levels[name]`` is the table of that level's nodes (credibility
    weight, weighted mean, Z, premium); ``.table`` is the innermost level."""


def hierarchical(
    data,
    levels,
    response: str,
    weight: str | None = None,
    method: str = "Buhlmann-Gisler",
    *,
    between: dict | None = None,
    within: float | None = None,
    tol: float = 1e-13,
    maxit: int = 10_000,
) -> HierarchicalFit:
    """Hierarchical credibility for ``levels = [outer, ..., inner]``.

    Structure parameters, estimated bottom up (as actuar 3.x ``hierarc``):

    * ``within`` σ̂² = Σ w (X − X_node)² / (number of observations − number of inner nodes);
    * ``between[level]``: with b the variance of the level below (σ̂² for the innermost),
      per parent node p: b_p = Σ_c w_c (X_c − X̄_p)² − (n_p − 1) b, c_p = w_p − Σ_c w_c²/w_p,
      where w_c are the credibility weights of the level below (raw weights innermost);
      ``method="Buhlmann-Gisler"`` (actuar's default) averages max(b_p/c_p, 0) over the
      parents, ``"Ohlsson"`` takes Σ b_p / Σ c_p (the pooled, docs/formulas.md §3 form),
      ``"iterative"`` starts from Ohlsson's values and iterates the pseudo-estimators
      b ← Σ_c Z_c (X_c − X̄_p)² / Σ_p (n_p − 1) (credibility-weighted parent means);
    * a level whose estimate is 0 gets Z = 0 (flagged: ``.boundary``, BoundaryWarning)
      and its parent is then weighted by raw weights with the next variance below.

    ``between={level: value}`` and ``within=`` fix components instead of estimating them.
    Inner labels are local to their parent (node = the tuple of all level labels).
    """
    levels = as_list(levels)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    between = dict(between or {})
    unknown = set(between) - set(levels)
    if unknown:
        raise ValueError(f"between= names levels {sorted(unknown)} not in {levels}")
    between = {level: check_number(v, f"between[{level}]", minimum=0.0, allow_none=False) for level, v in between.items()}
    within = check_variance(within, "within")
    tol = check_number(tol, "tol", minimum=0.0, strict=True)
    maxit = int(check_number(maxit, "maxit", minimum=1, integer=True))
    frame, stats = prepare(data, levels, response, weight, min_risks=1)
    location = stats.attrs["location"]
    L = len(levels)
    nodes = stats.reset_index()
    n_obs = int(stats["n"].sum())

    # node identifiers per level (tuples of labels), parent index of each child node
    keys = [list(dict.fromkeys(map(tuple, nodes[levels[: i + 1]].to_numpy().tolist()))) for i in range(L)]
    inner_keys = list(map(tuple, nodes[levels].to_numpy().tolist()))
    parent_of = []  # parent_of[i][c]: index (in keys[i-1]) of child c at level i; level 0 → portfolio 0
    for i in range(L):
        child_keys = keys[i] if i < L - 1 else inner_keys
        if i == 0:
            parent_of.append(np.zeros(len(child_keys), dtype=int))
        else:
            lookup = {k: j for j, k in enumerate(keys[i - 1])}
            parent_of.append(np.array([lookup[k[:i]] for k in child_keys]))
    counts = [1] + [len(k) for k in keys[:-1]] + [len(inner_keys), n_obs]
    for i in range(L):
        if counts[i + 1] <= counts[i]:
            raise TooFewRisksError(
                f"level {levels[i]!r} needs at least two nodes under some parent (actuar: "
                "'there must be at least two nodes at every level')",
                column=levels[i], rows=all_rows(frame, levels),
            )
    if within is None:
        if n_obs <= len(inner_keys):
            raise TooFewPeriodsError(
                "every inner node has a single period, so the within variance cannot be estimated",
                column=levels[-1], rows=all_rows(frame, levels),
            )
        within = float(stats["within_ss"].sum()) / (n_obs - len(inner_keys))
        if zero_within(within, stats):
            within = 0.0

    # bottom up: tw[i + 1], wm[i + 1] = weights and means of the nodes of level i
    # (tw[L] = the raw inner weights, tw[0] = the portfolio); cred[i] = their factors
    b = [0.0] * L + [float(within)]
    tw = [None] * L + [stats["weight"].to_numpy(float)]
    wm = [None] * L + [stats["mean"].to_numpy(float)]
    cred = [None] * L
    raw = {}
    start = "Ohlsson" if method == "iterative" else method  # actuar starts the iteration there
    for i in range(L - 1, -1, -1):
        lower = _lower(b, i)
        if levels[i] in between:
            b[i] = float(between[levels[i]])
        else:
            raw[i] = _unbiased(tw[i + 1], wm[i + 1], parent_of[i], counts[i], lower, start)
            b[i] = max(raw[i], 0.0)
        cred[i], tw[i], wm[i] = _aggregate(tw[i + 1], wm[i + 1], parent_of[i], counts[i], b[i], lower)
    if method == "iterative":
        _iterate(b, cred, tw, wm, parent_of, counts, fixed=[lev in between for lev in levels], tol=tol, maxit=maxit)
    flagged: list = []
    if within == 0:
        flag_zero_within(flagged)
    for i in raw:
        if b[i] <= 0:
            truncate(min(raw[i], 0.0), f"between[{levels[i]}]", flagged)
    collective = float(wm[0][0])

    # top down: premiums (on the centred scale, then the location is added back)
    premium, prev = [None] * L, np.array([collective])
    for i in range(L):
        premium[i] = prev[parent_of[i]] + cred[i] * (wm[i + 1] - prev[parent_of[i]])
        prev = premium[i]
    collective += location
    premium = [p + location for p in premium]
    wm = [m + location for m in wm]

    level_tables = {}
    for i in range(L):
        index_keys = keys[i] if i < L - 1 else inner_keys
        index = (
            pd.Index([k[0] for k in index_keys], name=levels[0])
            if i == 0 else pd.MultiIndex.from_tuples(index_keys, names=levels[: i + 1])
        )
        level_tables[levels[i]] = pd.DataFrame(
            {"weight": tw[i + 1], "mean": wm[i + 1], "Z": cred[i], "premium": premium[i]}, index=index
        )
    table = level_tables[levels[-1]].copy()
    table.insert(0, "n", stats["n"].to_numpy())
    table["weight"] = stats["weight"].to_numpy(float)
    variances = {levels[i]: float(b[i]) for i in range(L)}
    k = {levels[i]: float(_lower(b, i) / b[i]) if b[i] > 0 else np.inf for i in range(L)}
    fit = HierarchicalFit(
        model=f"Hierarchical ({L} levels)", method=method if not between else f"{method}, partly fixed",
        structure={"collective": collective, "between": variances, "within": float(within), "k": k},
        table=table, boundary=bool(flagged), boundary_parameters=flagged,
    )
    fit.levels = level_tables
    return fit


def _lower(b, i) -> float:
    """The variance used as 'within' at level i: the first non-zero one below it."""
    return next((v for v in b[i + 1:] if v > 0), 0.0)


def _aggregate(child_w, child_m, parent, n_parents, variance, lower):
    """Credibility factors of the children, and their parents' weights and means: weighted
    by the factors when the level's variance is positive, by the child weights otherwise."""
    if variance > 0:
        z = 1.0 / (1.0 + lower / (variance * child_w))
        weight = z
    else:
        z, weight = np.zeros_like(child_w), child_w
    p_w = np.bincount(parent, weight, n_parents)
    return z, p_w, np.bincount(parent, weight * child_m, n_parents) / p_w


def _unbiased(child_w, child_m, parent, n_parents, lower, method) -> float:
    """Unbiased-type estimator of a level's variance from its children (actuar ``hierarc``):
    per parent b_p = Σ w (X − X̄_p)² − (n_p − 1)·lower, c_p = w_p − Σ w²/w_p."""
    p_w = np.bincount(parent, child_w, n_parents)
    p_m = np.bincount(parent, child_w * child_m, n_parents) / p_w
    bi = np.bincount(parent, child_w * (child_m - p_m[parent]) ** 2, n_parents)
    bi -= (np.bincount(parent, None, n_parents) - 1) * lower
    ci = p_w - np.bincount(parent, child_w**2, n_parents) / p_w
    if method == "Buhlmann-Gisler":
        return float(np.mean(np.maximum(np.divide(bi, ci, out=np.zeros_like(bi), where=ci != 0), 0.0)))
    return float(bi.sum() / ci.sum())


def _iterate(b, cred, tw, wm, parent_of, counts, fixed, tol, maxit):
    """Iterative pseudo-estimators (docs/formulas.md §3; actuar's ``method = "iterative"``): level by
    level from the bottom, b_i ← Σ_children Z (X − X̄_parent)² / Σ_parents (n_p − 1) with
    credibility-weighted parent means, until the largest relative change is below tol.
    Updates b, cred, tw, wm in place."""
    L = len(cred)
    for _ in range(maxit):
        prev = list(b)
        for i in range(L - 1, -1, -1):
            lower = _lower(b, i)
            z, tw[i], wm[i] = _aggregate(tw[i + 1], wm[i + 1], parent_of[i], counts[i], b[i], lower)
            if prev[i] > 0 and not fixed[i]:
                d = wm[i + 1] - wm[i][parent_of[i]]
                b[i] = float(z @ d**2 / (counts[i + 1] - counts[i]))
                if b[i] <= tol**2:
                    b[i] = 0.0
            cred[i], tw[i], wm[i] = _aggregate(tw[i + 1], wm[i + 1], parent_of[i], counts[i], b[i], lower)
        if max((abs(b[i] - prev[i]) / prev[i] for i in range(L) if b[i] > 0), default=0.0) < tol:
            return
    warnings.warn("hierarchical iteration did not converge", ConvergenceWarning, stacklevel=3)
