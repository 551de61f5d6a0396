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

from ..errors import BoundaryWarning, ConstantCovariateError, ConvergenceWarning, InvalidArgumentError
from ..portfolio import as_list, cross_products, largest, within_cross_products
from ._common import (
    CredibilityFit,
    between_matrix_unbiased,
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
STRUCTURES = ("diagonal", "correlated")


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
    structure: str = "diagonal",
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

    ``structure``: the form of the between matrix U (the covariance of a risk's intercept
    and trend), the same option as ``bc.models.hachemeister(structure=)`` and the mixed
    models ``y ~ 1 + t + (1 + t || risk)`` ("diagonal") / ``(1 + t | risk)`` ("correlated")
    (docs/formulas.md §4, "Covariance structure"):

    * "diagonal" (default): U = diag(τ₀², τ₁², ...), intercept and trend independent. The
      default because it is the textbook model (Bühlmann–Gisler 2005 p. 209, seed 004
      Tables 3.4–3.6, whose reference values models/hachemeister.toml reproduces) and the
      model of actuar's ``cm(regformula=, adj.intercept = TRUE)`` (``hache.barycenter``
      estimates only the diagonal).
    * "correlated": a full U, as actuar's ``cm(regformula=)`` without ``adj.intercept``
      (``hache.origin``).

    ``method`` (structure parameters), for each ``structure``:

    * "unbiased", diagonal: Bühlmann–Gisler (seed 004_07f8365c92996b9b.txt eqs 3.28–3.32),
      intercept + time only: σ̂² = mean_j Σ_t w(X − Q B_j)²/(T_j − 2); τ̂₀² and τ̂₁² are the
      unbiased Bühlmann–Straub between-variances of the intercepts B_0j (weights w_j) and the
      slopes B_1j (weights w_j Var_j t); U = diag(τ̂₀², τ̂₁²), each truncated at 0.
    * "unbiased", correlated: Halliwell's matrix moment estimator (docs/formulas.md §4),
      Û = Σ_j (B_j − B̄)(B_j − B̄)′/(J − 1) − σ̂² Σ_j M_j⁻¹/J with B̄ the simple mean of the
      stand-alone fits: unbiased for every entry of U, the covariance included, in any
      design (E Σ_j (B_j − B̄)(B_j − B̄)′ = (J − 1)/J Σ_j (U + σ²M_j⁻¹)); any regressors.
      Its variances use equal weights, not Bühlmann–Gisler's. A Û that is not positive
      semi-definite has its negative eigenvalues set to 0 (the matrix form of truncating
      at 0) and is flagged.
    * "iterative", correlated: the full-matrix pseudo-estimator of actuar's
      ``cm(regformula=)`` (``hache.origin``): start A_j = I; U ← Σ_j A_j (B_j − B)(B_j − B)′/(J − 1),
      A_j ← U(U + σ²M_j⁻¹)⁻¹, B ← (ΣA_j)⁻¹ΣA_jB_j, until B converges. Any regressors.
    * "iterative", diagonal: the same iteration with U kept to the diagonal of each update.
      With time centred per risk (A_j diagonal) it is the iterative Bühlmann–Straub
      estimator of each coefficient's variance. Any regressors.

    ``tau_estimated_on`` (errata E5, docs/formulas.md §4): "centred" estimates U on the design
    actually used (default); "uncentred" takes τ̂₀², τ̂₁² from un-centred time and uses
    them with centred time, the undocumented convention behind seed 004 Tables 3.5/3.6.
    τ̂₁² and σ̂² do not depend on the origin; τ̂₀² does. A diagonal-U convention only: with
    ``structure="correlated"`` it is refused (a full U moves exactly with the origin).

    ``regressors``: extra columns of Q (not centred; not with method "unbiased" and a
    diagonal U, whose estimators are for intercept + time).
    ``between=`` (p × p matrix U) and ``within=`` fix the structure parameters; with
    ``structure="diagonal"`` a ``between=`` must be diagonal.
    ``.structure["structure"]`` records the structure and ``.structure["between"]`` the U used.
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
    if structure not in STRUCTURES:
        raise InvalidArgumentError(f"structure must be one of {STRUCTURES}, got {structure!r}", column="structure")
    if structure == "correlated" and tau_estimated_on == "uncentred" and between is None:
        raise InvalidArgumentError(
            "tau_estimated_on='uncentred' (the book's convention for a diagonal U, errata E5) cannot be combined "
            "with structure='correlated': a full U is estimated on the design it is used with",
            column="tau_estimated_on",
        )
    within = check_variance(within, "within")
    future = check_number(future, "future")
    tol = check_number(tol, "tol", minimum=0.0, strict=True)
    maxit = int(check_number(maxit, "maxit", minimum=1, integer=True))
    extra = as_list(regressors)
    if extra and method == "unbiased" and structure == "diagonal" and between is None:
        raise InvalidArgumentError(
            "extra regressors need method='iterative' or structure='correlated' (the unbiased estimators of a "
            "diagonal U are for intercept + time)",
            column="regressors",
        )
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
        if structure == "diagonal" and np.any(between[~np.eye(p, dtype=bool)] != 0):
            raise InvalidArgumentError(
                "between= has non-zero covariances but structure='diagonal'; pass structure='correlated' "
                "or a diagonal between matrix",
                column="between",
            )
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
    elif method == "unbiased" and structure == "diagonal":
        Bu = B if tau_estimated_on == "centred" else B0
        tau0 = between_unbiased(Bu[:, 0], w, within)  # eqs 3.30–3.31
        tau1 = between_unbiased(Bu[:, 1], w * var_t, within)  # eq. 3.32, w*_j = w_j Var_j t
        U = np.diag([truncate(tau0, "between[intercept]", flagged), truncate(tau1, "between[slope]", flagged)])
        used = "unbiased" + (", U from un-centred time (E5)" if tau_estimated_on == "uncentred" and centering != "origin" else "")
    else:
        if method == "unbiased":
            U = between_matrix_unbiased(B, Minv, within)
            used = "unbiased (matrix moment estimator)"
        else:
            on_origin = tau_estimated_on == "uncentred"  # diagonal only (refused above otherwise)
            U = _iterative(B0 if on_origin else B, np.linalg.inv(M0) if on_origin else Minv, within, tol, maxit,
                           diagonal=structure == "diagonal")
            used = "iterative" + (", U from un-centred time (E5)" if on_origin and centering != "origin" else "")
        scale = max(np.trace(U), 1e-300)
        if structure == "diagonal":
            for c in np.flatnonzero(np.diag(U) <= 1e-12 * scale):
                flagged.append(f"between[{names[c]}]")
                warnings.warn(f"the estimate of between[{names[c]}] is 0 (complete pooling of that coefficient)",
                              BoundaryWarning, stacklevel=2)
        elif np.linalg.eigvalsh(U)[0] <= 1e-12 * scale:
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
            "structure": structure,
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


def _iterative(B, Minv, within, tol, maxit, diagonal=False):
    """actuar's ``hache.origin`` iteration for the full between matrix U; ``diagonal``: the
    same iteration with U kept to the diagonal of each update. With σ² = 0 the credibility
    matrices are I and U is the spread of the stand-alone coefficients."""
    J, p = B.shape
    cred = np.tile(np.eye(p), (J, 1, 1))
    coll = B.mean(axis=0)
    if within == 0:
        d = B - coll
        U = d.T @ d / (J - 1)
        return np.diag(np.diag(U)) if diagonal else U

    def update(coll, cred):
        d = B - coll
        U = np.einsum("jab,jb,jc->ac", cred, d, d) / (J - 1)
        U = np.diag(np.diag(U)) if diagonal else (U + U.T) / 2
        P = np.linalg.inv(U[None] + within * Minv)
        return U, np.einsum("ab,jbc->jac", U, P), P

    scale = np.maximum(np.abs(coll), B.std(axis=0))  # shift-free: B is centred at the response mean
    u_scale = np.sum((B - coll) ** 2) / (J - 1)  # trace of the first U (A_j = I)
    previous = None
    for _ in range(maxit):
        U, cred, P = update(coll, cred)
        if diagonal:
            # the GLS form (ΣP_j)⁻¹ΣP_jB_j of the collective stays defined when a variance
            # reaches 0; and U must settle too: in a balanced design the collective is the
            # same for every U and would stop the iteration after one step
            new = np.linalg.solve(P.sum(axis=0), np.einsum("jab,jb->a", P, B))
            steady = previous is not None and np.all(np.abs(np.diag(U - previous)) <= tol * u_scale)
            previous = U
        else:
            total = cred.sum(axis=0)
            if np.linalg.matrix_rank(total) < p:  # U = 0: every A_j = 0, nothing more to iterate
                break
            new = np.linalg.solve(total, np.einsum("jab,jb->a", cred, B))
            steady = True
        done = steady and np.all(np.abs(new - coll) <= tol * scale)
        coll = new
        if done:
            break
    else:
        warnings.warn(
            f"Hachemeister iteration did not converge in {maxit} steps (U is often near-singular then)",
            ConvergenceWarning, stacklevel=3,
        )
    U, _, _ = update(coll, cred)
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
