"""Halliwell's statistical models of credibility (seed 003_74058930f1b144d2.txt).

Two tools in Halliwell's vocabulary:

* :func:`mixed_estimation` — the linear model y = X beta + e, Var e = sigma^2 Phi, solved by
  generalised least squares, with **prior information** (quasi-observations r = R beta + v,
  Var v = sigma^2 V) appended as extra rows ("mixed estimation", seed §6):

      beta-hat = (X' Phi^-1 X + R' V^-1 R)^-1 (X' Phi^-1 y + R' V^-1 r),

  sigma^2-hat = (weighted residual sum of squares of all rows)/(rows - k) (Halliwell's scale
  check; or sigma^2 given), Var[beta-hat] = sigma^2 (X' Phi^-1 X + R' V^-1 R)^-1, and the
  prediction of new rows y2 = X2 beta + e2 (Var e2 = sigma^2 Phi22, not covarying with e):
  y2-hat = X2 beta-hat, Var[y2 - y2-hat] = sigma^2 (Phi22 + X2 (.)^-1 X2'). A prior row with
  variance 0 is an **exact constraint** r = R beta, solved exactly (the limit V -> 0 of the
  stochastic constraint, seed §8 and Appendix C). Examples 1-5.

* :func:`credibility_given` — credibility with **given structure parameters**: risk i has
  y_it = x_it' beta_i + e_it, Var e_it = within / w_it, beta_i = collective + v_i,
  Var v_i = between (a matrix for regression credibility). With the structure given, each
  risk's credibility estimate needs only its own data, so one risk suffices:

      beta_i-tilde = (X_i' W_i X_i / within + between^-1)^-1 (X_i' W_i y_i / within + between^-1 m),

  m the given collective, or its GLS estimate over the risks (m-hat = (sum A_i)^-1 sum A_i b_i
  with A_i = (between + S_i)^-1, S_i = within (X_i' W_i X_i)^-1). Z_i = between (between +
  S_i)^-1 and the prediction error matrix (seed Example 7, Appendix E)

      PEV_i = Var[beta_i-tilde - beta_i] = (I - Z_i) between + (I - Z_i) Var[m-hat] (I - Z_i)',

  Var[m-hat] = (sum A_i)^-1 (the second term is 0 when m is given). Examples 3, 4 (one risk)
  and 7 (nine states, intercept and slope).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ArgumentError, BayescredError, DataError, MissingColumnError, NotNumericError, RankDeficientError
from ._common import CredibilityFit

__all__ = ["mixed_estimation", "MixedEstimate", "credibility_given", "GivenStructureFit"]


# --------------------------------------------------------------------------- helpers


def _numeric(frame: pd.DataFrame, columns: Sequence[str], what: str) -> np.ndarray:
    for col in columns:
        if col not in frame.columns:
            available = ", ".join(map(str, frame.columns))
            raise MissingColumnError(f"{what} column not in the data; available: {available}", col)
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise NotNumericError(f"{what} column must be numeric, found dtype {values.dtype}", col)
        bad = ~np.isfinite(values.to_numpy(float))
        if bad.any():
            raise DataError(f"{what} column has missing or infinite values", col, list(frame.index[bad]))
    return frame[list(columns)].to_numpy(float)


def _variances(frame: pd.DataFrame, column: str | None, *, zero_ok: bool) -> np.ndarray:
    if column is None:
        return np.ones(len(frame))
    phi = _numeric(frame, [column], "variance")[:, 0]
    bad = phi < 0 if zero_ok else phi <= 0
    if bad.any():
        need = "non-negative (0 = exact constraint)" if zero_ok else "positive"
        raise DataError(f"relative variances must be {need}", column, list(frame.index[bad]))
    return phi


# --------------------------------------------------------------------------- mixed estimation


@dataclass(repr=False)
class MixedEstimate:
    """Result of :func:`mixed_estimation`.

    ``coef`` beta-hat; ``unscaled_vcov`` (X' Phi^-1 X + R' V^-1 R)^-1 (constrained when there
    are exact constraints); ``sigma2`` and ``df`` (rows - k, exact constraints counted as
    rows); ``vcov`` = sigma2 * unscaled_vcov; ``residuals`` y - X beta-hat of the observations
    and then the prior rows.
    """

    coef: pd.Series
    unscaled_vcov: pd.DataFrame
    sigma2: float
    sigma2_estimated: bool
    df: int
    residuals: pd.Series
    _design: list

    @property
    def vcov(self) -> pd.DataFrame:
        return self.sigma2 * self.unscaled_vcov

    def predict(self, newdata, variance: str | None = None) -> pd.DataFrame:
        """y2-hat = X2 beta-hat for the rows of ``newdata`` (the design columns; ``variance`` the
        relative variance Phi22 of each new row, default 1; 0 predicts X2 beta itself) with
        the SD of the prediction error sqrt(diag Var[y2 - y2-hat])."""
        cov = self.prediction_vcov(newdata, variance)
        X2 = _numeric(newdata, self._design, "design")
        return pd.DataFrame(
            {"prediction": X2 @ self.coef.to_numpy(), "se": np.sqrt(np.diag(cov.to_numpy()))}, index=newdata.index
        )

    def prediction_vcov(self, newdata, variance: str | None = None) -> pd.DataFrame:
        """Var[y2 - y2-hat] = sigma2 (Phi22 + X2 C X2'), new rows not covarying with the data."""
        X2 = _numeric(newdata, self._design, "design")
        phi2 = _variances(newdata, variance, zero_ok=True)
        cov = self.sigma2 * (np.diag(phi2) + X2 @ self.unscaled_vcov.to_numpy() @ X2.T)
        return pd.DataFrame(cov, index=newdata.index, columns=newdata.index)

    def summary(self) -> str:
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        table = pd.DataFrame({"estimate": self.coef, "std. error": se})
        how = "estimated (scale check)" if self.sigma2_estimated else "given"
        return "\n".join(
            [
                "Mixed estimation (generalised least squares with prior information)",
                table.to_string(float_format=lambda v: f"{v:.6g}"),
                f"sigma^2 = {self.sigma2:.6g} ({how}) on {self.df} degrees of freedom",
            ]
        )

    def __repr__(self) -> str:
        return self.summary()


def mixed_estimation(
    data,
    response: str,
    design: Sequence[str],
    *,
    variance: str | None = None,
    prior=None,
    sigma2: float | None = None,
) -> MixedEstimate:
    """Generalised least squares with prior information and constraints (module docstring).

    Parameters
    ----------
    data : pandas frame of observations: the response, the design columns X and, optionally,
        a column of relative variances (the diagonal of Phi; default 1).
    response, design, variance : column names.
    prior : optional frame of quasi-observations with the same columns: each row says
        r = R beta + v with Var v = sigma^2 * variance; variance 0 makes it an exact constraint.
    sigma2 : the scale sigma^2 if known (variances are then absolute); default: estimated as
        the weighted residual sum of squares over (rows - k).

    Example (seed 003 Example 3)::

        obs = pd.DataFrame({"y": [6.164, 11.103, 9.663, 12.998, 10.329, 9.564, 9.602],
                            "one": 1.0, "var": 4.240})
        prior = pd.DataFrame({"y": [11.0], "one": [1.0], "var": [3.0]})
        mixed_estimation(obs, "y", ["one"], variance="var", prior=prior).coef   # 10.099
    """
    design = list(design)
    frames = [data] if prior is None else [data, prior]
    ys, Xs, phis = [], [], []
    for k, frame in enumerate(frames):
        ys.append(_numeric(frame, [response], "response")[:, 0])
        Xs.append(_numeric(frame, design, "design"))
        phis.append(_variances(frame, variance, zero_ok=k == 1))
    y, X, phi = np.concatenate(ys), np.vstack(Xs), np.concatenate(phis)
    exact = phi == 0
    n, p = X.shape
    if n - p <= 0 and sigma2 is None:
        raise DataError(f"{n} rows for {p} coefficients: sigma^2 cannot be estimated; give sigma2=")
    # stochastic rows by QR of the whitened design (no normal equations: Exhibit 7's constraint
    # has relative variance 1e-15 next to exposures of 1e5)
    from scipy import linalg  # loaded here: `import bayescred` and the other classical fits do without it

    w = 1 / np.sqrt(phi[~exact])
    A, b = X[~exact] * w[:, None], y[~exact] * w
    Q, Rf = linalg.qr(A, mode="economic")
    if np.min(np.abs(np.diag(Rf))) <= 1e-12 * np.max(np.abs(np.diag(Rf))):
        raise RankDeficientError(
            f"the design columns {design} are linearly dependent in the observations and prior rows"
        )
    Rinv = linalg.solve_triangular(Rf, np.eye(p))
    C = Rinv @ Rinv.T
    beta = linalg.solve_triangular(Rf, Q.T @ b)
    if exact.any():
        Rc, rc = X[exact], y[exact]
        M = Rc @ C @ Rc.T
        gain = C @ Rc.T @ np.linalg.inv(M)
        beta = beta - gain @ (Rc @ beta - rc)
        C = C - gain @ Rc @ C
    resid = y - X @ beta
    df = n - p
    if sigma2 is None:
        s2 = float(np.sum(resid[~exact] ** 2 / phi[~exact]) / df)
    else:
        if not sigma2 > 0:
            raise ArgumentError(f"sigma2 must be positive, got {sigma2}")
        s2 = float(sigma2)
    labels = list(data.index) + ([f"prior {i}" for i in prior.index] if prior is not None else [])
    return MixedEstimate(
        coef=pd.Series(beta, index=design, name="coef"),
        unscaled_vcov=pd.DataFrame(C, index=design, columns=design),
        sigma2=s2,
        sigma2_estimated=sigma2 is None,
        df=df,
        residuals=pd.Series(resid, index=labels, name="residual"),
        _design=design,
    )


# --------------------------------------------------------------------------- given structure


class GivenStructureFit(CredibilityFit):
    """Credibility with given structure parameters.

    ``table`` one row per risk (scalar case: weight, mean, Z, premium, pev_sd);
    ``coefficients`` long table (risk, coef: standalone, credibility, collective, pev_sd);
    ``Z`` and ``pev`` dicts risk -> DataFrame (p x p credibility and prediction-error matrices).
    """

    def premiums(self) -> pd.Series:
        """The credibility premium per risk (one coefficient); with regressors use :meth:`predict`."""
        if "premium" not in self.table.columns:
            raise BayescredError("regression credibility has no single premium per risk; use predict(newdata)")
        return super().premiums()

    def predict(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """x' beta_i-tilde for the rows of ``newdata`` (the group column and the regressors) with
        its prediction SD sqrt(x' PEV_i x) (the error in the risk's mean, not a new observation).
        A risk not in the fit gets the collective and PEV = between + Var[m-hat]."""
        group, names = self.table.index.name, self._names
        if group not in newdata.columns:
            raise MissingColumnError("group column not in newdata", group)
        X = np.column_stack(
            ([np.ones(len(newdata))] if names[0] == "(Intercept)" else [])
            + [_numeric(newdata, [n], "regressor")[:, 0] for n in names if n != "(Intercept)"]
        )
        m = np.atleast_1d(np.asarray(self.structure["collective"], float))
        U = np.atleast_2d(np.asarray(self.structure["between"], float))
        Vm = np.atleast_2d(np.asarray(self.structure["collective_vcov"], float))
        est, sd = [], []
        for x, risk in zip(X, newdata[group]):
            if risk in self.pev:
                beta = self.coefficients.xs(risk, level=group)["credibility"].to_numpy()
                pev = self.pev[risk].to_numpy()
            else:
                beta, pev = m, U + Vm
            est.append(float(x @ beta))
            sd.append(float(np.sqrt(x @ pev @ x)))
        return pd.DataFrame({"premium": est, "pev_sd": sd}, index=newdata.index)


def credibility_given(
    data,
    group: str,
    response: str,
    *,
    between,
    within: float,
    collective=None,
    regressors: Sequence[str] = (),
    intercept: bool = True,
    weight: str | None = None,
) -> GivenStructureFit:
    """Credibility estimates with the structure given (module docstring).

    ``between`` the variance of the hypothetical means (a number, or a p x p matrix for
    regression credibility with ``regressors``), ``within`` the expected process variance
    per unit weight, ``collective`` the prior mean (a number or p values); None estimates it
    by GLS over the risks and adds its uncertainty to the PEV. ``regressors`` numeric
    columns after the intercept (e.g. ``["year"]`` for a trend, seed 003 Example 7).
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    if group not in frame.columns:
        raise MissingColumnError("group column not in the data", group)
    regressors = list(regressors)
    y = _numeric(frame, [response], "response")[:, 0]
    cols = _numeric(frame, regressors, "regressor") if regressors else np.empty((len(frame), 0))
    X = np.column_stack([np.ones(len(frame)), cols]) if intercept else cols
    names = (["(Intercept)"] if intercept else []) + regressors
    p = X.shape[1]
    if p == 0:
        raise DataError("no coefficients: keep the intercept or give regressors")
    w = _variances(frame, weight, zero_ok=False) if weight is not None else np.ones(len(frame))
    U = np.atleast_2d(np.asarray(between, float))
    if U.shape != (p, p) or not np.allclose(U, U.T) or np.linalg.eigvalsh(U)[0] <= 0:
        raise DataError(f"between must be a positive definite {p} x {p} matrix for the coefficients {names}")
    if not within > 0:
        raise DataError(f"within (the expected process variance) must be positive, got {within}")
    Uinv = np.linalg.inv(U)
    codes, risks = pd.factorize(frame[group], sort=True)
    info, score = [], []
    for j in range(len(risks)):
        rows = codes == j
        Xj, wj = X[rows], w[rows]
        info.append((Xj.T * wj) @ Xj / within)  # S_j^-1
        score.append((Xj.T * wj) @ y[rows] / within)
    # GLS collective: A_j = (U + S_j)^-1 = U^-1 - U^-1 (S_j^-1 + U^-1)^-1 U^-1
    post = [np.linalg.inv(I + Uinv) for I in info]  # (S_j^-1 + U^-1)^-1
    if collective is None:
        A = [Uinv - Uinv @ P @ Uinv for P in post]
        A_sum = np.sum(A, axis=0)
        var_m = np.linalg.inv(A_sum)
        # A_j b_j = U^-1 P_j S_j^-1 b_j, free of b_j itself (a risk may have fewer rows than p)
        m = var_m @ np.sum([Uinv @ P @ s for P, s in zip(post, score)], axis=0)
        method = "given structure, GLS collective"
    else:
        m = np.broadcast_to(np.asarray(collective, float), (p,)).copy()
        var_m = np.zeros((p, p))
        method = "given structure and collective"
    Zs, pevs, est, alone = {}, {}, [], []
    for j, risk in enumerate(risks):
        P, I = post[j], info[j]
        Z = P @ I  # = U (U + S_j)^-1 when S_j exists
        tilde = P @ (score[j] + Uinv @ m)
        IZ = np.eye(p) - Z
        pev = IZ @ U + IZ @ var_m @ IZ.T
        try:
            b = np.linalg.solve(I, score[j])
        except np.linalg.LinAlgError:
            b = np.full(p, np.nan)
        Zs[risk] = pd.DataFrame(Z, index=names, columns=names)
        pevs[risk] = pd.DataFrame(pev, index=names, columns=names)
        est.append(tilde)
        alone.append(b)
    est, alone = np.array(est), np.array(alone)
    long = []
    for j, risk in enumerate(risks):
        for c, name in enumerate(names):
            long.append(
                {
                    group: risk,
                    "coef": name,
                    "standalone": alone[j, c],
                    "credibility": est[j, c],
                    "collective": m[c],
                    "pev_sd": float(np.sqrt(pevs[risk].to_numpy()[c, c])),
                }
            )
    weight_sum = pd.Series(w).groupby(codes).sum().to_numpy()
    if p == 1:
        table = pd.DataFrame(
            {
                "weight": weight_sum,
                "mean": alone[:, 0],
                "Z": [Zs[r].to_numpy()[0, 0] for r in risks],
                "premium": est[:, 0],
                "pev_sd": [np.sqrt(pevs[r].to_numpy()[0, 0]) for r in risks],
            },
            index=pd.Index(risks, name=group),
        )
    else:
        table = pd.DataFrame(est, index=pd.Index(risks, name=group), columns=names)
        table.insert(0, "weight", weight_sum)
    structure = {
        "collective": float(m[0]) if p == 1 else pd.Series(m, index=names),
        "between": float(U[0, 0]) if p == 1 else pd.DataFrame(U, index=names, columns=names),
        "within": float(within),
        "collective_vcov": float(var_m[0, 0]) if p == 1 else pd.DataFrame(var_m, index=names, columns=names),
    }
    if p == 1:
        structure["k"] = float(within / U[0, 0])
    fit = GivenStructureFit(model="Halliwell", method=method, structure=structure, table=table)
    fit.coefficients = pd.DataFrame(long).set_index([group, "coef"])
    fit.Z, fit.pev, fit._names = Zs, pevs, names
    return fit
