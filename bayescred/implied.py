"""The credibility a GLMM implies for a rating factor's levels (seed
001_09ddcaa1e17cf6d2.txt, "Implied Credibility: GLMM Setting" and the "Inferred Credibility"
table; docs/reference-values.md §15).

Fit the factor twice: as a fixed effect in a GLM and as a random effect in a GLMM (same
other rating factors, same link). Per level, with exposure e_j,

* relativity (GLM)  r_j = exp(beta_j) / sum_i e_i exp(beta_i) / sum_i e_i   (beta_base = 0),
* relativity (GLMM) s_j = exp(b_j) / sum_i e_i exp(b_i) / sum_i e_i          (b_j: conditional mode),
* inferred credibility  Z_j = (s_j - 1) / (r_j - 1),

the share of the level's own deviation from the (exposure-weighted) average that the mixed
model keeps. In Bühlmann's form Z = e / (e + k), so 1/Z - 1 = k / e, and k is estimated by
least squares through the origin of (1/Z_j - 1) on 1/e_j: k = sum x_j y_j / sum x_j^2.

When the mixed fit is a posterior (``bc.sample`` of ``bc.models.poisson_lognormal`` and its
siblings, or of ``bc.models.poisson_gamma`` whose frailty u_j enters as log u_j; the factor
being their ``group``), every draw of the effects gives a Z_j and a k: their equal-tailed
intervals are reported (the GLM stays a point estimate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DataError, MissingColumnError, NonPositiveError

__all__ = ["implied_credibility", "ImpliedCredibility", "buhlmann_k"]


def buhlmann_k(Z, exposure) -> float | np.ndarray:
    """k of Z = e/(e + k) by regression through the origin of 1/Z - 1 on 1/e (seed
    001_09ddcaa1e17cf6d2.txt, "Inferred Credibilities in Buhlmann Form"). ``Z`` may carry
    draws in its leading axes (..., levels); levels with Z = 0 or non-finite Z are left out."""
    Z = np.asarray(Z, float)
    x = 1.0 / np.asarray(exposure, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = 1.0 / Z - 1.0
    ok = np.isfinite(y)
    xs = np.where(ok, x, 0.0)
    return np.sum(xs * np.where(ok, y, 0.0), axis=-1) / np.sum(xs**2, axis=-1)


@dataclass
class ImpliedCredibility:
    """Seed 001's table (``table``, one row per level), Bühlmann's ``k`` and the plot.

    Columns of ``table``: ``exposure``; ``fixed_effect``, ``fixed_exp``, ``fixed_relativity``
    (GLM); ``random_effect``, ``random_exp``, ``random_relativity`` (GLMM); ``Z`` (inferred
    credibility) and ``Z_fitted`` = e/(e + k); with a posterior also ``Z_median``,
    ``Z_lower``, ``Z_upper`` (``prob`` ETI). ``fixed_mean`` and ``random_mean`` are the
    exposure-weighted means of exp(effect) (the seed's total row). ``k_draws``: posterior
    draws of k (None for a point fit)."""

    factor: str
    table: pd.DataFrame
    k: float
    fixed_mean: float
    random_mean: float
    prob: float | None = None
    k_draws: np.ndarray | None = None

    @property
    def k_interval(self) -> tuple[float, float] | None:
        if self.k_draws is None:
            return None
        a = (1 - self.prob) / 2
        return float(np.quantile(self.k_draws, a)), float(np.quantile(self.k_draws, 1 - a))

    def plot(self, ax=None, logx: bool = True):
        """Inferred credibility against exposure, with the fitted Z = e/(e + k) curve
        (and the posterior intervals of Z when there are draws). Returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        t = self.table
        e = t["exposure"].to_numpy(float)
        if "Z_lower" in t:
            ax.errorbar(e, t["Z_median"], yerr=[t["Z_median"] - t["Z_lower"], t["Z_upper"] - t["Z_median"]],
                        fmt="none", ecolor="0.6", lw=1, label=f"posterior {self.prob:.0%} ETI")
        ax.scatter(e, t["Z"], color="#4c72b0", zorder=3, label="inferred Z (conditional modes)")
        grid = np.geomspace(e.min() / 2, e.max() * 2, 200) if logx else np.linspace(0, e.max() * 1.1, 200)
        ax.plot(grid, grid / (grid + self.k), color="#c44e52", label=f"Z = e/(e + k), k = {self.k:.4g}")
        if logx:
            ax.set_xscale("log")
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.set_xlabel("exposure")
        ax.set_ylabel("inferred credibility Z")
        ax.set_title(f"Implied credibility of {self.factor}")
        ax.legend(fontsize=8)
        return ax


def _fixed_effects(fixed_fit, factor: str, levels: pd.Index) -> pd.Series:
    """The GLM's effect per level: the coefficient named ``<factor><level>`` (R's naming), 0
    for the base level (the one level without a coefficient). A Series indexed by level is
    taken as the effects themselves."""
    if isinstance(fixed_fit, pd.Series):
        return _by_level(fixed_fit, levels, "fixed_fit")
    coef = getattr(fixed_fit, "coef", None)
    if coef is None:
        coef = getattr(fixed_fit, "fixef", None)
    if coef is None:
        raise DataError("fixed_fit has neither .coef (bc.glm) nor .fixef; pass a fit or a Series of effects by level")
    names = {str(lev): f"{factor}{lev}" for lev in levels}
    missing = [lev for lev, name in names.items() if name not in coef.index]
    if len(missing) != 1:
        raise DataError(f"the GLM must have the factor treatment-coded with one base level; levels without a "
                        f"coefficient {factor}<level>: {missing[:10]}", column=factor)
    return pd.Series([float(coef[names[str(lev)]]) if str(lev) != missing[0] else 0.0 for lev in levels],
                     index=levels)


def _by_level(series: pd.Series, levels: pd.Index, what: str) -> pd.Series:
    s = pd.Series(series.to_numpy(float), index=series.index.map(str))
    missing = [lev for lev in levels.map(str) if lev not in s.index]
    if missing:
        raise DataError(f"{what} has no value for the level(s) {missing[:10]}")
    return pd.Series(s.reindex(levels.map(str)).to_numpy(), index=levels)


def _random_effects(mixed_fit, factor: str, levels: pd.Index):
    """Conditional modes of the factor's random intercept (a GLMM fit's ``ranef()``, or a
    Series), or the posterior draws (S, levels) of the effect ``u`` of a DataTree."""
    if isinstance(mixed_fit, pd.Series):
        return _by_level(mixed_fit, levels, "mixed_fit"), None
    if hasattr(mixed_fit, "ranef"):
        re = mixed_fit.ranef()
        rows = re[(re["grp"] == factor) & (re["term"] == "(Intercept)")]
        if rows.empty:
            raise DataError(f"the mixed fit has no random intercept for {factor!r}", column=factor)
        return _by_level(rows.set_index("level")["value"], levels, "the mixed fit's ranef()"), None
    post = mixed_fit["posterior"]
    if "u" not in post or factor not in post["u"].dims:
        raise DataError(f"the posterior has no effect 'u' over the dimension {factor!r}", column=factor)
    u = post["u"].stack(sample=("chain", "draw")).transpose("sample", factor)
    draws = pd.DataFrame(u.to_numpy(), columns=pd.Index(u[factor].to_numpy()).map(str))
    missing = [lev for lev in levels.map(str) if lev not in draws.columns]
    if missing:
        raise DataError(f"the posterior has no effect for the level(s) {missing[:10]}", column=factor)
    draws = draws[list(levels.map(str))].to_numpy()
    if post.attrs.get("bayescred_factory") == "poisson_gamma":  # u is the multiplicative frailty itself
        draws = np.log(draws)
    # the point value the seed tabulates is the conditional mode; for a posterior, the
    # relativity of the posterior median effect
    return pd.Series(np.median(draws, axis=0), index=levels), draws


def _relativity(effect: np.ndarray, e: np.ndarray):
    ex = np.exp(effect)
    mean = np.sum(ex * e, axis=-1, keepdims=True) / e.sum()
    return ex / mean, mean[..., 0]


def implied_credibility(fixed_fit, mixed_fit, factor: str, exposure, data=None, prob: float = 0.9) -> ImpliedCredibility:
    """Seed 001's inferred-credibility table for the levels of ``factor``.

    ``fixed_fit``: a GLM with ``factor`` as a treatment-coded fixed effect (``bc.glm``; its
    ``.coef`` named ``<factor><level>``), or a Series of effects by level. ``mixed_fit``: a
    GLMM with ``(1 | factor)`` (``bc.glmm``; its ``ranef()``), a Series of random effects by
    level, or the DataTree of ``bc.sample`` for a factory whose ``group`` is ``factor``.
    ``exposure``: a Series of exposure by level, or a column of ``data`` summed by level.
    ``prob``: the probability of the posterior intervals (equal-tailed).
    """
    if data is not None and isinstance(exposure, str):
        if exposure not in data.columns or factor not in data.columns:
            col = exposure if exposure not in data.columns else factor
            raise MissingColumnError("not a column of data", column=col)
        exposure = data.groupby(factor, sort=True)[exposure].sum()
    if not isinstance(exposure, pd.Series):
        raise DataError("exposure must be a Series of exposure by level, or a column name together with data=")
    e = exposure.astype(float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        bad = list(e.index[~(np.isfinite(e) & (e > 0))][:10])
        raise NonPositiveError(f"exposure must be positive at every level; not at {bad}", column=factor)
    levels = pd.Index(e.index, name=factor)
    ev = e.to_numpy()
    beta = _fixed_effects(fixed_fit, factor, levels).to_numpy()
    b, draws = _random_effects(mixed_fit, factor, levels)
    b = b.to_numpy()
    r_fixed, fixed_mean = _relativity(beta, ev)
    r_random, random_mean = _relativity(b, ev)
    with np.errstate(divide="ignore", invalid="ignore"):
        Z = (r_random - 1.0) / (r_fixed - 1.0)
    k = float(buhlmann_k(Z, ev))
    table = pd.DataFrame({
        "exposure": ev,
        "fixed_effect": beta, "fixed_exp": np.exp(beta), "fixed_relativity": r_fixed,
        "random_effect": b, "random_exp": np.exp(b), "random_relativity": r_random,
        "Z": Z, "Z_fitted": ev / (ev + k),
    }, index=levels)
    k_draws = None
    if draws is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            Zd = (_relativity(draws, ev)[0] - 1.0) / (r_fixed - 1.0)
        a = (1 - prob) / 2
        table["Z_median"] = np.median(Zd, axis=0)
        table["Z_lower"] = np.quantile(Zd, a, axis=0)
        table["Z_upper"] = np.quantile(Zd, 1 - a, axis=0)
        k_draws = buhlmann_k(Zd, ev)
    return ImpliedCredibility(factor, table, k, float(fixed_mean), float(random_mean),
                              prob if draws is not None else None, k_draws)
