"""Rating factors of the Poisson–gamma model: one coding and one base-level rule for every arm.

The frequency of a cell is ``collective x prod_f relativity_f(level) x exp(covariates'
slope) x u_risk`` (docs/formulas.md §7 case (c)). The empirical-Bayes fit
(``bayescred.lmm.poisson_gamma_eb``) and the Bayesian factory (``bc.models.poisson_gamma``)
build their design here, through the project's formula module, so they fit the same model:

* every column named in ``fixed`` is a **rating factor**, treatment (dummy) coded, whatever
  its type: a numeric column such as ``zone = 1..7`` gets one dummy per level but the base,
  never a linear slope;
* the **base level** of a factor is the user's ``base={factor: level}`` if given, otherwise
  the level with the largest total exposure (the rating convention: the most common class
  has relativity 1; ties go to the first level in R's order);
* ``covariates`` enter linearly (numeric columns, or a right-hand side of numeric terms such
  as ``"log(x)"``); a factor never goes there;
* columns are named as R's ``model.matrix`` names them (``(Intercept)``, ``zone1``,
  ``bus.age0``, ``log(x)``), the names ``glm.nb`` and ``bc.glm`` print for the same coding.

:func:`design` returns a :class:`RatingDesign` recording the factors, their levels and base
levels and the column names, so a fitted object can show its coding.

The variance components have one set of names and units in every arm (:func:`components`,
docs/formulas.md §7 "Components and units"): ``lam`` = Var(u), the relative variance of the
multiplicative risk effect (unitless); ``between`` = lam x collective², the variance of a
risk's claim frequency in (claims per unit exposure)², the classical Bühlmann–Straub VHM;
``collective`` the base frequency. ``between`` needs one frequency for the whole portfolio,
so with rating factors or covariates only ``lam`` is reported (:data:`WHY_NO_BETWEEN`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import formula as fm
from .errors import FormulaError, RankDeficientError

__all__ = ["RatingDesign", "Terms", "UNITS", "WHY_NO_BETWEEN", "check_rank", "components", "design", "terms"]

_FACTOR_CALLS = ("C", "factor", "as.factor")


@dataclass(frozen=True)
class Terms:
    """The parsed ``fixed`` (factor columns) and ``covariates`` (linear terms) of a model."""

    factors: tuple[str, ...]
    covariates: tuple[str, ...]  # each term as R deparses it: "x", "log(x)"
    formula: fm.Formula  # "~ factors + covariates", intercept included

    @property
    def variables(self) -> list[str]:
        """Every data column used, factors first."""
        return self.formula.variables

    @property
    def covariate_columns(self) -> list[str]:
        """The data columns the covariates use (each must be numeric)."""
        return [c for c in self.formula.variables if c not in self.factors]


def _pieces(spec, argument: str) -> list[tuple[str, object]]:
    """``None``, a column name or a list of names, or right-hand-side text, as (sign, node) pieces."""
    if spec is None:
        return []
    if isinstance(spec, str):
        text = spec.split("~", 1)[1] if "~" in spec else spec
    elif isinstance(spec, Sequence) and all(isinstance(c, str) for c in spec):
        if any("`" in c for c in spec):
            raise FormulaError(f"{argument}= column names cannot contain a backquote: {list(spec)}")
        text = " + ".join(f"`{c}`" for c in spec)
    else:
        raise FormulaError(f"{argument}= takes column names or a right-hand side such as 'a + b', got {spec!r}")
    if not text.strip():
        return []
    parsed = fm.parse(f"~ {text}")
    if parsed.random:
        raise FormulaError(
            f"the random intercept is given by group=, not in {argument}=; write only the rating factors and covariates"
        )
    if parsed.offset_parts:
        raise FormulaError(f"an offset is given by offset= (or exposure=), not in {argument}=")
    return parsed.terms


def terms(fixed=None, covariates=None, *, group: str | None = None) -> Terms:
    """Parse ``fixed`` and ``covariates`` (no data needed).

    ``fixed``: column names (a name, a list, or ``"zone + bus.age"``; ``C(zone)`` and
    ``factor(zone)`` say the same), each a rating factor. ``covariates``: numeric columns or
    a right-hand side of numeric main effects (``"log(x) + age"``), each entering linearly.
    Anything else (interactions, ``0``/``-1``, a factor in ``covariates``, the ``group``
    column in either) is a FormulaError.
    """
    factors: list[str] = []
    for sign, piece in _pieces(fixed, "fixed"):
        if isinstance(piece, fm.Call) and piece.func in _FACTOR_CALLS and len(piece.args) == 1 and not piece.kwargs:
            piece = piece.args[0]
        if sign != "+" or not isinstance(piece, fm.Name):
            raise FormulaError(
                f"fixed= takes rating-factor columns as main effects (each treatment coded), not {fm.deparse(piece)!r}; "
                "a linear term goes in covariates=, an interaction is a column built in the data first"
            )
        factors.append(piece.id)
    linear: list[str] = []
    for sign, piece in _pieces(covariates, "covariates"):
        if isinstance(piece, fm.Call) and piece.func in _FACTOR_CALLS:
            raise FormulaError(f"covariates= enter linearly; the factor {fm.deparse(piece)!r} belongs in fixed=")
        if sign != "+" or not isinstance(piece, fm.Name | fm.Call):
            raise FormulaError(
                f"covariates= takes numeric main effects such as 'x' or 'log(x)', not {fm.deparse(piece)!r} "
                "(the intercept is always in the model; build interaction columns in the data first)"
            )
        linear.append(fm.deparse(piece))
    twice = sorted({f for f in factors if factors.count(f) > 1} | {c for c in linear if linear.count(c) > 1})
    if twice:
        raise FormulaError(f"named twice: {twice}")
    pieces = [fm.deparse(fm.Name(f)) for f in factors] + linear
    formula = fm.parse("~ " + (" + ".join(pieces) or "1"))
    covariate_columns = fm.parse("~ " + " + ".join(linear)).variables if linear else []
    both = sorted(set(factors) & set(covariate_columns))
    if both:
        raise FormulaError(f"{both} cannot be both a rating factor (fixed=) and a covariate")
    if group is not None and group in formula.variables:
        raise FormulaError(f"the risk column {group!r} (group=) cannot also be a rating factor or covariate")
    return Terms(tuple(factors), tuple(linear), formula)


def base_levels(table: pd.DataFrame, factors: Sequence[str], exposure, base: Mapping | None = None) -> dict:
    """The base level of each factor: ``base[factor]`` (matched as R matches a level's text)
    if given, else the level with the largest total ``exposure`` (an array over the rows of
    ``table``; ties: the first level in R's order)."""
    base = dict(base or {})
    stray = sorted(set(base) - set(factors), key=str)
    if stray:
        raise FormulaError(f"base levels given for columns that are not rating factors (fixed=): {stray}")
    weight = pd.Series(np.asarray(exposure, dtype=float), index=table.index)
    chosen = {}
    for f in factors:
        levels = fm.r_levels(table[f])
        if f in base:
            chosen[f] = fm.match_level(f, levels, base[f])
        else:
            totals = weight.groupby(table[f].to_numpy(), sort=False).sum().reindex(levels)
            chosen[f] = levels[int(np.argmax(totals.to_numpy()))]
    return chosen


@dataclass
class RatingDesign:
    """The fixed-effect design of a Poisson–gamma model on one table.

    ``names``: the columns, ``(Intercept)`` first, then each factor's non-base levels
    (``zone1``, ...), then the covariates. ``base``: factor -> its base level. ``levels``:
    factor -> its levels, base first. ``X``: the matrix on the fitted table;
    ``matrix(newdata)`` rebuilds it on new rows with the same coding.
    """

    terms: Terms
    base: dict
    fixed: fm.FixedDesign

    @property
    def names(self) -> list[str]:
        return self.fixed.names

    @property
    def X(self) -> np.ndarray:
        return self.fixed.X

    @property
    def levels(self) -> dict:
        return {f: self.fixed.levels[f] for f in self.terms.factors}

    @property
    def factors(self) -> tuple[str, ...]:
        return self.terms.factors

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.terms.covariates

    @property
    def covariate_columns(self) -> list[str]:
        """The columns of the covariates (after the intercept and the factors' dummies)."""
        return self.names[1 + sum(len(self.factor_columns(f)) for f in self.factors):]

    def matrix(self, newdata) -> np.ndarray:
        return self.fixed.transform(newdata)

    def coding(self) -> dict:
        """Plain record of the coding: factor -> {"base", "levels", "columns"}, and the covariates."""
        return {
            "factors": {
                f: {
                    "base": _plain(self.base[f]),
                    "levels": [_plain(v) for v in self.levels[f]],
                    "columns": self.factor_columns(f),
                }
                for f in self.factors
            },
            "covariates": list(self.covariates),
        }

    def factor_columns(self, factor: str) -> list[str]:
        """The dummy columns of ``factor``, one per non-base level, in level order."""
        label = fm.deparse(fm.Name(factor))
        return [f"{label}{fm.r_level(v)}" for v in self.levels[factor][1:]]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def design(table: pd.DataFrame, terms_: Terms, *, exposure=None, base: Mapping | None = None) -> RatingDesign:
    """The treatment-coded design of ``terms_`` on ``table`` (validated rows or cells), base
    levels by the rule of this module (``exposure``: per-row exposure for the default rule;
    None counts rows), rank checked by :func:`check_rank`. The caller has validated the
    table (``Terms.covariate_columns`` numeric, no missing values)."""
    weight = np.ones(len(table)) if exposure is None else exposure
    chosen = base_levels(table, terms_.factors, weight, base)
    fixed = fm.fixed_design(terms_.formula, table, factors=terms_.factors, base_levels=chosen)
    out = RatingDesign(terms_, chosen, fixed)
    expected = ["(Intercept)", *(c for f in terms_.factors for c in out.factor_columns(f))]
    if fixed.names[: len(expected)] != expected:  # the formula module's R naming is the contract
        raise FormulaError(f"unexpected design columns {fixed.names[: len(expected)]}, expected {expected}")
    check_rank(fixed.X, fixed.names)
    return out


def check_rank(X: np.ndarray, names: list[str]) -> None:
    """Name the columns involved in a linear dependency: the null space of the column-scaled
    X, singular values below 1e-7 of the largest (R's lm/glm tolerance), from the p x p Gram."""
    if X.shape[1] == 0:
        return
    scaled = X / np.maximum(np.linalg.norm(X, axis=0), np.finfo(float).tiny)
    eigval, eigvec = np.linalg.eigh(scaled.T @ scaled)
    null = eigvec[:, eigval <= eigval[-1] * 1e-14]
    if null.shape[1]:
        involved = [names[j] for j in np.flatnonzero(np.any(np.abs(null) > 1e-6, axis=1))]
        raise RankDeficientError(
            f"fixed-effect columns are linearly dependent: {', '.join(involved)}; drop one or merge levels"
        )


UNITS = {
    "collective": "claims per unit exposure (the base frequency)",
    "lam": "relative variance of the risk effect u (Var u, E u = 1; unitless)",
    "between": "(claims per unit exposure)^2: variance of a risk's frequency, lam x collective^2",
}
WHY_NO_BETWEEN = (
    "between (the variance of a risk's frequency, lam x m^2) needs one collective frequency m; with rating "
    "factors, covariates or an offset the frequency differs by cell, so only lam (relative, the same in every "
    "cell) is reported"
)


def components(collective: float, lam: float, *, single_frequency: bool) -> pd.DataFrame:
    """The Poisson–gamma components by name with their units (index ``component``; columns
    ``estimate``, ``unit``): ``collective``, ``lam`` and, when the portfolio has a single
    frequency (no rating factors, covariates or offset), ``between`` = lam x collective².
    Otherwise ``attrs["note"]`` says why ``between`` is missing."""
    values = {"collective": float(collective), "lam": float(lam)}
    if single_frequency:
        values["between"] = float(lam) * float(collective) ** 2
    out = pd.DataFrame(
        {"estimate": list(values.values()), "unit": [UNITS[n] for n in values]},
        index=pd.Index(list(values), name="component"),
    )
    if not single_frequency:
        out.attrs["note"] = WHY_NO_BETWEEN
    return out


def between_line(table: pd.DataFrame) -> str:
    """One summary line on ``between`` from a :func:`components` table."""
    if "between" in table.index:
        return (
            f"between = lam x collective^2 = {table.loc['between', 'estimate']:.6g}"
            " (claims per unit exposure)^2, the variance of a risk's frequency"
        )
    return f"between: not reported; {WHY_NO_BETWEEN}"
