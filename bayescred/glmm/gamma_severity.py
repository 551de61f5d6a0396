"""Gamma severity credibility, empirical-Bayes arm: exact marginal maximum likelihood
(docs/formulas.md §12).

Claim sizes of risk i are Gamma(ν, λ_i), λ_i ~ Gamma(α, β); the marginal of each risk's cells
is :func:`bayescred.likelihood.gamma.log_marginal`. It is maximised over
θ = (log ν, log μ, log φ), μ = νβ/(α − 1) the collective mean claim and φ = between/μ² =
1/(α − 2) the squared coefficient of variation of the risks' mean claims (α > 2, so that the
between variance is finite), with the analytic gradient and Hessian (scipy ``trust-exact``).

Boundaries, flagged (``boundary`` True, a :class:`BoundaryWarning`, and ``boundary_side``) as ``poisson_gamma_eb`` flags
λ = 0: ``"between = 0"`` when the score in φ at φ = 0 (risk effects absent),
½(ν/μ)² [Σ_i (S_i − μ N_i)² − μ² N/ν] at the ML of the model without them, is ≤ 0, or the
optimum runs to α = ∞; then every premium is the collective (Z = 0). ``"between = inf"`` when
it runs to α = 2: then (ν, μ) are fitted at α = 2 and Z_i = ν N_i/(ν N_i + 1).

Per risk, at the estimates (the analogue of ``PoissonGammaFit.ranef``, docs/formulas.md §9):
(i) ``cond_sd``: the conditional SD of μ(Θ_i) = ν/λ_i, premium/√(α + ν N_i − 2);
(ii) ``pev_sd``: g1 + g2, g2 = (∂P_i/∂log μ)²/I_μμ, the collective's estimation error with
(ν, φ) known; (iii) ``mse_sd``: g1 + g2 + 2 g3, g2 + g3 = d' I⁻¹ d the delta-method variance
of P_i through all of θ (NaN at a boundary, where φ is not estimated).
"""

from __future__ import annotations

import json
import math
import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special

from .. import errors
from ..likelihood import gamma as kernel

__all__ = ["gamma_severity_eb", "GammaSeverityFit"]

_LOG_PHI_MAX = 30.0  # φ > 1e13 (α − 2 < 1e-13) or φ < 1e-13: numerically on a boundary


def _natural(st: dict, nu: float, alpha: float, beta: float, order: int):
    """Log-likelihood in (ν, α, β) and, for order ≥ 1, its gradient and Hessian (summed over risks)."""
    ll = float(kernel.log_marginal(np, nu, alpha, beta, st).sum())
    if order == 0:
        return ll, None, None
    N, S = st["claims"], st["amount"]
    n, k = st["count_n"], st["count_cells"]
    post, bs = alpha + nu * N, beta + S
    g = np.array([
        st["log_a"].sum() - k @ (n * special.digamma(n * nu)) + N @ special.digamma(post) - N @ np.log(bs),
        np.sum(special.digamma(post) - special.digamma(alpha) - np.log1p(S / beta)),
        np.sum(alpha / beta - post / bs),
    ])
    t1 = special.polygamma(1, post)
    h = np.empty((3, 3))
    h[0, 0] = N**2 @ t1 - k @ (n**2 * special.polygamma(1, n * nu))
    h[0, 1] = h[1, 0] = N @ t1
    h[0, 2] = h[2, 0] = -np.sum(N / bs)
    h[1, 1] = np.sum(t1 - special.polygamma(1, alpha))
    h[1, 2] = h[2, 1] = np.sum(S / (beta * bs))
    h[2, 2] = np.sum(-alpha / beta**2 + post / bs**2)
    return ll, g, h


def _parameters(theta):
    """(ν, α, β, μ, φ) from θ = (log ν, log μ, log φ); log φ = +inf is the α = 2 boundary."""
    nu, mu, phi = math.exp(theta[0]), math.exp(theta[1]), math.exp(theta[2])
    alpha = 2.0 + 1.0 / phi
    return nu, alpha, kernel.rate_of(nu, alpha, mu), mu, phi


def _jacobian(nu, beta, phi):
    """∂(ν, α, β)/∂θ and the second derivatives of (ν, α, β) in θ (module docstring's map;
    at φ = inf the φ column is 0, the α = 2 boundary)."""
    r = -1.0 / (1.0 + phi)  # ∂ log(α − 1)/∂ log φ
    curve = 1.0 / ((1.0 + phi) * (1.0 + 1.0 / phi))  # ∂r/∂ log φ
    J = np.array([[nu, 0.0, 0.0], [0.0, 0.0, -1.0 / phi], [-beta, beta, beta * r]])
    grad_log_beta = np.array([-1.0, 1.0, r])
    second = np.zeros((3, 3, 3))
    second[0, 0, 0] = nu
    second[1, 2, 2] = 1.0 / phi
    second[2] = beta * np.outer(grad_log_beta, grad_log_beta)
    second[2, 2, 2] += beta * curve
    return J, second


def _evaluate(st: dict, theta, order: int = 2):
    """Log-likelihood in θ and, for order 2, its gradient and Hessian (chain rule)."""
    nu, alpha, beta, _, phi = _parameters(theta)
    ll, g, h = _natural(st, nu, alpha, beta, order)
    if order == 0:
        return ll
    J, second = _jacobian(nu, beta, phi)
    return ll, J.T @ g, J.T @ h @ J + np.einsum("k,kij->ij", g, second)


def _newton(st, x, free, tol=1e-20, polish=8):
    """scipy trust-exact over the ``free`` coordinates of θ, polished with Newton steps (as
    poisson_gamma_eb); returns (θ, converged). Towards the α = 2 boundary the Hessian is nearly
    singular in log φ: the steps are guarded (a failed solve ends the polish) and convergence is
    judged by the Newton decrement, so scipy's ill-conditioning warnings are not passed on."""
    x = np.asarray(x, float).copy()

    def parts(y):
        z = x.copy()
        z[free] = y
        ll, g, h = _evaluate(st, z)
        return ll, g[free], h[np.ix_(free, free)]

    cache = {}

    def at(y):
        key = tuple(y)
        if key not in cache:
            cache.clear()
            cache[key] = parts(y)
        return cache[key]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        res = optimize.minimize(lambda y: -at(y)[0], x[free], jac=lambda y: -at(y)[1], hess=lambda y: -at(y)[2],
                                method="trust-exact", options={"gtol": 1e-9, "maxiter": 500})
        y = res.x
        for _ in range(polish):
            _, g, h = parts(y)
            try:
                step = linalg.solve(-h, g, assume_a="pos")
            except (linalg.LinAlgError, ValueError):
                break
            if float(g @ step) < tol:
                break
            y = y + step
        _, g, h = parts(y)
        try:
            converged = bool(g @ linalg.solve(-h, g, assume_a="pos") < 1e-10)
        except (linalg.LinAlgError, ValueError):
            converged = False
    x[free] = y
    return x, converged


def _fit(c: kernel.SeverityCells):
    """(θ, side, converged): side None (interior), "between = 0" or "between = inf"."""
    st = c.arrays()
    nu0, mu0 = kernel.without_effects(c)
    excess = np.sum((c.amount - mu0 * c.claims) ** 2) - mu0**2 * c.claims.sum() / nu0
    lower = np.array([math.log(nu0), math.log(mu0), -math.inf])
    if excess <= 0:
        return lower, "between = 0", True
    phi0 = excess / (mu0**2 * np.sum(c.claims**2))  # the moment value of the score's excess
    theta, converged = _newton(st, np.log([nu0, mu0, phi0]), [0, 1, 2])
    if theta[2] < -_LOG_PHI_MAX:
        return lower, "between = 0", True
    if theta[2] > _LOG_PHI_MAX:
        theta[2] = math.inf
        theta, converged = _newton(st, theta, [0, 1])
        return theta, "between = inf", converged
    return theta, None, converged


def _inv(info):
    try:
        return linalg.cho_solve(linalg.cho_factor(info), np.eye(len(info)))
    except (linalg.LinAlgError, ValueError):
        return np.full_like(info, np.nan)


class GammaSeverityFit:
    """Result of :func:`gamma_severity_eb`.

    ``nu``, ``alpha``, ``beta`` (the model's parameters), ``collective`` μ, ``components``
    (DataFrame over collective, between, within, k in Bühlmann–Straub units: ``estimate``,
    ``se`` and ``lower``/``upper``, a Wald interval on the log scale at ``prob``; no interval
    for a boundary value), ``information`` (observed, over θ), ``loglik``, ``aic``, ``bic``,
    ``boundary`` (bool) and ``boundary_side`` (None, "between = 0" or "between = inf"), ``converged``, ``n_obs`` (cells),
    ``n_claims``, ``n_groups``. Methods ``ranef()``, ``summary()``, ``to_dict()``.
    """

    def __init__(self, c: kernel.SeverityCells, theta, side, converged, prob=0.9):
        self._cells, self.group = c, c.group
        self.boundary, self.boundary_side = side is not None, side
        self.converged = converged
        self.prob = prob
        st = c.arrays()
        nu, mu = math.exp(theta[0]), math.exp(theta[1])
        self.nu, self.collective = nu, mu
        self.n_obs, self.n_claims, self.n_groups = int(c.cells.sum()), float(c.claims.sum()), c.size
        if side == "between = 0":
            self.alpha, self.beta, self.phi = math.inf, math.inf, 0.0
            self.loglik = float(kernel.log_conditional(np, nu, nu / mu, st).sum())
            info = np.full((3, 3), np.nan)
            info[:2, :2] = self._info_without_effects(st)
            free = [0, 1]
        else:
            nu, self.alpha, self.beta, _, self.phi = _parameters(theta)
            self.loglik, _, hess = _evaluate(st, theta)
            info = -hess
            free = [0, 1] if side else [0, 1, 2]
            if side:
                info[2, :] = info[:, 2] = np.nan
        cov = np.full((3, 3), np.nan)
        cov[np.ix_(free, free)] = _inv(info[np.ix_(free, free)])
        labels = ["log(nu)", "log(collective)", "log(phi)"]
        self.information = pd.DataFrame(info, index=labels, columns=labels)
        self._cov = cov
        self._var_mu_known = 1.0 / info[1, 1]
        k = len(free)
        self.aic = -2 * self.loglik + 2 * k
        self.bic = -2 * self.loglik + k * math.log(self.n_obs)
        self.components = self.component_table(prob)
        if self.boundary:
            what = ("no heterogeneity between risks: every premium is the collective (Z = 0)"
                    if side == "between = 0" else "alpha -> 2: Var μ(Θ) is infinite; premiums use alpha = 2")
            warnings.warn(f"the between variance is estimated on its boundary ({side}): {what}; "
                          "the delta-method mse_sd is undefined there", errors.BoundaryWarning, stacklevel=3)

    def _info_without_effects(self, st):
        """Observed information over (log ν, log μ) of the model without risk effects."""
        nu, mu = self.nu, self.collective
        N, n, k = self.n_claims, st["count_n"], st["count_cells"]
        h_aa = nu * (st["log_a"].sum() + N * (math.log(nu / mu) + 1) - st["amount"].sum() / mu
                     - k @ (n * special.digamma(n * nu))) + nu**2 * (N / nu - k @ (n**2 * special.polygamma(1, n * nu)))
        h_mm = -nu * st["amount"].sum() / mu
        h_am = -nu * N + nu * st["amount"].sum() / mu
        return -np.array([[h_aa, h_am], [h_am, h_mm]])

    def component_table(self, prob: float = 0.9) -> pd.DataFrame:
        """Collective, between, within and k (per claim): estimate, delta-method ``se`` and a
        Wald interval on the log scale at ``prob`` (NaN for a value on a boundary)."""
        if self.phi == 0:
            s = {"collective": self.collective, "between": 0.0, "within": self.collective**2 / self.nu, "k": math.inf}
        elif math.isinf(self.phi):
            s = {"collective": self.collective, "between": math.inf, "within": math.inf, "k": 1.0 / self.nu}
        else:
            s = kernel.components(self.nu, self.alpha, self.collective)
        r = -1.0 / (1.0 + self.phi) if np.isfinite(self.phi) else 0.0
        share = self.phi / (1.0 + self.phi) if np.isfinite(self.phi) else 1.0
        gradients = {"collective": [0, 1, 0], "between": [0, 2, 1], "within": [-1, 2, share], "k": [-1, 0, r]}
        z = NormalDist().inv_cdf(0.5 + prob / 2)
        rows = {}
        for name, g in gradients.items():
            est = float(s[name])
            g = np.asarray(g, float)
            used = np.flatnonzero(g)
            se_log = math.sqrt(g[used] @ self._cov[np.ix_(used, used)] @ g[used]) if 0 < est < math.inf else math.nan
            rows[name] = {"estimate": est, "se": est * se_log if np.isfinite(se_log) else math.nan,
                          "lower": est * math.exp(-z * se_log), "upper": est * math.exp(z * se_log)}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.attrs.update(prob=prob, interval="Wald on the log scale")
        return out

    def ranef(self) -> pd.DataFrame:
        """One row per risk: ``claims`` N_i, ``mean`` x̄_i, ``Z``, ``premium`` and the SDs of
        the premium against μ(Θ_i): ``cond_sd`` (i), ``pev_sd`` (ii), ``mse_sd`` (iii)."""
        c, st = self._cells, self._cells.arrays()
        nu, alpha, beta, mu = self.nu, self.alpha, self.beta, self.collective
        if self.boundary_side == "between = 0":
            P, Z, g1 = np.full(c.size, mu), np.zeros(c.size), np.zeros(c.size)
            d = np.column_stack([np.zeros(c.size), np.full(c.size, mu), np.full(c.size, np.nan)])
        else:
            P, Z = kernel.premium(nu, alpha, beta, st), kernel.credibility_factor(nu, alpha, st)
            shape, rate = kernel.posterior_shape_rate(nu, alpha, beta, st)
            g1 = P**2 / (shape - 2.0)
            D = shape - 1.0
            d_natural = np.column_stack([rate * (alpha - 1.0) / D**2, -P / D, nu / D])
            J, _ = _jacobian(nu, beta, self.phi)
            d = d_natural @ J
        g2 = d[:, 1] ** 2 * self._var_mu_known
        free = [0, 1] if self.boundary else [0, 1, 2]
        full = np.einsum("ij,jk,ik->i", d[:, free], self._cov[np.ix_(free, free)], d[:, free])
        g3 = np.maximum(full - g2, 0.0) if not self.boundary else np.full(c.size, np.nan)
        return pd.DataFrame(
            {"claims": c.claims, "mean": c.mean, "Z": Z, "premium": P, "cond_sd": np.sqrt(g1),
             "pev_sd": np.sqrt(g1 + g2), "mse_sd": np.sqrt(g1 + g2 + 2 * g3)},
            index=pd.Index(c.levels, name=self.group),
        )

    def summary(self) -> str:
        comp = self.components
        lines = [
            "Gamma severity credibility, exact marginal ML (gamma claims, gamma risk rates)",
            f"  {self.n_obs} cells, {self.n_claims:.0f} claims, {self.n_groups} risks ({self.group!r});"
            f"  logLik {self.loglik:.4f}  AIC {self.aic:.4f}  BIC {self.bic:.4f}",
            f"  nu (claim shape) {self.nu:.6g}   alpha {self.alpha:.6g}   beta {self.beta:.6g}",
            "",
            f"Structure (per claim; {100 * self.prob:g}% Wald interval on the log scale):",
            comp.to_string(float_format=lambda v: f"{v:.6g}"),
        ]
        if self.boundary:
            lines.append(f"BOUNDARY: {self.boundary_side}")
        if not self.converged:
            lines.append("WARNING: the optimiser did not converge")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        flag = f" BOUNDARY ({self.boundary_side})" if self.boundary else ""
        return f"<GammaSeverityFit nu={self.nu:.6g} alpha={self.alpha:.6g} loglik={self.loglik:.4f}{flag}>"

    def to_dict(self) -> dict:
        """JSON-ready: parameters, components, loglik, boundary and the per-risk table."""
        r = self.ranef()
        out = {
            "model": "gamma_severity",
            "method": "ml",
            "nu": _num(self.nu), "alpha": _num(self.alpha), "beta": _num(self.beta),
            "components": {name: {k: _num(v) for k, v in row.items()} for name, row in self.components.iterrows()},
            "loglik": _num(self.loglik), "aic": _num(self.aic), "bic": _num(self.bic),
            "boundary": self.boundary, "boundary_side": self.boundary_side, "converged": self.converged,
            "n_obs": self.n_obs, "n_claims": _num(self.n_claims), "n_groups": self.n_groups,
            "ranef": [{"grp": self.group, "level": _num(level), **{k: _num(v) for k, v in row.items()}}
                      for level, row in r.iterrows()],
        }
        json.dumps(out, allow_nan=False)
        return out


def _num(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def gamma_severity_eb(data, *, group: str, severity: str, claims: str | None = None,
                      prob: float = 0.9) -> GammaSeverityFit:
    """Gamma severity credibility by exact marginal maximum likelihood (module docstring).

    ``data``: one row per claim (``claims=None``) or per cell with ``severity`` the average
    claim and ``claims`` the number of claims, as ``bc.credibility.gamma_severity``. ``prob``:
    level of the components' intervals. Returns :class:`GammaSeverityFit`; the premium of risk
    i is ν(β + S_i)/(α + ν N_i − 1) = Z_i x̄_i + (1 − Z_i) μ at the estimates. Claim sizes that
    do not vary, or vary too little to be resolved in double precision (ν N > 1e11), raise
    :class:`~bayescred.errors.DegenerateResponseError`.
    """
    c = kernel.cells(data, group, severity, claims)
    theta, side, converged = _fit(c)
    if not converged:
        warnings.warn("the marginal-likelihood optimiser did not converge", errors.ConvergenceWarning, stacklevel=2)
    return GammaSeverityFit(c, theta, side, converged, prob)
