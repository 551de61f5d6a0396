"""Inference on variance components: profile-likelihood intervals and boundary LRTs.

* Profile intervals (as lme4's ``confint(method = "profile")``): for each standard
  deviation s of a variance component, the set {s : d_prof(s) − d̂ ≤ χ²₁(level)}, where
  d_prof(s) minimises the (REML or ML) deviance with s held fixed, using the
  unprofiled deviance d(θ, σ²) = log|M| [+ log|Q_xx|] + r²(θ)/σ² + ν log(2πσ²) − Σ log w
  (ν = N − p for REML, N for ML). The lower end is 0 when d_prof(0) is within the bound.
* LRT with the boundary mixture (docs/formulas.md §10; Self & Liang 1987, Stram & Lee 1994):
  adding d parameters of which one is a variance on the boundary,
  p = ½P(χ²_{d−1} > LRT) + ½P(χ²_d > LRT); the naive χ²_d p-value is reported alongside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize, minimize_scalar

from ..errors import DataError
from .fit import LOG2PI


def mixture_pvalue(statistic: float, df: int) -> float:
    """½χ²_{df−1} + ½χ²_df tail probability (χ²₀ is a point mass at 0)."""
    from scipy import stats  # here, not at import: scipy.stats costs ~0.6 s and a fit does not need it

    if statistic <= 0:
        return 1.0
    low = stats.chi2.sf(statistic, df - 1) if df > 1 else 0.0
    return float(0.5 * low + 0.5 * stats.chi2.sf(statistic, df))


def lrt(null, alt) -> dict:
    """Likelihood-ratio test of nested fits ``null`` ⊂ ``alt`` (same criterion).

    Returns the statistic, the degrees of freedom (difference in parameters), the naive
    χ² p-value and the boundary-mixture p-value. REML fits may only be compared when
    their fixed effects are identical (refit with ``method="ML"`` otherwise).
    """
    if null.method != alt.method:
        raise DataError("both fits must use the same criterion (REML or ML)")
    if null.method == "REML" and list(null.fixef.index) != list(alt.fixef.index):
        raise DataError("REML fits with different fixed effects are not comparable; refit with method='ML'")
    if null.nobs != alt.nobs:
        raise DataError("the fits use different numbers of observations")
    df = alt.n_params - null.n_params
    if df < 1:
        raise DataError("the alternative must have more parameters than the null")
    from scipy import stats

    stat = max(null.criterion - alt.criterion, 0.0)
    return {
        "statistic": float(stat),
        "df": int(df),
        "p_naive": float(stats.chi2.sf(stat, df)),
        "p_mixture": mixture_pvalue(stat, df),
    }


def _full_deviance(design, theta, log_sigma2, reml):
    sol = design.solve(theta, reml)
    # recover the pieces of the profiled criterion: dev = rest + ν(1 + log 2π + log(r²/ν))
    nu = design.N - design.p if reml else design.N
    rest = sol.deviance - nu * (1.0 + LOG2PI + np.log(sol.r2 / nu))
    return rest + sol.r2 / np.exp(log_sigma2) + nu * (LOG2PI + log_sigma2)


def profile_intervals(fit, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals for every SD in ``fit.varcorr`` (and the residual)."""
    from scipy import stats

    d = fit._design
    reml = fit.reml
    theta_hat = fit._sol.theta
    s2_hat = fit._sol.sigma2
    dmin = fit.criterion
    cut = stats.chi2.ppf(level, 1)
    rows = []
    for ti, t in enumerate(d.terms):
        sl = d.theta_index[ti]
        tri = [(i, j) for j in range(t.k) for i in range(j, t.k)]
        for e, name in enumerate(t.names):
            idx_row = [sl.start + n for n, (i, j) in enumerate(tri) if i == e]
            others = [n for n in range(d.n_theta) if n not in idx_row]

            def prof(s, warm, idx_row=idx_row, others=others):
                def obj(z):
                    ls2 = z[0]
                    th = theta_hat.copy()
                    th[others] = z[1 : 1 + len(others)]
                    v = z[1 + len(others) :]
                    nv = np.linalg.norm(v)
                    th[idx_row] = (s / np.exp(0.5 * ls2)) * (v / nv if nv > 0 else np.eye(len(v))[-1])
                    try:
                        return _full_deviance(d, th, ls2, reml)
                    except (np.linalg.LinAlgError, ValueError):
                        return np.inf

                res = minimize(obj, warm, method="L-BFGS-B")
                return res.fun, res.x

            sd_hat = float(np.sqrt(fit._sol.sigma2) * np.linalg.norm(theta_hat[idx_row]))
            v0 = theta_hat[idx_row] if np.linalg.norm(theta_hat[idx_row]) > 0 else np.eye(len(idx_row))[-1]
            warm = np.concatenate([[np.log(s2_hat)], theta_hat[others], v0])
            lo, hi = _interval(lambda s, w=warm: prof(s, w)[0] - dmin - cut, sd_hat, np.sqrt(s2_hat))
            rows.append((name, sd_hat, lo, hi))  # SDs of random effects are absolute

    def prof_sigma(sig):
        ls2 = np.log(sig**2)
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in d.theta_lower]
        res = minimize(lambda th: _full_deviance(d, th, ls2, reml), theta_hat, method="L-BFGS-B", bounds=bounds)
        return res.fun

    sig_hat = np.sqrt(s2_hat)
    lo, hi = _interval(lambda s: prof_sigma(s) - dmin - cut, sig_hat, sig_hat, allow_zero=False)
    r = np.sqrt(d.scale)  # residual SD per unit of the caller's weight
    sds = fit.varcorr[fit.varcorr.var2.isna() & (fit.varcorr.grp != "Residual")]
    rows = [(g, *row) for g, row in zip(sds.grp, rows)]
    rows.append(("Residual", None, sig_hat * r, lo * r, hi * r))
    out = pd.DataFrame(rows, columns=["grp", "var1", "estimate", "lower", "upper"])
    out["var1"] = out["var1"].astype(object)
    out.attrs["level"] = level
    return out


def _interval(g, s_hat, unit, allow_zero=True):
    """Roots of g on either side of s_hat (g(s_hat) ≈ −cut < 0)."""
    start = s_hat if s_hat > 0 else 1e-3 * unit
    hi = start
    for _ in range(60):
        hi *= 1.6
        if g(hi) > 0:
            break
    else:
        hi = np.inf
    upper = brentq(g, start, hi, xtol=1e-6 * start) if np.isfinite(hi) else np.inf
    if s_hat <= 0:
        return 0.0, upper
    if allow_zero and g(1e-8 * s_hat) <= 0:
        return 0.0, upper
    lo = s_hat
    for _ in range(60):
        lo /= 1.6
        if g(lo) > 0:
            break
    lower = brentq(g, lo, s_hat, xtol=1e-6 * s_hat)
    return lower, upper


def profile_between(fit, sd_min: float, sd_max: float, points: int = 80) -> pd.DataFrame:
    """Profiled criterion of a one-factor fit over a log grid of the between-SD τ (σ² profiled out).

    For each τ, minimise the REML/ML criterion over σ² with θ = τ/σ (Bates et al. 2015's
    relative scale). Returns columns ``value`` (τ², the between-variance) and ``deviance``.
    """
    design, reml = fit._design, fit.reml
    ls2_hat = np.log(fit._sol.sigma2)
    rows = []
    for tau in np.geomspace(max(sd_min, 1e-9 * sd_max), sd_max, points):
        def dev(ls2, tau=tau):
            return _full_deviance(design, np.array([tau / np.exp(0.5 * ls2)]), ls2, reml)

        best = minimize_scalar(dev, bracket=(ls2_hat - 1, ls2_hat + 1))
        rows.append((tau**2, best.fun))  # tau is absolute; only sigma2 is on the rescaled weights
    return pd.DataFrame(rows, columns=["value", "deviance"])
