"""``bc.glmm``: generalised linear mixed models at lme4 ``glmer`` parity, and the fit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .. import formula as fm
from ..errors import (
    BoundaryWarning,
    FormulaError,
    NegativeValueError,
    NonPositiveError,
    TooFewRisksError,
)
from ..lmm.model import _rank_check, model_inputs, varcorr_table
from .family import Family, get_family, has_scale
from .optimise import Problem, fit, single_thread
from .pirls import RandomEffects, Response

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on θ


def _response(fixed, data, family: Family, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, n, wt) as R's family()$initialize leaves them (binomial: proportions, trials)."""
    name = fixed.response_name
    y = np.asarray(fixed.y, dtype=float)
    if y.ndim == 2:  # cbind(successes, failures)
        if family.name != "binomial":
            raise FormulaError(f"a cbind() response needs family='binomial', not {family.display}")
        bad = np.any(y < 0, axis=1)
        if bad.any():
            raise NegativeValueError("successes and failures must be >= 0", name, list(data.index[bad]))
        n = y[:, 0] + y[:, 1]
        return np.where(n > 0, y[:, 0] / np.where(n > 0, n, 1.0), 0.0), n, prior * n
    if family.name == "binomial":
        bad = (y < 0) | (y > 1)
        if bad.any():
            raise NegativeValueError("a binomial response must be a proportion in [0, 1] (or use cbind)", name,
                                     list(data.index[bad]))
        return y, np.ones_like(y), prior
    if family.name in ("poisson", "negbin") and np.any(y < 0):
        raise NegativeValueError("count response must be >= 0", name, list(data.index[y < 0]))
    if family.name == "Gamma" and np.any(y <= 0):
        raise NonPositiveError("a Gamma response must be > 0", name, list(data.index[y <= 0]))
    return y, np.ones_like(y), prior


def glmm(formula: str, data, family="poisson", weights=None, offset=None, nAGQ: int = 1):  # noqa: N803 (lme4's name)
    """Fit a GLMM (lme4 formula syntax) by the Laplace approximation or adaptive
    Gauss–Hermite quadrature, as lme4's ``glmer``.

    ``family``: 'poisson' (log), 'binomial' (logit; 0/1, proportion with ``weights`` = trials,
    or ``cbind(successes, failures)``), 'Gamma' (log), or a family object
    (``bayescred.glmm.family``); 'negative_binomial' estimates its shape θ as ``glmer.nb``.
    ``weights``: prior weights; ``offset``: known term of the linear predictor (e.g.
    log exposure; column name or array, or ``offset(expr)`` in the formula).
    ``nAGQ``: 1 = Laplace (default), 0 = glmer's fast first stage only, > 1 = adaptive
    Gauss–Hermite with that many nodes (one scalar random-effects term only).
    """
    if isinstance(family, str) and family.lower() in ("negative_binomial", "negbin", "nb"):
        from .negbin import glmm_nb

        return glmm_nb(formula, data, weights=weights, offset=offset, nAGQ=nAGQ)
    fam = get_family(family)
    nAGQ = int(nAGQ)
    if nAGQ < 0 or nAGQ > 100:
        raise FormulaError(f"nAGQ must be between 0 and 100, got {nAGQ}")
    data, parsed, w, wname, off = model_inputs(formula, data, weights, offset, positive_weights=False)
    if w is not None and np.any(w < 0):
        raise NonPositiveError("weights must be >= 0", wname, list(data.index[w < 0]))
    n = len(data)
    prior = np.ones(n) if w is None else w
    if parsed.response is None:
        raise FormulaError("the formula has no response (left of '~')")
    fixed = fm.fixed_design(parsed, data)
    y, ntrials, wt = _response(fixed, data, fam, prior)
    total_offset = fixed.offset + (0.0 if off is None else off)
    X, xnames = fixed.X, fixed.names
    _rank_check(X, xnames, np.where(wt > 0, wt, 1.0))
    if not parsed.random:
        raise FormulaError("the formula has no random-effects term such as (1 | group); use bc.glm")
    terms = fm.random_terms(parsed, data)
    for t in terms:
        if t.n_levels < 2:
            raise TooFewRisksError(f"grouping factor has a single level ({t.levels[0]})", column=t.group)
    re = RandomEffects(terms)
    if nAGQ > 1 and not (len(terms) == 1 and terms[0].k == 1):
        raise FormulaError("nAGQ > 1 is only available for models with a single, scalar random-effects term")
    resp = Response(fam, y, ntrials, wt, total_offset)
    problem = Problem(re, resp, X)
    with single_thread():
        opt = fit(problem, nAGQ)
        out = GLMMFit(problem, opt, xnames, formula, nAGQ)
    out._data, out._fixed = data, fixed
    out._offset_arg = offset
    return out


def _clean(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return _clean(v.item())
    return v


class GLMMFit:
    """A fitted GLMM, named as lme4's glmerMod.

    ``fixef``, ``fixef_se``, ``vcov`` (β block of 2H⁻¹, H the Hessian of the deviance in
    (θ, β), as vcov.merMod; from RX for nAGQ = 0 or a Hessian that is not positive
    definite: see ``vcov_source``), ``theta``, ``varcorr`` (as.data.frame(VarCorr)),
    ``sigma`` (Gamma: √((Pearson χ² + ‖û‖²)/n) as lme4; otherwise 1), ``loglik``,
    ``deviance`` (−2 loglik, summary()'s "deviance"), ``residual_deviance`` (Σ deviance
    residuals, R's deviance()), ``deviance_lme4`` (the criterion lme4 minimises and reports
    for nAGQ > 1), ``aic``, ``bic``, ``singular``, ``ranef()``, ``predict()``, ``summary()``,
    ``to_dict()``, ``criterion_at(θ, β)``.
    """

    def __init__(self, problem: Problem, opt, xnames, formula: str, nAGQ: int):
        self._problem = problem
        re, resp, X = problem.re, problem.resp, problem.X
        self.formula = formula
        self.family = resp.family
        self.nAGQ = nAGQ
        self.convergence_message = opt.message
        self.converged = opt.message is None
        self.theta = opt.theta.copy()
        beta = opt.beta.copy()
        mode = problem.mode(self.theta, None if nAGQ == 0 else beta)
        self._mode = mode
        self.fixef = pd.Series(mode.beta if nAGQ == 0 else beta, index=xnames, name="fixef")
        self.nobs = len(resp.y)
        devres = resp.devres(mode.mu)
        self.residual_deviance = float(np.sum(devres))  # R's deviance(glmer fit)
        # lme4's optimum criterion. For nAGQ > 1 lme4 computes it from deviance residuals,
        # and reports −½ of it as logLik, leaving out the saturated log-likelihood; we add
        # it back (aic − Σ devres at the mode: a constant for Poisson and binomial), so
        # loglik is the AGQ approximation of the log-likelihood itself for every nAGQ.
        self.deviance_lme4 = float(opt.deviance)
        self.deviance = self.deviance_lme4  # −2 log-likelihood (summary(glmer)'s "deviance")
        if nAGQ > 1:
            self.deviance += resp.aic(mode.mu) - self.residual_deviance
        self.loglik = -0.5 * self.deviance
        self.n_params = X.shape[1] + re.n_theta + int(self.family.extra_param)
        self.aic = self.deviance + 2 * self.n_params
        self.bic = self.deviance + self.n_params * math.log(self.nobs)
        self.df_resid = self.nobs - self.n_params
        self._pearson = (resp.y - mode.mu) * np.sqrt(resp.wt / self.family.variance(mode.mu))
        u2 = float(np.sum(mode.u**2))
        # lme4 mkMerMod: σ = √(pwrss / n) with pwrss = Pearson χ² + ‖u‖², for families with a scale
        self.sigma = math.sqrt((float(np.sum(self._pearson**2)) + u2) / self.nobs) if has_scale(self.family) else 1.0
        # PLS pieces at the mode: RZX = Λ'Z'WX, S = X'WX − RZX'M⁻¹RZX (lme4's RX'RX)
        self._RZX = re.rhs(mode.w, X)
        self._CX = re.solve(self._RZX)
        self._S = X.T @ (X * mode.w[:, None]) - re.inner(self._RZX, self._CX)
        self._Minv = re.inverse_blocks()
        unsc = np.linalg.inv(self._S) * self.sigma**2
        vcov, self.vcov_source = unsc, "RX"
        if opt.hessian is not None:
            try:
                Hinv = np.linalg.inv(opt.hessian)
                nt = re.n_theta
                V = (Hinv + Hinv.T)[nt:, nt:]
                if np.all(np.isfinite(V)) and np.linalg.eigvalsh(V)[0] > 0:
                    vcov, self.vcov_source = V, "Hessian"
            except np.linalg.LinAlgError:
                pass
        self.vcov = pd.DataFrame(vcov, index=xnames, columns=xnames)
        self.fixef_se = pd.Series(np.sqrt(np.diag(vcov)), index=xnames, name="se")
        self.covariances = [self.sigma**2 * T @ T.T for T in re.Ts]
        self.ngrps = {t.group: t.n_levels for t in re.terms}
        self.varcorr = self._varcorr()
        self.singular = self._is_singular()
        if self.singular:
            warnings.warn("glmm: boundary (singular) fit: a variance is 0 or a correlation is +/-1; see .varcorr",
                          BoundaryWarning, stacklevel=3)
        self._modes = re.to_terms(mode.u)

    # ---------------------------------------------------------------- estimates
    def _varcorr(self) -> pd.DataFrame:
        return varcorr_table(self._problem.re.terms, self.covariances,
                             self.sigma**2 if has_scale(self.family) else None)

    def _is_singular(self) -> bool:
        re = self._problem.re
        for T, t in zip(re.Ts, re.terms):
            if np.any(np.abs(np.diag(T)) < SINGULAR_TOL):
                return True
            ev = np.linalg.eigvalsh(T @ T.T)
            if ev[0] <= 1e-8 * max(ev[-1], 1e-300):
                return True
        return False

    @property
    def boundary(self) -> bool:
        return self.singular

    def criterion_at(self, theta, beta) -> float:
        """lme4's criterion (the Laplace or AGQ deviance its optimiser minimises) at given
        (θ, β), with the conditional modes re-solved; for checks against another fit."""
        p = self._problem
        try:
            with single_thread():
                return p.deviance(np.concatenate([np.atleast_1d(np.asarray(theta, float)), np.atleast_1d(np.asarray(beta, float))]))
        finally:
            p.deviance(np.concatenate([self.theta, self.fixef.to_numpy()]))  # restore the fit's state

    # ---------------------------------------------------------------- conditional modes
    def _positions(self, ti: int):
        """Indices of term ti's effects in the u layout: (level, effect) -> flat index."""
        re = self._problem.re
        t = re.terms[ti]
        if re.single:
            start = sum(s.k for s in re.terms[:ti])
            return np.arange(t.n_levels)[:, None] * re.k + start + np.arange(t.k)[None, :]
        return re.offsets[ti] + np.arange(t.n_levels)[:, None] * t.k + np.arange(t.k)[None, :]

    def _lam(self) -> np.ndarray:
        """Λ as a dense matrix in the u layout (single factor: the k×k block)."""
        re = self._problem.re
        return re.T1 if re.single else re.Lam.toarray()

    def _cov_u(self, pev: bool) -> np.ndarray:
        """Cov(u − û) in the u layout: M⁻¹ (conditional, Laplace) or Henderson's
        M⁻¹ + M⁻¹RZX S⁻¹ RZX'M⁻¹ (also β̂), blocks per level for a single factor."""
        C = self._Minv.copy()
        if pev and self._S.size:
            Sinv = np.linalg.inv(self._S)
            if self._problem.re.single:
                C = C + np.einsum("jap,pq,jbq->jab", self._CX, Sinv, self._CX)
            else:
                C = C + self._CX @ Sinv @ self._CX.T
        return C * self.sigma**2

    def _b_sd(self, C) -> list[np.ndarray]:
        """SDs of b = Λu per term from Cov(u) C."""
        re = self._problem.re
        out = []
        if re.single:
            V = np.einsum("ab,jbc,dc->jad", re.T1, C, re.T1)
            d = np.sqrt(np.maximum(np.diagonal(V, axis1=1, axis2=2), 0))
            start = 0
            for t in re.terms:
                out.append(d[:, start : start + t.k])
                start += t.k
            return out
        Lam = re.Lam
        V = Lam @ (Lam @ C).T
        d = np.sqrt(np.maximum(np.diag(V), 0))
        for ti, t in enumerate(re.terms):
            out.append(d[self._positions(ti)])
        return out

    def ranef(self, measures=("cond_sd", "pev_sd"), bootstrap: int = 200, seed: int | None = None) -> pd.DataFrame:
        """Conditional modes b̂ = Λû per (grp, level, term) with uncertainty measures:
        ``cond_sd`` √diag of the Laplace conditional covariance σ²ΛM⁻¹Λ' (lme4's condVar),
        ``pev_sd`` also β̂ (Henderson's C for the working LMM at the mode), and on request
        ``mse_sd``, the root mean squared error of b̂ − b under a parametric bootstrap of
        ``bootstrap`` replicates (new b and y drawn from the fit, θ and β re-estimated;
        needs ``seed``): it adds the uncertainty of the variance parameters."""
        measures = tuple(measures)
        unknown = set(measures) - {"cond_sd", "pev_sd", "mse_sd"}
        if unknown:
            raise ValueError(f"unknown measures {sorted(unknown)}; choose from cond_sd, pev_sd, mse_sd")
        re = self._problem.re
        cols = {}
        if "cond_sd" in measures:
            cols["cond_sd"] = self._b_sd(self._cov_u(False))
        if "pev_sd" in measures:
            cols["pev_sd"] = self._b_sd(self._cov_u(True))
        if "mse_sd" in measures:
            if seed is None:
                raise ValueError("mse_sd is a parametric bootstrap: give an explicit seed")
            from .uncertainty import bootstrap_mse

            cols["mse_sd"] = bootstrap_mse(self, bootstrap, seed)
        rows = []
        for ti, t in enumerate(re.terms):
            for li, lev in enumerate(t.levels):
                for e, name in enumerate(t.names):
                    rows.append((t.group, lev, name, self._modes[ti][li, e], *(cols[c][ti][li, e] for c in cols)))
        return pd.DataFrame(rows, columns=["grp", "level", "term", "value", *cols])

    # ---------------------------------------------------------------- prediction
    def predict(self, newdata=None, type: str = "link", re_form=None,  # noqa: A002 (R's name)
                allow_new_levels: bool = False) -> pd.DataFrame:
        """Predictions with delta-method SDs: ``link`` (η̂), ``fit`` (on the ``type`` scale:
        η̂ for "link" (lme4's default), μ̂ = g⁻¹(η̂) for "response": the premium), and ``cond_sd`` / ``pev_sd`` of the prediction on
        that scale (conditional on β̂ / including β̂; new levels add the prior variance of
        their effect). ``re_form``: None = all random terms, ``"~0"`` or ``"NA"`` = none."""
        from .uncertainty import predict

        return predict(self, newdata, type, re_form, allow_new_levels)

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict:
        """JSON-ready summary (CLI ``bayescred glmm --json``)."""
        ranef = self.ranef()
        return {
            "formula": self.formula,
            "family": self.family.display,
            "link": self.family.link.name,
            "nAGQ": self.nAGQ,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "fixef_se": {k: float(v) for k, v in self.fixef_se.items()},
            "varcorr": [{k: _clean(v) for k, v in row.items()} for row in self.varcorr.to_dict("records")],
            "theta": [float(v) for v in self.theta],
            "loglik": float(self.loglik),
            "deviance": float(self.deviance),
            "aic": float(self.aic),
            "bic": float(self.bic),
            "sigma": float(self.sigma),
            "singular": bool(self.singular),
            "converged": bool(self.converged),
            "nobs": int(self.nobs),
            "ranef": [{k: _clean(v) for k, v in row.items()} for row in ranef.to_dict("records")],
        }

    def summary(self) -> str:
        """The text of lme4's ``summary(glmer fit)``."""
        from .uncertainty import summary_text

        return summary_text(self)

    def __repr__(self) -> str:
        return (f"GLMMFit({self.formula!r}, family={self.family.display}, nAGQ={self.nAGQ}, "
                f"loglik={self.loglik:.4f}, singular={self.singular})")
