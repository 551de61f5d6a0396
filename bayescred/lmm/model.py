"""``bc.lmm``: fit a linear mixed model by REML or ML, lme4 style, and the fitted object."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd

from ..errors import (
    ArgumentError,
    BoundaryWarning,
    DegenerateResponseError,
    RankDeficientError,
    SummaryError,
    TooFewRisksError,
    TooManyLevelsError,
)
from .. import formula as fm
from ..portfolio import Columns, check_data
from .._arguments import aligned_values, check_number
from .fit import Design, LeastSquares, _eigh, _single_thread, conditional_modes, optimise
from .uncertainty import MEASURES, Uncertainty

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on θ


_to_pandas = fm._to_pandas  # one conversion of any frame narwhals reads (bayescred.formula)


def varcorr_table(terms, covariances, sigma2: float | None) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))``: a row per variance and per covariance of each
    random-effects term (a repeated grouping factor is ``g.1``, ``g.2``, ... as lme4), then
    the residual unless ``sigma2`` is None (families without a scale)."""
    rows, seen = [], {}
    for t, S in zip(terms, covariances):
        count = seen.get(t.group, 0)
        seen[t.group] = count + 1
        grp = t.group if count == 0 else f"{t.group}.{count}"
        sd = np.sqrt(np.diag(S))
        for i, name in enumerate(t.names):
            rows.append((grp, name, None, S[i, i], sd[i]))
        for j in range(t.k):
            for i in range(j + 1, t.k):
                corr = S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan
                rows.append((grp, t.names[j], t.names[i], S[i, j], corr))
    if sigma2 is not None:
        rows.append(("Residual", None, None, sigma2, math.sqrt(sigma2)))
    out = pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])
    for k, col in ((1, "var1"), (2, "var2")):  # NA where lme4 has NA (None, not the string "nan")
        out[col] = pd.Series([r[k] for r in rows], dtype=object)
    return out


def model_inputs(formula: str, data, weights, offset, *, positive_weights: bool = True):
    """The front door shared by ``bc.lmm`` and ``bc.glmm``: the data as pandas, the parsed
    formula, and the weights and offset (column names or arrays aligned on the frame).

    Every column goes through :func:`bayescred.portfolio.check_data`, so bad rows get the same
    exception and message as in the classical and Bayesian arms: the grouping columns of the
    random terms and every formula variable complete, the numeric ones finite, and the
    weights strictly positive (``positive_weights``; ``bc.glmm`` passes False and applies
    R's rule, zero prior weights allowed). ``data`` may be a :class:`~bayescred.portfolio.Columns`
    view (bc.lmm's: the door and the designs read each column once). Returns (data as a pandas
    frame, parsed, w, wname, off)."""
    data = _to_pandas(data)
    data = data if isinstance(data, Columns) else Columns(data)
    parsed = fm.parse(formula)
    fm.check_columns(parsed, data.columns)
    groups = list(dict.fromkeys(g for _, group, _ in parsed.random_parts for g in group))
    unique = data.columns.is_unique  # else the door's DuplicateColumnError, before any column is read
    numeric = [v for v in parsed.variables if fm._is_numeric(data[v].dtype)] if unique else []
    columns = {what: arg for what, arg in (("weights", weights), ("offset", offset)) if isinstance(arg, str)}
    _door(data, columns.get("weights"), columns.get("offset"), positive_weights,
          groups=groups, present=parsed.variables, numeric=numeric)
    w, wname = _column_or_array(weights, data, "weights")
    off, offname = _column_or_array(offset, data, "offset")
    arrays = {what: values for what, values in (("weights", w), ("offset", off))
              if values is not None and what not in columns}
    if arrays:  # values passed as arrays: the same checks, named by the argument
        _door(pd.DataFrame(arrays, index=data.index), "weights" if "weights" in arrays else None,
              "offset" if "offset" in arrays else None, positive_weights)
    return data.frame, parsed, w, wname, off


def _door(frame: pd.DataFrame, weight, offset, positive_weights: bool, groups=(), present=(), numeric=()) -> None:
    """portfolio's checks (as validate) for a formula's columns, the weights and the offset."""
    extra = [c for c in (offset, None if positive_weights else weight) if c is not None]
    check_data(frame, groups=list(groups), present=list(present), numeric=[*numeric, *extra], min_groups=1,
               positive=weight if positive_weights else None)


def _column_or_array(arg, data: Columns, what: str) -> tuple[np.ndarray | None, str | None]:
    if arg is None:
        return None, None
    if isinstance(arg, str):
        return data[arg].to_numpy(dtype=float), arg
    return aligned_values(arg, data.index, what), what


def _rank_check(X: np.ndarray, names: list[str], w: np.ndarray) -> LeastSquares:
    """Raise RankDeficientError naming every column that is a linear combination of the
    columns before it (lme4 drops them silently with a message; we refuse). Returns the
    weighted least squares on X whose SVD decided it (the fit's centring and β₀ use it)."""
    ls = LeastSquares(X, w)
    if ls.full_rank:  # X passes, so every block of its first columns does (interlacing): one SVD, not p
        return ls
    Xs = X * ls.sw[:, None] / ls.norms
    kept, dropped = [], []
    for j in range(X.shape[1]):
        cand = kept + [j]
        s = np.linalg.svd(Xs[:, cand], compute_uv=False)
        if s[-1] <= 1e-9 * s[0] or np.linalg.norm(Xs[:, j]) == 0:
            dropped.append(names[j])
        else:
            kept.append(j)
    if dropped:
        raise RankDeficientError(
            "fixed-effect columns are linearly dependent on earlier ones (drop or recode them): "
            + ", ".join(dropped)
        )
    return ls


def lmm(
    formula: str, data, weights=None, offset=None, method: str = "REML", *, within_ss=None, within_df=None,
    factors=(), base_levels=None,
):
    """Fit ``formula`` (lme4 syntax) by REML (default) or ML.

    ``weights``: precision weights (column name or array), Var(ε_i) = σ²/w_i as lme4.
    ``offset``: known term added to the linear predictor (column name or array; an
    ``offset(expr)`` term in the formula works too).
    Aggregated input: rows are cell means, ``weights`` the cell counts, and
    ``within_ss``/``within_df`` the pooled within-cell sum of squares and its degrees of
    freedom; the fit equals the fit to the raw (unit-weight) rows (docs/formulas.md §6).
    ``factors``: numeric columns to treat as categorical (as ``factor(x)``); ``base_levels``:
    ``{column: level}``, the reference level of a factor (R's ``relevel``). The formula
    language is bayescred.formula's.
    """
    method = method.upper()
    if method not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML', got {method!r}")
    columns = Columns(_to_pandas(data))  # the door and the designs read each column once
    data, parsed, w, wname, off = model_inputs(formula, columns, weights, offset)
    n = len(data)
    w = np.ones(n) if w is None else w
    if len(parsed.response_parts) != 1:
        raise fm.FormulaError(f"a linear mixed model needs one numeric response left of '~', got {parsed.response!r}")
    fixed = fm.fixed_design(parsed, columns, factors=factors, base_levels=base_levels)
    y = fixed.y
    total_offset = fixed.offset + (0.0 if off is None else off)
    if (within_ss is None) != (within_df is None):
        raise SummaryError("give both within_ss and within_df (pooled within-cell SS and its df), or neither")
    aggregated = within_ss is not None
    if aggregated:
        if weights is None:
            raise SummaryError("aggregated input needs weights = the cell counts")
        within_ss = check_number(within_ss, "within_ss", minimum=0.0)
        within_df = check_number(within_df, "within_df", minimum=0.0, integer=True)
    X, xnames = fixed.X, fixed.names
    least_squares = _rank_check(X, xnames, w)
    if not parsed.random:
        raise fm.FormulaError("the formula has no random-effects term such as (1 | group); use a linear model")
    terms = fm.random_terms(parsed, columns, factors=factors, base_levels=base_levels)
    N = n + (int(within_df) if aggregated else 0)
    for t in terms:
        if t.n_levels < 2:
            raise TooFewRisksError(f"grouping factor has a single level ({t.levels[0]})", column=t.group)
        if t.n_levels >= N or t.n_levels * t.k >= N:
            raise TooManyLevelsError(
                f"term ({' + '.join(t.names)} | {t.group}) has {t.n_levels} levels x {t.k} effects for {N} "
                "observations: not separable from the residual",
                column=t.group,
            )
    response, location = _centre(y - total_offset, X, w, least_squares)
    design = Design(response, X, terms, w, within_ss=float(within_ss or 0.0), within_df=int(within_df or 0),
                    least_squares=least_squares)
    reml = method == "REML"
    with warnings.catch_warnings(record=True) as caught, _single_thread():  # BLAS on one thread, once
        warnings.simplefilter("always")
        theta, message = optimise(design, reml)
        fit = LMMFit(design, theta, reml, xnames, formula, message, location=location)
    _check_residual(fit, y - total_offset, parsed.response)
    for w_ in caught:  # the fit's own warnings, once the response is known to be fit for it
        warnings.warn(w_.message, w_.category, stacklevel=2)
    fit._data, fit._fixed = data, fixed
    fit._offset_name = offset if isinstance(offset, str) else None
    return fit


def _centre(y, X, w, least_squares: LeastSquares):
    """Centre the response at its weighted mean c before fitting when the intercept lies in
    the column space of X (X γ = 1): the fit of y − c equals the fit of y with β moved by
    c γ, and the criterion is unchanged. Without centring, cross-products of a response at
    1e12 lose the digits that carry the variances. Returns (y − c, c γ or None)."""
    if X.shape[1] == 0:
        return y, None
    gamma = least_squares.solve(np.ones(len(y)))
    if np.abs(X @ gamma - 1.0).max() > 1e-10:
        return y, None
    exact = np.round(gamma)  # the usual codings: an intercept column, or one dummy per level
    if (X @ exact == 1.0).all():
        gamma = exact
    c = float(w @ y / w.sum())
    return y - c, c * gamma


def _check_residual(fit, y, name) -> None:
    """Refuse a response that the fixed and random effects fit exactly (all-equal responses,
    responses constant within every group or exactly on each group's line): the REML/ML
    criterion has no optimum, it keeps falling as θ grows. The optimiser either reaches a
    residual variance of 0 at the resolution of the data, or stops at some large θ (where
    depends on its path): beyond θ = 10⁴ the least-squares fit of X and Z decides."""
    magnitude = float(np.max(np.abs(y))) if len(y) else 0.0
    far = np.max(np.abs(fit._sol.theta), initial=0.0) > 1e4
    if fit.sigma2 <= (64 * np.finfo(float).eps * magnitude) ** 2 or (far and fit._design.fits_exactly()):
        raise DegenerateResponseError(
            "the fixed and random effects fit the response exactly (residual variance 0, e.g. all "
            "responses equal or constant within every group), so the likelihood has no maximum; "
            "there is nothing random left to estimate",
            column=name if isinstance(name, str) else None,
        )


class LMMFit:
    """A fitted linear mixed model (names as lme4: fixef, vcov, varcorr, ranef)."""

    def __init__(self, design: Design, theta, reml: bool, xnames, formula, message, *, location=None):
        self._design = design
        self._location = location
        self.formula = formula
        self.method = "REML" if reml else "ML"
        self.reml = reml
        self.convergence_message = message
        self.converged = message is None
        sol = design.solve(theta, reml)
        self._sol = sol
        scale = design.scale
        self.theta = sol.theta / np.sqrt(scale)  # lme4's θ (relative to σ per unit of the caller's weight)
        self.sigma2 = sol.sigma2 * scale
        self.sigma = math.sqrt(self.sigma2)
        self.criterion = sol.deviance
        self.loglik = -0.5 * sol.deviance
        self.nobs = design.N
        self.n_params = design.p + design.n_theta + 1
        self.aic = sol.deviance + 2 * self.n_params
        self.bic = sol.deviance + self.n_params * math.log(design.N)
        self._beta = design.beta0 + sol.beta + (location if location is not None else 0.0)
        self._xnames = list(xnames)
        self.covariances = [sol.sigma2 * T @ T.T for T in sol.Ts]
        self.ngrps = {t.group: t.n_levels for t in design.terms}
        self.singular = self._is_singular()
        if self.singular:
            warnings.warn(
                "lmm: boundary (singular) fit: a variance is 0 or a correlation is +/-1; see .varcorr",
                BoundaryWarning,
                stacklevel=3,
            )
        self._modes = conditional_modes(design, sol)
        self._uncertainty = None

    @property
    def model_frame(self) -> pd.DataFrame:
        """The rows the model was fitted to (lme4's ``model.frame``; not a copy: do not modify)."""
        return self._data

    @property
    def boundary(self) -> bool:
        """Same as ``singular`` (the name the classical fits use for a truncated variance)."""
        return self.singular

    def at(self, theta) -> "LMMFit":
        """The same model evaluated (not optimised) at lme4's θ (relative covariance
        factors, lme4's order); β̂, σ̂² and the conditional modes are profiled at that θ.
        For plug-in checks against published fits."""
        internal = np.asarray(theta, float) * np.sqrt(self._design.scale)
        out = LMMFit(self._design, internal, self.reml, self._xnames, self.formula, None, location=self._location)
        out._data, out._fixed = self._data, self._fixed
        out._offset_name = self._offset_name
        return out

    # -- estimates (tables built on first use: a small fit's pandas objects cost as much as its optimum)
    @functools.cached_property
    def fixef(self) -> pd.Series:
        """The fixed effects β̂ (lme4's ``fixef``)."""
        return pd.Series(self._beta, index=self._xnames, name="fixef")

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(fit))``: variances, covariances (sdcor: correlations), residual."""
        return varcorr_table(self._design.terms, self.covariances, self.sigma2)

    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects, σ²(X'V⁻¹X)⁻¹ (lme4's ``vcov``)."""
        sol, names = self._sol, self._xnames
        vcov = sol.sigma2 * np.linalg.inv(sol.Qxx) if self._design.p else np.zeros((0, 0))
        return pd.DataFrame(vcov, index=names, columns=names)

    @functools.cached_property
    def fixef_se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.vcov.index, name="se")

    def _is_singular(self) -> bool:
        """lme4's isSingular (a T_ii below 1e-4 on lme4's θ scale) or, scale-free, a term
        whose covariance is numerically rank-deficient (min/max eigenvalue < 1e-8)."""
        d = self._design
        for T, sl, t in zip(self._sol.Ts, d.theta_index, d.terms):
            diag = np.array([T[i, i] for i in range(t.k)]) / np.sqrt(d.scale)
            if np.any(diag < SINGULAR_TOL):
                return True
            if t.k > 1:  # (a scalar term is rank-deficient only at T = 0, caught above)
                ev = _eigh(T @ T.T, vectors=False)
                if ev[0] <= 1e-8 * max(ev[-1], 1e-300):
                    return True
        return False

    def _measures(self):
        if self._uncertainty is None:
            self._uncertainty = Uncertainty(self)
        return self._uncertainty

    def ranef(self, bootstrap: int | None = None, seed: int | None = None,
              measures=MEASURES) -> pd.DataFrame:
        """Conditional modes with three uncertainty measures side by side (docs/formulas.md §9):
        ``cond_sd`` (lme4 condVar: u | y at θ̂, β known), ``pev_sd`` (Henderson C²²: also
        β̂), ``mse_sd`` (√(g₁ + g₂ + 2g₃), Prasad–Rao/Datta–Lahiri: also θ̂). ``measures``
        picks which (``("cond_sd",)`` is the cheapest). With ``bootstrap=B`` (and a
        ``seed``) adds ``boot_sd``, the parametric-bootstrap RMSE."""
        measures = tuple(measures)
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ArgumentError(f"unknown ranef measure(s) {unknown}; choose from {list(MEASURES)}")
        unc = self._measures()
        sds = unc.ranef_measures(measures)
        parts = []
        for i, t in enumerate(self._design.terms):
            part = pd.DataFrame({
                "grp": t.group,
                "level": pd.Index(t.levels).repeat(t.k),
                "term": np.tile(np.asarray(t.names, dtype=object), t.n_levels),
                "value": self._modes[i].ravel(),
            })
            for name in measures:
                part[name] = sds[name][i].ravel()
            parts.append(part)
        out = pd.concat(parts, ignore_index=True)
        if bootstrap:
            if seed is None:
                raise ValueError("the parametric bootstrap needs an explicit seed")
            boot = unc.bootstrap_ranef(bootstrap, seed)
            out["boot_sd"] = np.concatenate([b.ravel() for b in boot])
        return out

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = False, interval=None,
                level: float = 0.95, bootstrap: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """Premiums x₀'β̂ + z₀'û for the rows of ``newdata`` (default: the fitted data) with
        cond_sd, pev_sd and mse_sd (docs/formulas.md §9, target l'β + m'u), as lme4's ``predict``:
        ``re_form`` (None: every random term; "~0" or False: fixed effects only; or a
        formula naming some terms), ``allow_new_levels`` (else an unseen level raises
        NewLevelError; allowed, it gets û = 0, the collective premium), ``interval``
        ("cond", "pev", "mse" or a list: normal ``<m>_lower``/``<m>_upper`` at ``level``).
        ``bootstrap=B`` with a ``seed`` adds ``boot_sd``. See :mod:`bayescred.lmm.predict`."""
        from .predict import predict

        return predict(self, newdata, re_form, allow_new_levels, interval, level, bootstrap, seed)

    def confint(self, level: float = 0.95, method: str = "profile", parm=None, nsim: int = 500,
                seed: int | None = None) -> pd.DataFrame:
        """Intervals for every parameter as lme4's ``confint``: SDs and correlations of the
        random effects, the residual SD, the fixed effects (``parm``: None for all,
        "theta_", "beta_" or names). ``method``: "profile" (the fit's own criterion for the
        variance parameters, REML for REML fits where lme4 profiles the ML deviance; the ML
        deviance for β as lme4), "wald" (β only, NaN elsewhere as lme4) or "boot"
        (parametric bootstrap percentiles of ``nsim`` refits, needs ``seed``). Rows follow
        ``varcorr`` then ``fixef``; see :mod:`bayescred.lmm.confint` for names and formulas."""
        from .confint import confint

        return confint(self, level, method, parm, nsim, seed)

    def to_dict(self) -> dict:
        """The JSON-ready summary (CLI ``bayescred lmm --json``)."""
        ranef = self.ranef()

        def clean(v):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                return None
            if isinstance(v, (np.floating, np.integer)):
                return clean(v.item())
            return v

        return {
            "formula": self.formula,
            "method": self.method,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "fixef_se": {k: float(v) for k, v in self.fixef_se.items()},
            "varcorr": [{k: clean(v) for k, v in row.items()} for row in self.varcorr.to_dict("records")],
            "sigma2": float(self.sigma2),
            "criterion": float(self.criterion),
            "loglik": float(self.loglik),
            "aic": float(self.aic),
            "bic": float(self.bic),
            "singular": bool(self.singular),
            "converged": bool(self.converged),
            "nobs": int(self.nobs),
            "ranef": [{k: clean(v) for k, v in row.items()} for row in ranef.to_dict("records")],
        }

    # -- residuals, fitted values and information criteria (issue 12)
    def _response_residuals(self) -> np.ndarray:
        """y - (offset + Xβ̂ + Zb̂) per row; the offset cancels against the design's response."""
        d = self._design
        zb = sum(np.einsum("nk,nk->n", t.X, b[t.codes]) for t, b in zip(d.terms, self._modes))
        beta0 = d.beta0 + (self._location if self._location is not None else 0.0)  # the centring, undone
        return d.y + d.X @ (beta0 - self._beta) - zb

    def residuals(self, type: str = "response", scaled: bool = False) -> pd.Series:
        """Conditional residuals as lme4's ``residuals(fit, type, scaled)``: ``"response"`` and
        ``"working"`` y - μ̂ with μ̂ = offset + Xβ̂ + Zb̂; ``"pearson"`` and ``"deviance"``
        √w (y - μ̂) (w the caller's weights); ``scaled=True`` divides by σ̂ — lme4's "scaled
        residuals" of ``summary()`` are ``residuals("pearson", scaled=True)``."""
        if type not in ("response", "working", "pearson", "deviance"):
            raise ArgumentError(f"type must be 'response', 'working', 'pearson' or 'deviance', got {type!r}")
        r = self._response_residuals()
        if type in ("pearson", "deviance"):
            r = r * np.sqrt(self._design.w * self._design.scale)
        if scaled:
            r = r / self.sigma
        return pd.Series(r, index=self._data.index, name=f"{type} residual")

    def fitted(self) -> pd.Series:
        """Conditional fitted values offset + Xβ̂ + Zb̂ for the rows of the fit (lme4's ``fitted()``)."""
        y = np.asarray(self._fixed.y, dtype=float)
        return pd.Series(y - self._response_residuals(), index=self._data.index, name="fitted")

    def information_criteria(self, convention: str = "lme4") -> pd.Series:
        """logLik, AIC and BIC with the number of parameters k = p + variance parameters + 1.

        ``"lme4"`` (default, the ``aic``/``bic`` attributes): BIC = -2ℓ + k log N.
        ``"nlme"``: for a REML fit nlme's BIC uses N - p observations, BIC = -2ℓ + k log(N - p)
        (seed 004 Table 6.2 prints 1328.41 where lme4 gives 1328.58); ML fits agree.
        logLik and AIC are the same in both (−½ × the REML criterion or ML deviance)."""
        if convention not in ("lme4", "nlme"):
            raise ArgumentError(f"convention must be 'lme4' or 'nlme', got {convention!r}")
        n = self.nobs - (self._design.p if convention == "nlme" and self.reml else 0)
        k = self.n_params
        return pd.Series(
            {"loglik": self.loglik, "aic": self.aic, "bic": self.criterion + k * math.log(n), "n_params": k, "nobs": n},
            name=f"{self.method} ({convention})",
        )

    def summary(self):
        """The fit laid out as lme4's ``summary(lmer(...))``: criterion, scaled residuals,
        random effects, fixed effects with SE and t value, their correlation. ``print()`` it;
        its tables are attributes (:class:`~bayescred.lmm.summary.LMMSummary`)."""
        from .summary import summarise

        return summarise(self)

    def __repr__(self) -> str:
        return (
            f"LMMFit({self.formula!r}, method={self.method}, criterion={self.criterion:.4f}, "
            f"sigma2={self.sigma2:.6g}, singular={self.singular})"
        )
