"""``LMMFit.confint``: intervals for every parameter, as lme4's ``confint.merMod`` (docs/formulas.md §8.4).

Rows, in the order of ``fit.varcorr`` then the fixed effects: the SD of each random effect,
the correlations, the residual SD, each β_j. The index holds lme4's ``oldNames = FALSE``
names (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``, ``Days``);
the column ``par`` lme4's default names (``.sig01`` ... numbered in lme4's θ order,
``.sigma``, the fixed-effect names).

* ``method="profile"``: {φ : d_prof(φ) − d̂ ≤ χ²₁(level)}, d_prof(φ) the criterion
  minimised over all other parameters with φ held fixed. SDs and the residual SD:
  :func:`.inference.profile_intervals` (the fit's own criterion, REML for REML fits; lme4
  profiles the ML deviance, so the two agree for ML fits). Correlations: the fit's own
  criterion over the term's relative SDs and other correlations (Σ_t/σ² = D R D,
  T_t = D chol(R)) and the other terms' θ. Fixed effects: the ML deviance, as lme4 (REML
  has no likelihood for β): with β_j = b and β₋ⱼ profiled,
  r²(θ, b) = r²(θ) + (b − β̂_j(θ))² / [Q_xx(θ)⁻¹]_jj, so
  d(θ, b) = d_ML(θ) + N log(r²(θ, b) / r²(θ)), minimised over θ.
* ``method="wald"``: β̂_j ± z·SE_j; NaN for the variance parameters (as lme4).
* ``method="boot"``: parametric bootstrap percentile intervals (lme4's ``bootMer``): draw
  u* ~ N(0, Σ̂), ε* ~ N(0, σ̂²/w), refit by the same criterion, take the quantiles of
  each parameter over ``nsim`` refits (an explicit ``seed`` is required).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq, minimize

from ..errors import DataError
from ..progress import track
from .fit import optimise, tri_index
from .inference import profile_intervals

METHODS = ("profile", "wald", "boot")
_BIG = 1e300


def parameters(fit) -> pd.DataFrame:
    """The parameter table: names, kind, where each lives, estimate (see module doc)."""
    d = fit._design
    sig_names = {}
    n = 0
    for ti, t in enumerate(d.terms):
        for i, j in tri_index(t.k):
            n += 1
            sig_names[(ti, i, j)] = f".sig{n:02d}"
    rows = []
    vc = fit.varcorr
    term_of_grp, ti = {}, -1
    for _, r in vc.iterrows():
        if r.grp == "Residual":
            continue
        if r.grp not in term_of_grp:
            ti += 1
            term_of_grp[r.grp] = ti
        t = d.terms[term_of_grp[r.grp]]
        i = t.names.index(r.var1)
        if r.var2 is None:
            rows.append((f"sd_{r.var1}|{r.grp}", sig_names[(term_of_grp[r.grp], i, i)], "sd", r.grp, r.var1, None,
                         term_of_grp[r.grp], i, i, r.sdcor))
        else:
            j = t.names.index(r.var2)
            rows.append((f"cor_{r.var2}.{r.var1}|{r.grp}", sig_names[(term_of_grp[r.grp], j, i)], "cor", r.grp, r.var1,
                         r.var2, term_of_grp[r.grp], j, i, r.sdcor))
    rows.append(("sigma", ".sigma", "sigma", "Residual", None, None, -1, -1, -1, fit.sigma))
    for j, name in enumerate(fit.fixef.index):
        rows.append((name, name, "beta", None, None, None, -1, j, j, float(fit.fixef.iloc[j])))
    out = pd.DataFrame(rows, columns=["name", "par", "kind", "grp", "var1", "var2", "term", "i", "j", "estimate"])
    return out.set_index("name")


def _select(table: pd.DataFrame, parm) -> pd.DataFrame:
    if parm is None:
        return table
    if parm == "theta_":
        return table[table.kind != "beta"]
    if parm == "beta_":
        return table[table.kind == "beta"]
    wanted = [parm] if isinstance(parm, str) else list(parm)
    keep = []
    for p in wanted:
        hit = table.index[(table.index == p) | (table.par == p)]
        if len(hit) == 0:
            raise DataError(f"parm {p!r} is not a parameter of the fit; parameters: {', '.join(table.index)}")
        keep.append(hit[0])
    return table.loc[list(dict.fromkeys(keep))]


def confint(fit, level=0.95, method="profile", parm=None, nsim=500, seed=None) -> pd.DataFrame:
    """Intervals for the parameters ``parm`` (None: all; "theta_": variance parameters;
    "beta_": fixed effects; or names in either naming) at ``level`` (see module doc)."""
    if method not in METHODS:
        raise DataError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 < level < 1:
        raise DataError(f"level must be between 0 and 1, got {level!r}")
    table = _select(parameters(fit), parm)
    out = table[["par", "grp", "var1", "var2", "estimate"]].copy()
    out["lower"], out["upper"] = np.nan, np.nan
    if method == "wald":
        z = stats.norm.ppf(0.5 + level / 2)
        beta = table.kind == "beta"
        se = fit.fixef_se.to_numpy()[table.j[beta].to_numpy(int)]
        out.loc[beta, "lower"] = table.estimate[beta] - z * se
        out.loc[beta, "upper"] = table.estimate[beta] + z * se
    elif method == "profile":
        _profile(fit, table, out, level)
    else:
        if seed is None:
            raise DataError("the parametric bootstrap needs an explicit seed")
        draws = bootstrap_parameters(fit, table, int(nsim), seed)
        alpha = (1 - level) / 2
        out["lower"] = np.nanquantile(draws, alpha, axis=0)
        out["upper"] = np.nanquantile(draws, 1 - alpha, axis=0)
    out.attrs.update(level=level, method=method)
    return out


# -- profile
def _profile(fit, table, out, level):
    cut = stats.chi2.ppf(level, 1)
    sd_rows = table[table.kind.isin(["sd", "sigma"])]
    tasks = ([("sd", None, None)] if len(sd_rows) else []) + [(row.kind, name, row) for name, row in
                                                              table[table.kind.isin(["cor", "beta"])].iterrows()]
    ml = {}
    for kind, name, row in track(tasks, "profiling"):
        if kind == "sd":
            sds = profile_intervals(fit, level)
            for sd_name, r in sd_rows.iterrows():
                hit = sds[(sds.grp == r.grp) & ((sds.var1 == r.var1) | (r.kind == "sigma"))].iloc[0]
                out.loc[sd_name, ["lower", "upper"]] = hit.lower, hit.upper
        elif kind == "cor":
            out.loc[name, ["lower", "upper"]] = _profile_correlation(fit, int(row.term), int(row.i), int(row.j),
                                                                     row.estimate, cut)
        else:
            if not ml:  # the ML optimum, where the profile of β starts
                d = fit._design
                ml["theta"] = fit._sol.theta if not fit.reml else optimise(d, False)[0]
                ml["dmin"] = d.deviance(ml["theta"], False)
            out.loc[name, ["lower", "upper"]] = _profile_beta(fit, int(row.j), ml["theta"], ml["dmin"], cut)


def _term_factor(s, R):
    """T = D chol(R): the lower-triangular factor of D R D (D = diag(s))."""
    return s[:, None] * np.linalg.cholesky(R)


def _profile_correlation(fit, ti, a, b, rho_hat, cut):
    """Profile interval of the correlation (a, b) of term ``ti`` (a > b)."""
    d, reml = fit._design, fit.reml
    theta_hat = fit._sol.theta
    sl = d.theta_index[ti]
    k = d.k[ti]
    tri = tri_index(k)
    T = d.T(theta_hat)[ti]
    S = T @ T.T
    s_hat = np.sqrt(np.diag(S))
    R_hat = S / np.outer(np.maximum(s_hat, 1e-12), np.maximum(s_hat, 1e-12))
    pairs = [(i, j) for i, j in tri if i > j and (i, j) != (a, b)]
    others = [n for n in range(d.n_theta) if not sl.start <= n < sl.stop]
    lower = np.array(d.theta_lower)
    bounds = ([(0, None)] * k + [(-0.999999, 0.999999)] * len(pairs)
              + [(lower[n] if np.isfinite(lower[n]) else None, None) for n in others])
    warm = np.concatenate([s_hat, [R_hat[i, j] for i, j in pairs], theta_hat[others]])

    def criterion(z, rho):
        R = np.eye(k)
        R[a, b] = R[b, a] = rho
        for (i, j), v in zip(pairs, z[k : k + len(pairs)]):
            R[i, j] = R[j, i] = v
        try:
            Tt = _term_factor(z[:k], R)
            theta = theta_hat.copy()
            theta[sl] = [Tt[i, j] for i, j in tri]
            theta[others] = z[k + len(pairs) :]
            return d.deviance(theta, reml)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return _BIG

    def g(rho):
        res = minimize(criterion, warm, args=(rho,), method="L-BFGS-B", bounds=bounds)
        return res.fun - fit.criterion - cut

    return _bounded_roots(g, float(np.clip(rho_hat, -0.999999, 0.999999)), -1.0, 1.0)


def _bounded_roots(g, x_hat, lo_end, hi_end, steps=24):
    """Roots of g on each side of x_hat within [lo_end, hi_end]; the end itself when g
    stays below 0 up to it (the interval reaches the boundary of the parameter space). At an
    estimate on that boundary (a correlation of ±1) g can be above 0 at x_hat itself, where
    the profile cannot be evaluated: then the end is x_hat."""
    ends = []
    for end in (lo_end, hi_end):
        prev, root = x_hat, end
        for n in range(1, steps + 1):
            x = x_hat + (end - x_hat) * (1 - 0.5**n)
            if g(x) > 0:
                root = brentq(g, prev, x, xtol=1e-9) if prev != x and g(prev) < 0 else prev
                break
            prev = x
        ends.append(root)
    return tuple(ends)


def _profile_beta(fit, j, theta_ml, dmin, cut):
    """ML profile interval of β_j (module doc)."""
    d = fit._design
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in d.theta_lower]
    # the design's β is relative to beta0 and to the response centring bc.lmm applies (LMMFit._location)
    shift = d.beta0[j] + (fit._location[j] if fit._location is not None else 0.0)
    N = d.N

    def criterion(theta, b):
        try:
            sol = d.solve(theta, False)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return _BIG
        v = np.linalg.inv(sol.Qxx)[j, j]
        return sol.deviance + N * np.log1p((b - shift - sol.beta[j]) ** 2 / v / sol.r2)

    state = {"theta": theta_ml}

    def g(b):
        res = minimize(criterion, state["theta"], args=(b,), method="L-BFGS-B", bounds=bounds)
        return res.fun - dmin - cut

    beta_hat = shift + d.solve(theta_ml, False).beta[j]
    se = float(fit.fixef_se.iloc[j])
    ends = []
    for sign in (-1, 1):
        step, prev = 2.0 * se, beta_hat
        for _ in range(40):
            x = beta_hat + sign * step
            if g(x) > 0:
                ends.append(brentq(g, min(prev, x), max(prev, x), xtol=1e-10 * max(abs(beta_hat), se)))
                break
            prev, step = x, step * 1.5
        else:
            ends.append(sign * np.inf)
    return tuple(ends)


# -- parametric bootstrap
def bootstrap_parameters(fit, table, nsim, seed) -> np.ndarray:
    """(nsim, rows of ``table``) parameter estimates refitted to data simulated from the fit."""
    from .model import LMMFit

    from .uncertainty import simulate_into

    rng = np.random.default_rng(seed)
    boot = copy.copy(fit._design)
    names = list(fit.fixef.index)
    draws = np.empty((nsim, len(table)))
    for n in track(range(nsim), "parametric bootstrap (confint)"):
        simulate_into(boot, fit, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theta, _ = optimise(boot, fit.reml, theta0=fit._sol.theta, polish=False)
            refit = LMMFit(boot, theta, fit.reml, names, fit.formula, None)
        draws[n] = parameters(refit).loc[table.index, "estimate"].to_numpy(float)
    return draws
