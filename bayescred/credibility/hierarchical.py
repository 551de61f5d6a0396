"""Jewell hierarchical credibility with any number of nested levels (FORMULAS §3;
Bühlmann & Gisler 2005 ch. 6), computed as actuar's ``cm(~a + a:b + ..., method=)``.

Two levels: X_sjt = m + Ξ_s + Ξ_sj + ε_sjt, Var Ξ_s = ω², Var Ξ_sj = τ², Var ε = σ²/w.
Bottom up, each level's nodes are weighted by the credibility factors of the level below:
Z_sj = w_sj / (w_sj + σ²/τ²), B_s = Σ_j Z_sj X_sj / Σ_j Z_sj, Z_s = Q_s/(Q_s + τ²/ω²)
with Q_s = Σ_j Z_sj; top down, μ̂_s = m̂ + Z_s (B_s − m̂), μ̂_sj = μ̂_s + Z_sj (X_sj − μ̂_s).
The premiums equal the BLUP of ``y ~ 1 + (1|a) + (1|a:b)`` at the same variances.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TooFewPeriodsError, TooFewRisksError
from ..portfolio import as_list
from ._common import CredibilityFit, all_rows, prepare, truncate

__all__ = ["hierarchical", "HierarchicalFit"]

_METHODS = ("Buhlmann-Gisler", "Ohlsson")


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
) -> HierarchicalFit:
    """Hierarchical credibility for ``levels = [outer, ..., inner]``.

    Structure parameters, estimated bottom up (as actuar 3.x ``hierarc``):

    * ``within`` σ̂² = Σ w (X − X_node)² / (number of observations − number of inner nodes);
    * ``between[level]``: with b the variance of the level below (σ̂² for the innermost),
      per parent node p: b_p = Σ_c w_c (X_c − X̄_p)² − (n_p − 1) b, c_p = w_p − Σ_c w_c²/w_p,
      where w_c are the credibility weights of the level below (raw weights innermost);
      ``method="Buhlmann-Gisler"`` (actuar's default) averages max(b_p/c_p, 0) over the
      parents, ``"Ohlsson"`` takes Σ b_p / Σ c_p (the pooled, FORMULAS §3 form);
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
    frame, stats = prepare(data, levels, response, weight, min_risks=1)
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

    # bottom up: tw/wm = weights and means of the nodes of each level (index L = inner)
    b = [None] * L + [float(within)]
    tw = [None] * L + [stats["weight"].to_numpy(float)]
    wm = [None] * L + [stats["mean"].to_numpy(float)]
    cred = [None] * L
    flagged: list = []
    parent_tw = parent_wm = None
    for i in range(L - 1, -1, -1):
        child_w, child_m, par = tw[i + 1], wm[i + 1], parent_of[i]
        n_par = counts[i]
        lower = next(v for v in b[i + 1:] if v)  # the first non-zero variance below
        p_w = np.bincount(par, child_w, n_par)
        p_m = np.bincount(par, child_w * child_m, n_par) / p_w
        if levels[i] in between:
            b[i] = float(between[levels[i]])
        else:
            bi = np.bincount(par, child_w * (child_m - p_m[par]) ** 2, n_par) - (np.bincount(par, None, n_par) - 1) * lower
            ci = p_w - np.bincount(par, child_w**2, n_par) / p_w
            if method == "Buhlmann-Gisler":
                ratio = np.divide(bi, ci, out=np.zeros_like(bi), where=ci != 0)
                b[i] = float(np.mean(np.maximum(ratio, 0.0)))
            else:
                b[i] = float(bi.sum() / ci.sum())
            b[i] = truncate(b[i], f"between[{levels[i]}]", flagged)
        if b[i] > 0:
            cred[i] = 1.0 / (1.0 + lower / (b[i] * child_w))
            p_w = np.bincount(par, cred[i], n_par)
            p_m = np.bincount(par, cred[i] * child_m, n_par) / p_w
        else:
            cred[i] = np.zeros_like(child_w)
        if i > 0:
            tw[i], wm[i] = p_w, p_m
        else:
            parent_tw, parent_wm = p_w, p_m
    collective = float(parent_wm[0])

    # top down: premiums
    premium, prev = [None] * L, np.array([collective])
    for i in range(L):
        premium[i] = prev[parent_of[i]] + cred[i] * (wm[i + 1] - prev[parent_of[i]])
        prev = premium[i]

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
    variances = {levels[i]: b[i] for i in range(L)}
    k = {}
    for i in range(L):
        lower = next(v for v in b[i + 1:] if v)
        k[levels[i]] = lower / b[i] if b[i] > 0 else np.inf
    fit = HierarchicalFit(
        model=f"Hierarchical ({L} levels)", method=method if not between else f"{method}, partly fixed",
        structure={"collective": collective, "between": variances, "within": float(within), "k": k},
        table=table, boundary=bool(flagged), boundary_parameters=flagged,
    )
    fit.levels = level_tables
    return fit
