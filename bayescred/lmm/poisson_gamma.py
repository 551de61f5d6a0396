"""Poisson–gamma empirical Bayes: exact marginal (negative-binomial) maximum likelihood.

Model (docs/formulas.md §7 case (c); seed 004_07f8365c92996b9b.txt §6.3)::

    y_ik | u_i ~ Poisson(mu_ik * u_i),   mu_ik = exp(x_ik' beta + log exposure_ik),
    u_i ~ Gamma(shape alpha, rate alpha)  (mean 1, Var u_i = lam = 1/alpha).

Integrating u_i out gives, per risk i (docs/reference-values.md §11.6),

    L_i = prod_k mu_ik^y_ik / y_ik!  *  alpha^alpha Gamma(alpha + y_i+) / [Gamma(alpha) (alpha + mu_i+)^(alpha + y_i+)],

a negative multinomial (NB2 when each risk has one row: ``glm.nb`` with theta = alpha).
``poisson_gamma_eb`` maximises sum_i log L_i jointly over (beta, log alpha) with analytic
gradient and Hessian (scipy ``trust-exact``). Given the estimates, each risk's effect has
the conjugate posterior u_i | y ~ Gamma(alpha + y_i+, alpha + mu_i+), so

    u_i = (alpha + y_i+)/(alpha + mu_i+) = Z_i (y_i+/mu_i+) + (1 - Z_i),   Z_i = mu_i+/(mu_i+ + alpha):

Bühlmann–Straub credibility on the ratio claims/expected with weight mu_i+ and k = alpha.

Three uncertainty measures of u_i, the same as the Gaussian engine (docs/formulas.md §9):
(i) ``cond_sd``: g1 = Var(u_i | y) = (alpha + y_i+)/(alpha + mu_i+)^2 at the estimates;
(ii) ``pev_sd``: g1 + g2, g2 = d_b' I_bb^-1 d_b with d_b = du_i/dbeta and I_bb the beta
block of the observed information (lam treated as known);
(iii) ``mse_sd``: g1 + g2 + 2 g3, where g2 + g3 = d' I^-1 d is the delta-method variance of
u_i through all of (beta, log alpha) with the full observed information, so g3 is the part
due to estimating lam. This is the Prasad–Rao form of the Gaussian engine; the factor 2
stands for the downward bias of the plug-in g1 (Booth & Hobert 1998, JASA 93, 262-272,
derive the same conditional MSEP for GLMMs). (i) <= (ii) <= (iii) holds by construction.
A seeded parametric bootstrap of the conditional MSEP (and its bias-corrected form) is
available on request. The factor 2 is a Gaussian-REML identity, only approximate here: in
293 simulated portfolios of 30 risks x 4 rows, (i)/(ii)/(iii) recovered 75/81/96 % of the
realised MSE (g1 + g2 + g3 alone: 88 %), the bias-corrected bootstrap 96 %
(benchmarks/bench_poisson_gamma.py); the plug-in g1 is low because the ML lam-hat is.

``method="hl"`` fits the same model by h-likelihood as R's dhglm does (:mod:`.hlik`); the
two estimators differ (bus: dhglm lam = exp(-1.097) = 0.334 against the exact marginal ML
0.420456, docs/reference-values.md §11.6, E12; train, medpar and fabric: the h-likelihood lam is
the larger one), and ``summary()`` shows both side by side with the reason.
"""

from __future__ import annotations

import json
import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse, special

from .. import errors
from .. import formula as fm
from .. import rating
from .._arguments import check_number
from . import hlik
from ..portfolio import _to_pandas, as_frame, validate

__all__ = ["poisson_gamma_eb", "PoissonGammaFit"]

_LOG_ALPHA_MAX = 30.0  # lam < 1e-13: numerically the Poisson boundary


# --------------------------------------------------------------------------- design


@dataclass
class _Design:
    rating: rating.RatingDesign  # the shared rating-factor coding (bayescred.rating)
    group: str
    claims: str
    exposure: str | None
    offset: str | None

    @property
    def names(self) -> list[str]:
        return self.rating.names

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return self.rating.matrix(frame)

    def log_offset(self, frame: pd.DataFrame) -> np.ndarray:
        off = np.zeros(len(frame))
        if self.exposure is not None:
            off += np.log(frame[self.exposure].to_numpy(float))
        if self.offset is not None:
            off += frame[self.offset].to_numpy(float)
        return off

    def check(self, data, *, fitting: bool):
        """Validate ``data`` for this design (claims only when fitting); return it as pandas."""
        return _table(
            data, self.rating.terms, self.group, self.claims if fitting else None, self.exposure, self.offset
        )


def _table(data, terms: rating.Terms, group, claims, exposure, offset) -> pd.DataFrame:
    """The columns of one fit or prediction, validated, as pandas (caller's row labels)."""
    frame = validate(
        data,
        groups=group,
        counts=claims,
        positive=[c for c in (exposure,) if c is not None],
        numeric=[*terms.covariate_columns, *([offset] if offset else [])],
        min_groups=2 if claims is not None else 1,
    )
    columns = [group, *terms.variables, exposure, offset, claims]
    table = _to_pandas(frame.select(*dict.fromkeys(c for c in columns if c is not None)))
    if isinstance(data, pd.DataFrame):
        table.index = data.index  # report the caller's row labels
    return table


def _build_design(data, group, claims, exposure, offset, fixed, covariates, base) -> tuple[_Design, pd.DataFrame]:
    terms = rating.terms(fixed, covariates, group=group)
    if base is not None and not isinstance(base, Mapping):
        raise errors.FormulaError(f"base= maps rating factors to levels, e.g. {{'zone': 4}}, got {type(base).__name__}")
    # unknown columns first; the full validation runs before any computation
    frame = as_frame(data)
    schema = frame.collect_schema() if hasattr(frame, "collect_schema") else frame.schema
    fm.check_columns(terms.formula, list(schema))
    table = _table(data, terms, group, claims, exposure, offset)
    weight = None if exposure is None else table[exposure].to_numpy(float)
    coding = rating.design(table, terms, exposure=weight, base=base)
    return _Design(coding, group, claims, exposure, offset), table


def _check_claims(design: _Design, table: pd.DataFrame, y: np.ndarray) -> None:
    if y.sum() == 0:
        raise errors.NoClaimsError("the data has no claims at all; frequencies cannot be estimated", design.claims)
    for column, levels in design.rating.levels.items():
        totals = pd.Series(y).groupby(table[column].to_numpy()).sum()
        empty = [lev for lev in levels if totals.get(lev, 0) == 0]
        if empty:
            rows = list(table.index[table[column].isin(empty).to_numpy()])
            raise errors.NoClaimsError(
                f"levels {empty} have no claims, so their coefficients are -infinity; merge them with another level",
                column,
                rows,
            )


# --------------------------------------------------------------------------- likelihood


@dataclass
class _Data:
    """Arrays of one fit: design X (n, p), log offset, claims y, risk codes 0..J-1."""

    X: np.ndarray
    off: np.ndarray
    y: np.ndarray
    codes: np.ndarray
    J: int

    def __post_init__(self):
        n = len(self.y)
        self.G = sparse.csr_matrix((np.ones(n), (self.codes, np.arange(n))), shape=(self.J, n))
        self.ysum = self.G @ self.y
        self.const = self.y @ self.off - special.gammaln(self.y + 1).sum()

    def risk(self, beta):
        """mu_ik, mu_i+ and s_i = sum_k mu_ik x_ik (J, p)."""
        mu = np.exp(self.X @ beta + self.off)
        return mu, self.G @ mu, self.G @ (mu[:, None] * self.X)


def _evaluate(d: _Data, beta: np.ndarray, a: float, order: int = 2):
    """Log-likelihood sum_i log L_i (docs/reference-values.md §11.6) in (beta, a = log alpha), and for
    order >= 1 its analytic gradient, for order 2 also the Hessian. Written with log1p so that
    large alpha (near Poisson) loses no precision."""
    alpha = math.exp(a)
    mu, m, s = d.risk(beta)
    y = d.ysum
    log1p = np.log1p(m / alpha)
    gam = special.gammaln(alpha + y) - special.gammaln(alpha) - y * a
    ll = float(d.const + d.y @ (d.X @ beta) + np.sum(gam - (alpha + y) * log1p))
    if order == 0:
        return ll
    u = (alpha + y) / (alpha + m)
    g_beta = d.X.T @ d.y - s.T @ u
    g_alpha = np.sum(special.digamma(alpha + y) - special.digamma(alpha) - log1p + 1 - u)
    grad = np.append(g_beta, alpha * g_alpha)
    if order == 1:
        return ll, grad
    c = u / (alpha + m)  # (alpha + y)/(alpha + m)^2 = Var(u | y)
    h_bb = -(d.X.T * (u[d.codes] * mu)) @ d.X + (s.T * c) @ s
    h_balpha = -s.T @ ((m - y) / (alpha + m) ** 2)
    h_aa = np.sum(
        special.polygamma(1, alpha + y)
        - special.polygamma(1, alpha)
        + m / (alpha * (alpha + m))
        - (m - y) / (alpha + m) ** 2
    )
    p = len(beta)
    hess = np.empty((p + 1, p + 1))
    hess[:p, :p] = h_bb
    hess[:p, p] = hess[p, :p] = alpha * h_balpha
    hess[p, p] = alpha**2 * h_aa + alpha * g_alpha
    return ll, grad, hess


class _Objective:
    """-loglik, its gradient and Hessian for scipy, evaluated once per point."""

    def __init__(self, d: _Data):
        self.d, self.x, self.values = d, None, None

    def _at(self, x):
        if self.x is None or not np.array_equal(x, self.x):
            self.x, self.values = x.copy(), _evaluate(self.d, x[:-1], x[-1])
        return self.values

    def fun(self, x):
        return -self._at(x)[0]

    def jac(self, x):
        return -self._at(x)[1]

    def hess(self, x):
        return -self._at(x)[2]


def _poisson(d: _Data, beta0: np.ndarray | None = None, tol: float = 1e-10, maxiter: int = 100):
    """Poisson GLM by Newton's method (the lam = 0 boundary model); returns (beta, converged)."""
    p = d.X.shape[1]
    beta = np.zeros(p) if beta0 is None else beta0.copy()
    if beta0 is None and p:
        beta[0] = math.log(d.y.sum() / np.exp(d.off).sum()) if np.allclose(d.X[:, 0], 1) else 0.0

    def ll(b):
        eta = d.X @ b + d.off
        return d.y @ eta - np.exp(eta).sum()

    current = ll(beta)
    for _ in range(maxiter):
        mu = np.exp(d.X @ beta + d.off)
        g = d.X.T @ (d.y - mu)
        step = linalg.solve((d.X.T * mu) @ d.X, g, assume_a="pos")
        t = 1.0
        while (new := ll(beta + t * step)) < current - 1e-12 * abs(current) and t > 1e-8:
            t /= 2
        beta, current = beta + t * step, new
        if np.max(np.abs(t * step)) < tol:
            return beta, True
    return beta, False


def _fit(d: _Data, start: tuple[np.ndarray, float] | None = None):
    """Exact marginal ML. Returns (beta, a = log alpha or +inf at the boundary, converged)."""
    beta_p, ok = _poisson(d, None if start is None else start[0])
    _, m, _ = d.risk(beta_p)
    # score of the profile likelihood in lam at lam = 0: 1/2 sum_i [(y_i+ - mu_i+)^2 - y_i+]
    excess = np.sum((d.ysum - m) ** 2 - d.ysum)
    if excess <= 0:
        return beta_p, math.inf, ok
    a0 = start[1] if start is not None and np.isfinite(start[1]) else math.log(np.sum(m**2) / excess)
    x0 = np.append(beta_p if start is None else start[0], a0)
    p = d.X.shape[1]
    objective = _Objective(d)
    res = optimize.minimize(
        objective.fun,
        x0,
        jac=objective.jac,
        hess=objective.hess,
        method="trust-exact",
        options={"gtol": 1e-8, "maxiter": 500},
    )
    x = res.x
    # polish with plain Newton steps: near the optimum trust-exact can stop early because
    # the change in the objective is below its rounding error while the gradient is not
    for _ in range(5):
        _, grad, hess = _evaluate(d, x[:p], x[p])
        try:
            step = linalg.solve(-hess, grad, assume_a="pos")
        except linalg.LinAlgError:
            break
        decrement = float(grad @ step)  # Newton decrement^2: the log-likelihood still to gain
        if decrement < 1e-20:
            break
        x = x + step
    beta, a = x[:p], float(x[p])
    if a > _LOG_ALPHA_MAX:
        return beta_p, math.inf, ok
    _, grad, hess = _evaluate(d, beta, a)
    try:
        converged = bool(grad @ linalg.solve(-hess, grad, assume_a="pos") < 1e-12)
    except linalg.LinAlgError:
        converged = False
    return beta, a, converged


# --------------------------------------------------------------------------- random effects


def _posterior(lam: float, y: np.ndarray, m: np.ndarray):
    """u_i, Z_i, Var(u_i | y) written in lam so that lam = 0 (Poisson) is exact."""
    u = (1 + lam * y) / (1 + lam * m)
    return u, lam * m / (1 + lam * m), lam * u / (1 + lam * m)


def _derivatives(lam: float, y, m, s):
    """du_i/dbeta (J, p) and du_i/d log(alpha) (J,) of u_i = (alpha + y)/(alpha + m)."""
    _, _, var = _posterior(lam, y, m)
    return -var[:, None] * s, lam * (m - y) / (1 + lam * m) ** 2


def _quad(D: np.ndarray, C: np.ndarray) -> np.ndarray:
    return np.einsum("ij,jk,ik->i", D, C, D)


def _pev_mse(g1, d_beta, d_a, cov_beta_known, cov):
    """(ii) g1 + g2 and (iii) g1 + g2 + 2 g3 from the derivatives of the predictor (module
    docstring). (iii) is NaN at the boundary, where the information about lam is undefined."""
    g2 = _quad(d_beta, cov_beta_known)
    g3 = np.maximum(_quad(np.column_stack([d_beta, d_a]), cov) - g2, 0)  # >= 0 up to rounding
    return g1 + g2, g1 + g2 + 2 * g3


# --------------------------------------------------------------------------- result


class PoissonGammaFit:
    """Result of :func:`poisson_gamma_eb`.

    Attributes: ``fixef`` (Series), ``vcov`` (DataFrame, beta block of the inverse observed
    information over (beta, log lam)), ``information`` (full observed information,
    DataFrame over the coefficients and "log(lam)"), ``lam`` (= Var u), ``alpha`` (= 1/lam,
    glm.nb's theta), ``log_lam_se``, ``lam_se``, ``loglik`` (with the -log y! terms),
    ``deviance`` (-2 loglik), ``aic``, ``bic``, ``boundary``, ``converged``, ``estimated``
    (False when evaluated at given values), ``n_obs``, ``n_groups``.
    ``collective`` (exp of the intercept: the base frequency, claims per unit exposure at
    the base level of every rating factor and covariates at 0), ``components`` (lam,
    between, collective with their units, :func:`bayescred.rating.components`), ``coding``
    (the rating factors, their base levels and dummy columns, as the factory records them).
    Methods: ``ranef()``, ``predict(newdata)``, ``summary()``, ``to_dict()``.
    """

    def __init__(self, design: _Design, d: _Data, levels, beta, a, *, converged, estimated, hl=None):
        self._design, self._d, self._levels = design, d, levels
        self.method = "ml" if hl is None else "hl"
        self.hlik = hl  # hlik.HLikResult for method="hl": dhglm's SEs, -2ML, -2RL, cAIC
        names = design.names
        self.boundary = not np.isfinite(a)
        self.lam = 0.0 if self.boundary else math.exp(-a)
        self.alpha = math.inf if self.boundary else math.exp(a)
        self.converged = converged
        self.estimated = estimated
        self.n_obs, self.n_groups = len(d.y), d.J
        self.fixef = pd.Series(beta, index=names, name="fixef")
        self.collective = math.exp(float(beta[0]))
        self.coding = design.rating.coding()
        # between = lam m^2 needs one frequency m for every cell: no factors, covariates or offset
        self.components = rating.components(
            self.collective, self.lam, single_frequency=len(names) == 1 and design.offset is None
        )
        if self.boundary:
            mu = np.exp(d.X @ beta + d.off)
            self.loglik = float(d.y @ np.log(mu) - mu.sum() - special.gammaln(d.y + 1).sum())
            info = (d.X.T * mu) @ d.X
            cov = np.full((len(names) + 1, len(names) + 1), np.nan)
            cov[:-1, :-1] = _inv(info)
            full = np.full_like(cov, np.nan)
            full[:-1, :-1] = info
        else:
            self.loglik, _, hess = _evaluate(d, beta, a)
            full = -hess
            cov = _inv(full)
        flip = np.ones(len(names) + 1)
        flip[-1] = -1.0  # log lam = -log alpha
        labels = [*names, "log(lam)"]
        self.information = pd.DataFrame(full * np.outer(flip, flip), index=labels, columns=labels)
        self._cov = cov  # over (beta, log alpha); NaN where the information is not positive definite
        self._cov_beta_known = _inv(full[:-1, :-1])  # Var(beta-hat) with lam known, for (ii)
        self.vcov = pd.DataFrame(cov[:-1, :-1], index=names, columns=names)
        self.log_lam_se = float(np.sqrt(cov[-1, -1])) if np.isfinite(cov[-1, -1]) else math.nan
        self.lam_se = self.lam * self.log_lam_se
        if hl is not None:  # dhglm's standard errors; loglik stays the exact marginal one at these values
            self.vcov = pd.DataFrame(hl.beta_vcov, index=names, columns=names)
            self.log_lam_se = hl.log_lam_se
            self.lam_se = self.lam * self.log_lam_se
        k = len(names) + 1
        self.deviance = -2 * self.loglik
        self.aic = self.deviance + 2 * k
        self.bic = self.deviance + k * math.log(self.n_obs)
        if self.boundary and estimated:
            warnings.warn(
                "Var(u) = lam is estimated at its boundary 0: no overdispersion between risks beyond Poisson, "
                "so every u_i = 1 (Z_i = 0); the delta-method mse_sd is undefined there (use ranef(bootstrap=...))",
                errors.BoundaryWarning,
                stacklevel=3,
            )

    # ---- random effects
    def _ranef_arrays(self, beta=None, lam=None):
        d = self._d
        beta = self.fixef.to_numpy() if beta is None else beta
        lam = self.lam if lam is None else lam
        _, m, s = d.risk(beta)
        u, Z, var = _posterior(lam, d.ysum, m)
        return m, s, u, Z, var

    def ranef(self, bootstrap: int = 0, seed: int | None = None) -> pd.DataFrame:
        """One row per risk (index: the group column's levels).

        Columns: ``claims`` y_i+, ``expected`` mu_i+ (fixed effects and exposure only),
        ``Z`` = mu_i+/(mu_i+ + alpha), ``u`` = (alpha + y_i+)/(alpha + mu_i+) (the EB
        relativity: the posterior mean, also dhglm's h-likelihood estimate), ``premium`` =
        u_i mu_i+ = Z_i y_i+ + (1 - Z_i) mu_i+ (expected claims for the same exposure), and
        the SDs of u_i: ``cond_sd`` (i), ``pev_sd`` (ii), ``mse_sd`` (iii) (module docstring).

        ``bootstrap=B`` (with an explicit ``seed``) adds a parametric bootstrap of the MSE:
        simulate u*, y* from the fit, refit, and with the observed data
        ``boot_sd`` = sqrt(g1 + E*(u_i(theta*) - u_i(theta))^2) and the bias-corrected
        ``boot_bc_sd`` = sqrt(2 g1 - E* g1(theta*) + E*(u_i(theta*) - u_i(theta))^2)
        (Booth & Hobert 1998). ``attrs["bootstrap"]`` records B, the seed, failed refits
        (left out) and refits at the boundary lam* = 0 (kept: u_i(theta*) = 1 there).
        """
        m, s, u, Z, var = self._ranef_arrays()
        d_beta, d_a = _derivatives(self.lam, self._d.ysum, m, s)
        pev, mse = _pev_mse(var, d_beta, d_a, self._cov_beta_known, self._cov)
        table = pd.DataFrame(
            {
                "claims": self._d.ysum,
                "expected": m,
                "Z": Z,
                "u": u,
                "premium": u * m,
                "cond_sd": np.sqrt(var),
                "pev_sd": np.sqrt(pev),
                "mse_sd": np.sqrt(mse),
            },
            index=pd.Index(self._levels, name=self._design.group),
        )
        if bootstrap:
            boot = self._bootstrap(bootstrap, seed, u, var)
            table = table.join(boot)
            table.attrs["bootstrap"] = boot.attrs
        return table

    def _bootstrap(self, n_boot: int, seed, u, var) -> pd.DataFrame:
        if seed is None:
            raise ValueError("the parametric bootstrap needs an explicit seed=")
        rng = np.random.default_rng(seed)
        d = self._d
        beta = self.fixef.to_numpy()
        mu, _, _ = d.risk(beta)
        a = math.log(self.alpha) if not self.boundary else math.inf
        sq, g1 = np.zeros(d.J), np.zeros(d.J)
        done = failed = at_boundary = 0
        for _ in range(n_boot):
            u_star = rng.gamma(self.alpha, 1 / self.alpha, d.J) if not self.boundary else np.ones(d.J)
            y_star = rng.poisson(mu * u_star[d.codes]).astype(float)
            star = _Data(d.X, d.off, y_star, d.codes, d.J)
            try:
                b_star, a_star, ok = _fit(star, (beta, a))
            except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                ok = False
            if not ok:
                failed += 1
                continue
            lam_star = 0.0 if not np.isfinite(a_star) else math.exp(-a_star)
            at_boundary += lam_star == 0.0
            _, _, u_star_hat, _, var_star = self._ranef_arrays(b_star, lam_star)
            sq += (u_star_hat - u) ** 2
            g1 += var_star
            done += 1
        if done == 0:
            raise errors.BayescredError("every bootstrap refit failed")
        param, g1_mean = sq / done, g1 / done
        out = pd.DataFrame(
            {
                "boot_sd": np.sqrt(var + param),
                "boot_bc_sd": np.sqrt(np.maximum(2 * var - g1_mean, 0) + param),
            },
            index=pd.Index(self._levels, name=self._design.group),
        )
        out.attrs.update(n_boot=n_boot, seed=seed, failed=failed, boundary_refits=int(at_boundary))
        return out

    # ---- prediction
    def predict(self, newdata) -> pd.DataFrame:
        """Expected claims of new rows (same columns as the fit; claims not needed).

        ``fixed`` = exp(x'beta + log exposure), ``u`` the risk's EB relativity (1 for a risk
        not in the fit), ``premium`` = fixed * u, and the SDs of premium against the true
        mean fixed * u_i: ``cond_sd`` (i), ``pev_sd`` (ii), ``mse_sd`` (iii). For a new
        risk, (i) is fixed*sqrt(lam) and lam does not move the prediction. Index: newdata's.
        """
        design = self._design
        table = design.check(newdata, fitting=False)
        X0 = design.matrix(table)
        mu0 = np.exp(X0 @ self.fixef.to_numpy() + design.log_offset(table))
        m, s, u, _, var = self._ranef_arrays()
        pos = pd.Index(self._levels).get_indexer(table[design.group])
        known = pos >= 0
        u0 = np.where(known, u[pos], 1.0)
        var0 = np.where(known, var[pos], self.lam)
        d_beta = mu0[:, None] * u0[:, None] * X0
        d_a = np.zeros(len(mu0))
        db, da = _derivatives(self.lam, self._d.ysum, m, s)
        d_beta[known] += mu0[known, None] * db[pos[known]]
        d_a[known] = mu0[known] * da[pos[known]]
        cond = mu0**2 * var0
        pev, mse = _pev_mse(cond, d_beta, d_a, self._cov_beta_known, self._cov)
        return pd.DataFrame(
            {
                "fixed": mu0,
                "u": u0,
                "premium": mu0 * u0,
                "cond_sd": np.sqrt(cond),
                "pev_sd": np.sqrt(pev),
                "mse_sd": np.sqrt(mse),
            },
            index=table.index,
        )

    # ---- reporting
    def summary(self) -> str:
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        coef = pd.DataFrame({"Estimate": self.fixef, "Std. Error": se, "z value": self.fixef / se})
        how = (
            ("exact marginal ML (negative multinomial)" if self.method == "ml" else "h-likelihood (dhglm's algorithm)")
            if self.estimated
            else "evaluated at given estimates (no fit)"
        )
        lines = [
            f"Poisson-gamma random intercept, {how}",
            f"  claims {self._design.claims!r} ~ {' + '.join(self.fixef.index) or '0'}"
            + (f", offset log({self._design.exposure})" if self._design.exposure else "")
            + f", u ~ Gamma(mean 1, Var lam) by {self._design.group!r}",
            f"  {self.n_obs} rows, {self.n_groups} risks;  logLik {self.loglik:.4f}  -2logL {self.deviance:.4f}"
            f"  AIC {self.aic:.4f}  BIC {self.bic:.4f}",
            "",
            "Fixed effects (log scale):",
            coef.to_string(float_format=lambda v: f"{v:.6f}"),
            "",
        ]
        if self.boundary:
            lines.append("Random effect: lam = Var(u) = 0 (BOUNDARY: no extra-Poisson variation; u_i = 1)")
        else:
            lines += [
                f"Random effect: lam = Var(u) = {self.lam:.6f} (SE {self.lam_se:.6f});"
                f" log(lam) = {math.log(self.lam):.6f} (SE {self.log_lam_se:.6f}); alpha = 1/lam = {self.alpha:.6f}",
            ]
        lines.append(rating.between_line(self.components))
        if self.method == "hl":
            h = self.hlik
            lines.append(
                f"  -2ML (-2 p_v(h)) {h.ml:.5f}  -2RL (-2 p_beta,v(h)) {h.rl:.5f}  cAIC {h.caic:.5f}"
                f"  scaled deviance {h.scaled_deviance:.5f}  df {h.df:.5f};  logLik above: exact marginal at these values"
            )
        if self.estimated:
            lines += ["", self._side_by_side()]
        if not self.estimated:
            lines.append("  (standard errors from the observed information at these values, not at the ML)")
        if not self.converged and self.estimated:
            lines.append("WARNING: the optimiser did not converge")
        return "\n".join(lines)

    def _side_by_side(self) -> str:
        """Both estimators on the same data (this fit and the other method), the h-likelihood
        fixed point without dhglm's lam/q term, and the reason they differ."""
        d = self._d
        if self.method == "ml":
            other = hlik.fit_hlik(d.X, d.off, d.y, d.codes, d.J)
            ml = (self.fixef.to_numpy(), self.lam)
            hl = (other.beta, other.lam)
        else:
            beta, a, _ = _fit(d, (self.fixef.to_numpy(), -math.log(self.lam)) if self.lam > 0 else None)
            ml = (beta, 0.0 if not np.isfinite(a) else math.exp(-a))
            hl = (self.fixef.to_numpy(), self.lam)
        plain = hlik.fit_hlik(d.X, d.off, d.y, d.codes, d.J, lambda_correction=False, tol=1e-10)
        both = pd.DataFrame(
            {
                "exact ML": [*ml[0], ml[1]],
                "h-likelihood (dhglm)": [*hl[0], hl[1]],
                "h-lik., no lam/q term": [*plain.beta, plain.lam],
            },
            index=[*self.fixef.index, "lam = Var(u)"],
        )
        return "\n".join(
            [
                "Exact marginal ML and h-likelihood side by side:",
                both.to_string(float_format=lambda v: f"{v:.6f}"),
                textwrap.fill(hlik.WHY_THEY_DIFFER, width=100, initial_indent="  ", subsequent_indent="  "),
            ]
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        flag = " BOUNDARY" if self.boundary else ""
        return f"<PoissonGammaFit lam={self.lam:.6g} loglik={self.loglik:.4f} risks={self.n_groups}{flag}>"

    def to_dict(self) -> dict:
        """JSON-ready dict with the LMM keys (fixef, fixef_se, varcorr, loglik, ranef, ...)."""
        r = self.ranef()
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        out = {
            "model": "poisson_gamma",
            "method": self.method,
            "fixef": dict(zip(self.fixef.index, map(_num, self.fixef))),
            "fixef_se": dict(zip(self.fixef.index, map(_num, se))),
            "lam": _num(self.lam),
            "lam_se": _num(self.lam_se),
            "log_lam_se": _num(self.log_lam_se),
            "alpha": _num(self.alpha),
            "collective": _num(self.collective),
            "between": _num(self.components["estimate"].get("between", math.nan)),
            "coding": self.coding,
            "varcorr": [
                {
                    "grp": self._design.group,
                    "var1": "(Intercept)",
                    "var2": None,
                    "vcov": _num(self.lam),
                    "sdcor": _num(math.sqrt(self.lam)),
                }
            ],
            "loglik": _num(self.loglik),
            "deviance": _num(self.deviance),
            "aic": _num(self.aic),
            "bic": _num(self.bic),
            "boundary": self.boundary,
            "singular": self.boundary,
            "converged": self.converged,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "ranef": [
                {
                    "grp": self._design.group,
                    "level": _num(level),
                    "term": "(Intercept)",
                    "value": _num(row.u),
                    "Z": _num(row.Z),
                    "cond_sd": _num(row.cond_sd),
                    "pev_sd": _num(row.pev_sd),
                    "mse_sd": _num(row.mse_sd),
                }
                for level, row in r.iterrows()
            ],
        }
        json.dumps(out, allow_nan=False)
        return out


def _num(v):
    """Python scalar for JSON: numpy numbers unwrapped, NaN/inf -> None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _inv(info: np.ndarray) -> np.ndarray:
    """Inverse of an information matrix; NaN when it is not positive definite."""
    try:
        chol = linalg.cho_factor(info)
    except linalg.LinAlgError:
        return np.full_like(info, np.nan)
    return linalg.cho_solve(chol, np.eye(len(info)))


# --------------------------------------------------------------------------- entry point


def poisson_gamma_eb(
    data,
    *,
    group: str,
    claims: str,
    exposure: str | None = None,
    fixed: str | Sequence[str] | None = None,
    base: Mapping[str, object] | None = None,
    covariates: str | Sequence[str] | None = None,
    offset: str | None = None,
    fixef: Mapping[str, float] | Sequence[float] | None = None,
    lam: float | None = None,
    method: str = "ml",
    lambda_correction: bool = True,
) -> PoissonGammaFit:
    """Poisson–gamma random-intercept model by exact marginal maximum likelihood.

    The empirical-Bayes counterpart of ``glmer(claims ~ fixed + (1 | group), family =
    poisson, offset = log(exposure))`` with gamma instead of log-normal risk effects, i.e.
    dhglm's ``(1 | group)`` with ``RandDist = "gamma"``, fitted by the exact (negative
    multinomial) marginal likelihood instead of h-likelihood (module docstring).

    Parameters
    ----------
    data : pandas / polars / DuckDB / Dask frame, one row per cell (risk x rating cell x period).
    group : the risk column (one gamma effect u_i per level).
    claims : claim counts (non-negative whole numbers).
    exposure : exposure column (> 0); log(exposure) is the offset. None: exposure 1.
    fixed : rating factors: a column, a list of columns or ``"zone + bus.age"`` (``C(zone)``
        says the same). Every one is a factor, treatment (dummy) coded by the rule of
        :mod:`bayescred.rating` that the Bayesian factory uses too, **a numeric column as
        well** (``zone = 1..7`` gets six dummies, never one slope); columns named as R's
        model.matrix names them (``zone1``, ``bus.age0``).
    base : base (reference) level per factor, e.g. ``{"zone": 4, "bus.age": 4}``; default
        the level with the largest total exposure (rows when ``exposure`` is None), the
        rating convention, the same in ``bc.models.poisson_gamma``.
    covariates : linear terms: numeric columns (a name or a list) or a right-hand side of
        numeric main effects in bayescred.formula's language (``"log(x)"``, ``"x1 + x2"``),
        entered as they are (not centred: the intercept is the log frequency at 0).
    offset : an extra log-scale offset column, added to log(exposure).
    fixef, lam : evaluate at these estimates instead of maximising (e.g. published values);
        ``fixef`` maps coefficient names to values (or lists them in design order).
    method : ``"ml"`` exact marginal ML (default) or ``"hl"`` h-likelihood as R's dhglm
        (:mod:`.hlik`; SEs, -2ML, -2RL and cAIC as dhglm prints them, in ``fit.hlik``).
    lambda_correction : ``method="hl"`` only: dhglm's extra lam/q term in the lam step (dhglm
        drops it for data of exactly 32 rows, so its fabric output needs False).

    Returns
    -------
    PoissonGammaFit with ``fixef``, ``vcov``, ``lam``, ``alpha``, ``collective``,
    ``components`` (lam, between, collective with their units), ``coding`` (factors, base
    levels, columns), ``loglik``, ``ranef()``, ``predict()``, ``summary()``, ``to_dict()``.
    A fit with lam = 0 (no extra-Poisson variation between risks: the profile score
    1/2 sum_i[(y_i+ - mu_i+)^2 - y_i+] <= 0 at the Poisson fit) is flagged: ``boundary =
    True`` and a BoundaryWarning.

    Example (Swedish bus data, seed 004_07f8365c92996b9b.txt §6.3; docs/reference-values.md §11.6)::

        fit = poisson_gamma_eb(bus, group="co.id", claims="clm.cnt", exposure="dur",
                               fixed="zone + bus.age", base={"zone": 4, "bus.age": 4})
        fit.lam   # 0.420456 exact marginal ML; dhglm's h-likelihood prints 0.334 (E12)
    """
    design, table = _build_design(data, group, claims, exposure, offset, fixed, covariates, base)
    codes, levels = pd.factorize(table[group], sort=True)
    y = table[claims].to_numpy(float)
    X = design.rating.X
    names = design.names
    d = _Data(X, design.log_offset(table), y, codes, len(levels))
    if (fixef is None) != (lam is None):
        raise ValueError("give both fixef= and lam= to evaluate at given estimates, or neither to fit")
    if method not in ("ml", "hl"):
        raise errors.ArgumentError(f"method must be 'ml' (exact marginal ML) or 'hl' (h-likelihood), got {method!r}")
    if fixef is None and method == "hl":
        _check_claims(design, table, y)
        res = hlik.fit_hlik(d.X, d.off, d.y, d.codes, d.J, lambda_correction=lambda_correction)
        if not res.converged:
            warnings.warn("the h-likelihood iteration did not converge", errors.ConvergenceWarning, stacklevel=2)
        a = math.inf if res.boundary else -math.log(res.lam)
        return PoissonGammaFit(design, d, np.asarray(levels), res.beta, a, converged=res.converged, estimated=True, hl=res)
    if fixef is None:
        _check_claims(design, table, y)
        beta, a, converged = _fit(d)
        if not converged:
            warnings.warn("the marginal-likelihood optimiser did not converge", errors.ConvergenceWarning, stacklevel=2)
        return PoissonGammaFit(design, d, np.asarray(levels), beta, a, converged=converged, estimated=True)
    if isinstance(fixef, Mapping):
        unknown, missing = set(fixef) - set(names), set(names) - set(fixef)
        if unknown or missing:
            raise errors.FormulaError(
                f"fixef names must match the design {names}; unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        beta = np.array([fixef[n] for n in names], float)
    else:
        beta = np.asarray(fixef, float)
        if beta.shape != (len(names),):
            raise errors.FormulaError(f"fixef needs {len(names)} values in the order {names}")
    lam = check_number(lam, "lam", minimum=0.0, allow_none=False)
    if not np.all(np.isfinite(beta)):
        raise errors.InvalidArgumentError(f"fixef= must be finite, got {list(beta)}", column="fixef")
    a = math.inf if lam == 0 else -math.log(lam)
    return PoissonGammaFit(design, d, np.asarray(levels), beta, a, converged=True, estimated=False)
