"""Hachemeister regression credibility (seed 004_07f8365c92996b9b.txt eqs 3.24–3.32 and 4.2;
docs/formulas.md §4; actuar ``cm(~risk, ..., regformula = ~time)``).

Model X_j = Q_j β(Θ_j) + ε_j, Q_j = [1, t (, regressors)], Cov β(Θ_j) = U (between),
Cov ε_j = σ² W_j⁻¹ (within). With M_j = Q_j′W_jQ_j:

* stand-alone B_j = M_j⁻¹ Q_j′W_j X_j (WLS per risk);
* credibility matrix A_j = U (U + σ² M_j⁻¹)⁻¹;
* collective B_GLS = (Σ P_j)⁻¹ Σ P_j B_j with P_j = (U + σ² M_j⁻¹)⁻¹ (= (Σ A_j)⁻¹ Σ A_j B_j
  when U is invertible; this form also works when a variance was truncated at 0);
* credibility coefficients CW_j = A_j B_j + (I − A_j) B_GLS, the BLUP β̂ + û_j of the LMM
  ``y ~ Q + (Q | risk)`` with G = U.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BoundaryWarning, ConstantCovariateError, ConvergenceWarning
from ..portfolio import as_list, cross_products, largest, within_cross_products
from ..errors import InvalidArgumentError
from ._common import (
    CredibilityFit,
    between_unbiased,
    check_number,
    check_variance,
    flag_zero_within,
    prepare,
    require_periods,
    rows_of,
    truncate,
)

__all__ = ["hachemeister", "HachemeisterFit"]

_CENTERINGS = ("origin", "global", "group")
_METHODS = ("unbiased", "iterative")


class HachemeisterFit(CredibilityFit):
    """Regression-credibility fit.

    ``.A`` (J × p × p credibility matrices), ``.coefficients`` (long table: risk, coef,
    standalone, credibility, collective, A columns, outside), ``.centre`` (the time origin
    used per risk), ``.anomaly`` (risks with a credibility coefficient outside the
    [stand-alone, collective] interval), :meth:`premium_at` and ``predict`` (any period).
    """

    def premium_at(self, time, regressors: dict | None = None) -> pd.DataFrame | pd.Series:
        """Credibility premium (1, t − t0_j (, regressors)) · CW_j for future time(s) ``time``
        (scalar → Series by risk; sequence → DataFrame risks × times). Extra regressor
        values go in ``regressors={name: value}``."""
        times = np.atleast_1d(np.asarray(time, float))
        extra = [float((regressors or {})[name]) for name in self._extra]
        if len(extra) != len(self._extra):
            raise ValueError(f"give values for the regressors {self._extra} in regressors=")
        out = {}
        for t in times:
            x = np.column_stack([np.ones(len(self._cw)), t - self.centre.to_numpy()] + [np.full(len(self._cw), v) for v in extra])
            out[t] = np.einsum("jp,jp->j", x, self._cw)
        frame = pd.DataFrame(out, index=self.table.index)
        return frame.iloc[:, 0].rename("premium") if np.ndim(time) == 0 else frame


def hachemeister(
    data,
    group: str,
    time: str,
    response: str,
    weight: str | None = None,
    centering: str = "origin",
    method: str = "unbiased",
    *,
    regressors=None,
    tau_estimated_on: str = "centred",
    between=None,
    within: float | None = None,
    future: float | None = None,
    tol: float = 1e-13,
    maxit: int = 10_000,
) -> HachemeisterFit:
    """Hachemeister regression credibility with intercept and trend in ``time``.

    ``centering``: "origin" (time as given), "global" (t − Σwt/Σw, the portfolio centre of
    gravity) or "group" (each risk's own centre of gravity; then A_j is diagonal).

    ``method`` (structure parameters):

    * "unbiased": Bühlmann–Gisler (seed 004_07f8365c92996b9b.txt eqs 3.28–3.32), intercept +
      time only: σ̂² = mean_j Σ_t w(X − Q B_j)²/(T_j − 2); τ̂₀² and τ̂₁² are the unbiased
      Bühlmann–Straub between-variances of the intercepts B_0j (weights w_j) and the slopes
      B_1j (weights w_j Var_j t); U = diag(τ̂₀², τ̂₁²), each truncated at 0.
    * "iterative": the full-matrix pseudo-estimator of actuar's ``cm(regformula=)``
      (``hache.origin``): start A_j = I; U ← Σ_j A_j (B_j − B)(B_j − B)′/(J − 1),
      A_j ← U(U + σ²M_j⁻¹)⁻¹, B ← (ΣA_j)⁻¹ΣA_jB_j, until B converges. Any regressors.

    ``tau_estimated_on`` (errata E5, docs/formulas.md §4): "centred" estimates U on the design
    actually used (default); "uncentred" takes τ̂₀², τ̂₁² from un-centred time and uses
    them with centred time, the undocumented convention behind seed 004 Tables 3.5/3.6.
    τ̂₁² and σ̂² do not depend on the origin; τ̂₀² does.

    ``regressors``: extra columns of Q (not centred; method "iterative" only).
    ``between=`` (p × p matrix U) and ``within=`` fix the structure parameters.
    ``future``: the time of the premium in ``.table`` (default: last time + 1).
    ``.table`` has per coefficient the stand-alone B, the diagonal of A, the credibility
    coefficient and a flag ``outside_<coef>`` (the state-4 anomaly: credibility estimate
    outside the [stand-alone, collective] interval), plus ``anomaly`` (any coefficient).
    """
    if centering not in _CENTERINGS:
        raise ValueError(f"centering must be one of {_CENTERINGS}, got {centering!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if tau_estimated_on not in ("centred", "uncentred"):
        raise ValueError("tau_estimated_on must be 'centred' or 'uncentred'")
    within = check_variance(within, "within")
    future = check_number(future, "future")
    tol = check_number(tol, "tol", minimum=0.0, strict=True)
    maxit = int(check_number(maxit, "maxit", minimum=1, integer=True))
    extra = as_list(regressors)
    if extra and method == "unbiased" and between is None:
        raise ValueError("extra regressors need method='iterative' (the unbiased estimators are for intercept + time)")
    frame, stats = prepare(data, group, response, weight, regressors=[time, *extra])
    cp = cross_products(frame, group, response, [time, *extra], weight, check=False)
    J, p = len(cp["levels"]), 2 + len(extra)
    require_periods(frame, group, stats, p + 1, f"the within variance needs T_j > {p} periods per risk")
    M0, q0, w = cp["QWQ"], cp["QWy"], cp["weight"]
    tbar = M0[:, 0, 1] / w
    var_t = M0[:, 1, 1] / w - tbar**2
    flat = var_t <= 1e-12 * np.maximum(1.0, M0[:, 1, 1] / w)
    if flat.any():
        bad = cp["levels"][flat]
        raise ConstantCovariateError(
            f"time is constant within risk(s) {', '.join(map(str, bad))}: their slope is not identified",
            column=time, rows=rows_of(frame, group, bad),
        )
    if np.linalg.matrix_rank(M0.sum(axis=0)) < p or np.any(np.linalg.cond(M0) > 1e12):
        bad = cp["levels"][np.linalg.cond(M0) > 1e12]
        raise ConstantCovariateError(
            f"the regressors are collinear within risk(s) {', '.join(map(str, bad))}",
            column=", ".join([time, *extra]), rows=rows_of(frame, group, bad),
        )

    if between is not None:
        between = _check_between(between, p)
    flagged: list = []
    # stand-alone fits on the un-centred design; residual SS is origin-free and computed
    # from products centred at each risk's means, so it cannot cancel below 0
    B0 = np.linalg.solve(M0, q0[..., None])[..., 0]
    if within is None:
        rss = _residual_ss(frame, group, response, [time, *extra], weight)
        within = float(np.mean(rss / (stats["n"].to_numpy() - p)))
        if within == 0.0:
            flag_zero_within(flagged)

    centre = {"origin": np.zeros(J), "global": np.full(J, tbar @ w / w.sum()), "group": tbar}[centering]
    T = np.tile(np.eye(p), (J, 1, 1))
    T[:, 0, 1] = -centre  # centred design Q_c = Q T_j, i.e. t − t0_j
    Tinv = np.tile(np.eye(p), (J, 1, 1))
    Tinv[:, 0, 1] = centre
    M = np.einsum("jab,jbc,jcd->jad", T.transpose(0, 2, 1), M0, T)
    B = np.einsum("jab,jb->ja", Tinv, B0)  # B_c = T_j⁻¹ B_j
    Minv = np.linalg.inv(M)

    names = ["intercept", "slope"] + extra
    if between is not None:
        U = np.asarray(between, float).reshape(p, p)
        used = "fixed structure"
    elif method == "unbiased":
        Bu = B if tau_estimated_on == "centred" else B0
        tau0 = between_unbiased(Bu[:, 0], w, within)  # eqs 3.30–3.31
        tau1 = between_unbiased(Bu[:, 1], w * var_t, within)  # eq. 3.32, w*_j = w_j Var_j t
        U = np.diag([truncate(tau0, "between[intercept]", flagged), truncate(tau1, "between[slope]", flagged)])
        used = "unbiased" + (", U from un-centred time (E5)" if tau_estimated_on == "uncentred" and centering != "origin" else "")
    else:
        U = _iterative(B, Minv, within, tol, maxit)
        used = "iterative"
        if np.linalg.eigvalsh(U)[0] <= 1e-12 * max(np.trace(U), 1e-300):
            flagged.append("between (singular U)")
            warnings.warn("the estimated between matrix U is singular", BoundaryWarning, stacklevel=2)

    P = np.linalg.inv(U[None] + _limiting_within(within, U, Minv) * Minv)  # precision of B_j
    A = np.einsum("ab,jbc->jac", U, P)
    collective = np.linalg.solve(P.sum(axis=0), np.einsum("jab,jb->a", P, B))
    cw = collective + np.einsum("jab,jb->ja", A, B - collective)
    c = stats.attrs["location"]  # the response was centred at c: intercepts move back by c
    B[:, 0] += c
    collective[0] += c
    cw[:, 0] += c

    index = pd.Index(cp["levels"], name=group)
    lo, hi = np.minimum(B, collective), np.maximum(B, collective)
    slack = 1e-9 * (np.abs(B) + np.abs(collective))
    outside = (cw < lo - slack) | (cw > hi + slack)
    if future is None:
        last = _last_time(frame, time)
        future = last + 1.0
    x_future = np.column_stack([np.ones(J), future - centre])
    # each frame built from one dict of columns (column-wise inserts cost ~0.1 ms apiece)
    columns = {"n": stats["n"].to_numpy(), "weight": w}
    for c, name in enumerate(names):
        columns.update({f"B_{name}": B[:, c], f"A_{name}": A[:, c, c], f"cred_{name}": cw[:, c],
                        f"outside_{name}": outside[:, c]})
    columns["anomaly"] = outside.any(axis=1)
    if not extra:
        columns["mean"] = np.einsum("jp,jp->j", x_future, B[:, :2])
        columns["premium"] = np.einsum("jp,jp->j", x_future, cw[:, :2])
    table = pd.DataFrame(columns, index=index)
    long = {"standalone": B.ravel(), "credibility": cw.ravel(), "collective": np.tile(collective, J),
            "outside": outside.ravel(), **{f"A_{names[d]}": A[:, :, d].ravel() for d in range(p)}}
    U_frame = pd.DataFrame(U, index=names, columns=names)
    sd = np.sqrt(np.diag(U))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = U / np.outer(sd, sd)
    fit = HachemeisterFit(
        model="Hachemeister regression", method=f"{used}; centering={centering}",
        structure={
            "collective": pd.Series(collective, index=names),
            "between": U_frame,
            "within": float(within),
            "k": None,
            "between_corr": pd.DataFrame(corr, index=names, columns=names),
            "future": float(future),
        },
        table=table, boundary=bool(flagged), boundary_parameters=flagged,
    )
    fit.A = A
    pairs = pd.MultiIndex(levels=[index, pd.Index(names)], codes=[np.repeat(np.arange(J), p), np.tile(np.arange(p), J)],
                          names=[group, "coef"], verify_integrity=False)  # (risk, coefficient), risk-major
    fit.coefficients = pd.DataFrame(long, index=pairs)
    fit.centre = pd.Series(centre, index=index, name="centre")
    fit.anomaly = list(index[outside.any(axis=1)])
    fit._cw = cw
    fit._extra = extra
    fit._time = time
    return fit


def _iterative(B, Minv, within, tol, maxit):
    """actuar's ``hache.origin`` iteration for the full between matrix U. With σ² = 0 the
    credibility matrices are I and U is the spread of the stand-alone coefficients."""
    J, p = B.shape
    cred = np.tile(np.eye(p), (J, 1, 1))
    coll = B.mean(axis=0)
    if within == 0:
        d = B - coll
        return d.T @ d / (J - 1)

    def update(coll, cred):
        d = B - coll
        U = np.einsum("jab,jb,jc->ac", cred, d, d) / (J - 1)
        U = (U + U.T) / 2
        cred = np.einsum("ab,jbc->jac", U, np.linalg.inv(U[None] + within * Minv))
        return U, cred

    scale = np.maximum(np.abs(coll), B.std(axis=0))  # shift-free: B is centred at the response mean
    for _ in range(maxit):
        U, cred = update(coll, cred)
        total = cred.sum(axis=0)
        if np.linalg.matrix_rank(total) < p:  # U = 0: every A_j = 0, nothing more to iterate
            break
        new = np.linalg.solve(total, np.einsum("jab,jb->a", cred, B))
        done = np.all(np.abs(new - coll) <= tol * scale)
        coll = new
        if done:
            break
    else:
        warnings.warn(
            f"Hachemeister iteration did not converge in {maxit} steps (U is often near-singular then)",
            ConvergenceWarning, stacklevel=3,
        )
    U, _ = update(coll, cred)
    return U


def _check_between(between, p):
    """A fixed between matrix U: p × p, finite, symmetric, positive semi-definite."""
    try:
        U = np.asarray(between, float).reshape(p, p)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"between= must be a {p} x {p} matrix, got {between!r}", column="between") from None
    if not np.all(np.isfinite(U)):
        raise InvalidArgumentError("between= must be finite", column="between")
    if not np.allclose(U, U.T, rtol=1e-12, atol=0):
        raise InvalidArgumentError("between= must be a symmetric matrix", column="between")
    if np.linalg.eigvalsh(U)[0] < -1e-12 * max(np.abs(U).max(), 1e-300):
        raise InvalidArgumentError("between= must be positive semi-definite (a covariance matrix)", column="between")
    return U


def _limiting_within(within, U, Minv):
    """σ² used in (U + σ²M_j⁻¹)⁻¹. At the boundary σ² = 0 the premium is the limit
    σ² → 0+, computed at σ² = 1e-10 of the between scale (so the matrix stays invertible
    when U is singular); with U invertible that is A_j = I to 1e-10."""
    if within > 0:
        return within
    scale = np.trace(U) / max(np.trace(Minv, axis1=1, axis2=2).max(), 1e-300)
    return 1e-10 * scale if scale > 0 else 1.0


def _residual_ss(frame, group, response, regressors, weight) -> np.ndarray:
    """Per-risk weighted residual SS of the stand-alone WLS fits, from cross-products
    centred at each risk's weighted means (``portfolio.within_cross_products``):
    rss_j = S_yy − s′S⁻¹s. A fit exact to 12 digits (rss below 1e-12 S_yy) is exact: 0."""
    S = within_cross_products(frame, group, [response, *regressors], weight, check=False)["S"]
    syy, s, Sxx = S[:, 0, 0], S[:, 1:, 0], S[:, 1:, 1:]
    rss = syy - np.einsum("ja,ja->j", s, np.einsum("jab,jb->ja", np.linalg.pinv(Sxx), s))
    return np.where(rss <= 1e-12 * syy, 0.0, rss)


def _last_time(frame, time) -> float:
    return largest(frame, time)
