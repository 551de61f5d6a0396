"""Prediction with delta-method SDs, the bootstrap MSE of the conditional modes, and the
summary text of a GLMM fit.

Prediction target η₀ = x₀'β + z₀'b on the link scale, μ₀ = g⁻¹(η₀) on the response scale
(the premium). With m = Λ'z₀ in spherical units and the PLS pieces at the mode
(M, RZX = Λ'Z'WX, S = X'WX − RZX'M⁻¹RZX, σ² = 1 unless the family has a scale):

    cond_sd² = σ² m'M⁻¹m                                 (β̂, θ̂ known; lme4's condVar)
    pev_sd²  = cond_sd² + σ² d'S⁻¹d,  d = x₀ − RZX'M⁻¹m    (Henderson's C: also β̂)

plus σ² m_new'm_new for effects of levels not in the fit (their prior variance); on the
response scale both are multiplied by dμ/dη at η̂₀ (delta method).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError, MissingColumnError
from ..lmm.model import _to_pandas


def _offset(fit, data: pd.DataFrame, new: bool) -> np.ndarray:
    """The formula's offset() terms plus the ``offset`` argument (a column, or the fit's array)."""
    arg = fit._offset_arg
    off = fit._fixed.offset_for(data) if new else fit._fixed.offset.copy()
    if isinstance(arg, str):
        if arg not in data.columns:
            raise MissingColumnError("offset column not in newdata", column=arg)
        off = off + data[arg].to_numpy(dtype=float)
    elif arg is not None:
        if new:
            raise DataError("the fit's offset was an array: give it as a column name to predict on new data")
        off = off + np.asarray(arg, dtype=float)
    return off


def predict(fit, newdata, type_, re_form, allow_new_levels) -> pd.DataFrame:
    if type_ not in ("link", "response"):
        raise ValueError(f"type must be 'link' or 'response', got {type_!r}")
    use_re = re_form is None
    if not use_re and str(re_form).replace(" ", "") not in ("~0", "NA", "0"):
        raise ValueError("re_form must be None (all random terms) or '~0' (none)")
    new = newdata is not None
    data = _to_pandas(newdata) if new else fit._data
    re, s2 = fit._problem.re, fit.sigma**2
    X = fit._fixed.transform(data) if new else fit._fixed.X
    beta = fit.fixef.to_numpy()
    eta = _offset(fit, data, new) + X @ beta
    nrow = len(data)
    prior_var = np.zeros(nrow)
    cond = np.zeros(nrow)
    D = X.copy()  # d = x − RZX'M⁻¹m
    if use_re:
        pieces = []  # (term index, effects design, codes)
        for ti, t in enumerate(re.terms):
            Zt, codes = t.design_for(data)
            unseen = codes < 0
            if unseen.any() and not allow_new_levels:
                raise DataError("levels not seen in the fit (allow_new_levels=True predicts them with b = 0)",
                                column=t.group, rows=list(data.index[unseen]))
            b = fit._modes[ti]
            eta += np.where(unseen, 0.0, np.einsum("nk,nk->n", Zt, b[np.maximum(codes, 0)]))
            m_new = Zt @ re.Ts[ti]
            prior_var += np.where(unseen, np.sum(m_new**2, axis=1), 0.0)
            pieces.append((ti, np.where(unseen[:, None], 0.0, Zt), np.maximum(codes, 0)))
        if re.single:
            Zrow = np.hstack([z for _, z, _ in pieces])
            m = Zrow @ re.T1  # (n, k): m = Λ'z per row
            j = pieces[0][2]
            Minv = fit._Minv
            cond = np.einsum("na,nab,nb->n", m, Minv[j], m)
            D = X - np.einsum("nap,na->np", fit._CX[j], m)
        else:
            rows, cols, vals = [], [], []
            for ti, Zt, codes in pieces:
                t = re.terms[ti]
                for e in range(t.k):
                    rows.append(np.arange(nrow))
                    cols.append(re.offsets[ti] + codes * t.k + e)
                    vals.append(Zt[:, e])
            import scipy.sparse as sp

            Zn = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nrow, re.q))
            Mrows = np.asarray((Zn @ re.Lam).todense())
            cond = np.einsum("nq,nq->n", Mrows @ fit._Minv, Mrows)
            D = X - Mrows @ fit._CX
    Sinv = np.linalg.inv(fit._S) if fit._S.size else np.zeros((0, 0))
    pev = cond + np.einsum("np,pq,nq->n", D, Sinv, D)
    cond_sd = np.sqrt(s2 * (cond + prior_var))
    pev_sd = np.sqrt(s2 * (pev + prior_var))
    link = fit.family.link
    out = pd.DataFrame({"link": eta}, index=data.index)
    if type_ == "response":
        deriv = link.mu_eta(eta)
        out["fit"] = link.linkinv(eta)
        out["cond_sd"], out["pev_sd"] = cond_sd * deriv, pev_sd * deriv
    else:
        out["fit"] = eta
        out["cond_sd"], out["pev_sd"] = cond_sd, pev_sd
    return out


def _simulate(family, mu, resp, sigma, rng) -> np.ndarray:
    if family.name == "binomial":
        m = np.round(resp.n if np.any(resp.n > 1) else resp.wt)
        s = rng.binomial(m.astype(np.int64), mu)
        return np.where(m > 0, s / np.where(m > 0, m, 1.0), 0.0)
    if family.name == "Gamma":
        shape = 1.0 / sigma**2
        return rng.gamma(shape, mu / shape)
    if family.name == "negbin":
        theta = family.params["theta"]
        return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    return rng.poisson(mu).astype(float)


def bootstrap_mse(fit, n_boot: int, seed: int) -> list[np.ndarray]:
    """Parametric bootstrap of b̂ − b: draw u ~ N(0, I) and y | u from the fit, refit (θ, β)
    from the fitted values, and average (b̂* − b*)² per effect."""
    from .optimise import Problem
    from .optimise import fit as fit_stages
    from .pirls import Response

    rng = np.random.default_rng(seed)
    prob = fit._problem
    re, resp, X = prob.re, prob.resp, prob.X
    theta, beta = fit.theta.copy(), fit.fixef.to_numpy().copy()
    fixed = resp.offset + X @ beta
    sq = [np.zeros_like(b) for b in fit._modes]
    done = 0
    for _ in range(n_boot):
        re.set_theta(theta)
        u_true = rng.standard_normal(re.zeros().shape)
        b_true = re.to_terms(u_true)
        mu = fit.family.link.linkinv(fixed + re.zlam(u_true))
        y = _simulate(fit.family, mu, resp, fit.sigma, rng)
        boot = Problem(re, Response(fit.family, y, resp.n, resp.wt, resp.offset), X, u=fit._mode.u.copy(),
                       beta=beta.copy())
        try:
            opt = fit_stages(boot, fit.nAGQ, start=(theta, beta), polish=False)
            mode = boot.mode(opt.theta, None if fit.nAGQ == 0 else opt.beta)
        except (ArithmeticError, np.linalg.LinAlgError, ValueError):
            continue
        for acc, bh, bt in zip(sq, re.to_terms(mode.u), b_true):
            acc += (bh - bt) ** 2
        done += 1
    prob.mode(theta, None if fit.nAGQ == 0 else beta)  # restore the fit's state
    return [np.sqrt(acc / max(done, 1)) for acc in sq]


def _fmt(v: float, digits: int = 4) -> str:
    return f"{v:.{digits}g}"


def summary_text(fit) -> str:
    """lme4's summary(glmer) layout."""
    fam = fit.family
    method = ("Laplace Approximation" if fit.nAGQ <= 1
              else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nAGQ}")
    lines = [f"Generalized linear mixed model fit by maximum likelihood ({method}) ['glmerMod']",
             f" Family: {fam.display}  ( {fam.link.name} )", f"Formula: {fit.formula}", ""]
    head = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    vals = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{fit.deviance:.1f}", f"{fit.df_resid}"]
    lines += ["".join(f"{h:>9s}" for h in head), "".join(f"{v:>9s}" for v in vals), ""]
    res = fit._pearson / fit.sigma
    q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1])
    lines += ["Scaled residuals: ", "".join(f"{h:>8s}" for h in ["Min", "1Q", "Median", "3Q", "Max"]),
              "".join(f"{v:>8.4f}" for v in q), "", "Random effects:"]
    vc = fit.varcorr
    lines.append(f" {'Groups':<10s} {'Name':<14s} {'Variance':>10s} {'Std.Dev.':>10s}")
    for row in vc.itertuples(index=False):
        if row.var2 is None:
            lines.append(f" {row.grp:<10s} {row.var1 or '':<14s} {row.vcov:>10.4g} {row.sdcor:>10.4g}")
    ngr = ", ".join(f"{g}, {n}" for g, n in fit.ngrps.items())
    lines += [f"Number of obs: {fit.nobs}, groups:  {ngr}", "", "Fixed effects:"]
    stat = "z value" if fam.scale_free else "t value"
    lines.append(f"{'':<14s}{'Estimate':>10s}{'Std. Error':>12s}{stat:>9s}{'Pr(>|z|)':>11s}")
    for name in fit.fixef.index:
        est, se = fit.fixef[name], fit.fixef_se[name]
        z = est / se
        p = 2 * stats.norm.sf(abs(z))
        lines.append(f"{name:<14s}{est:>10.4f}{se:>12.4f}{z:>9.3f}{p:>11.3g}")
    if fit.singular:
        lines += ["", "boundary (singular) fit: see .varcorr"]
    if fit.convergence_message:
        lines += ["", f"convergence: {fit.convergence_message}"]
    return "\n".join(lines)
