"""The fitted GLM: estimates, R's summary quantities, residuals, predictions, summary table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from ..errors import BayescredError
from .families import Family


@dataclass
class GLMFit:
    """A fitted GLM (R ``glm`` / ``MASS::glm.nb`` object).

    ``coef`` (NaN for aliased columns, R's NA), ``se`` and ``vcov`` use the dispersion in
    ``dispersion`` (Pearson chi^2 / df.residual unless fixed, as R's summary.glm);
    ``loglik``/``aic``/``bic`` follow R's ``logLik.glm`` and ``family$aic`` (NaN for quasi
    families).
    """

    formula: str
    family: Family
    coef: pd.Series
    se: pd.Series
    vcov: pd.DataFrame
    deviance: float
    null_deviance: float
    df_residual: int
    df_null: int
    loglik: float
    aic: float
    bic: float
    dispersion: float
    dispersion_kind: str
    iterations: int
    converged: bool
    nobs: int
    y: np.ndarray = field(repr=False)
    mu: np.ndarray = field(repr=False)
    eta: np.ndarray = field(repr=False)
    prior_weights: np.ndarray = field(repr=False)
    offset: np.ndarray = field(repr=False)
    working_weights: np.ndarray = field(repr=False)
    working_residuals: np.ndarray = field(repr=False)
    transform: object = field(repr=False, default=None)
    theta: float | None = None
    theta_se: float | None = None
    var_power: float | None = None
    tweedie_phi: float | None = None
    dispersion_model: object = None
    phi: np.ndarray | None = field(default=None, repr=False)  # per-row dispersion of a double GLM
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------ residuals and fitted values
    def fitted(self) -> np.ndarray:
        """Fitted means mu (R's ``fitted``)."""
        return self.mu.copy()

    def residuals(self, type: str = "deviance") -> np.ndarray:  # noqa: A002  (R's argument name)
        """R's ``residuals.glm``: deviance, pearson, working or response."""
        y, mu, w = self.y, self.mu, self.prior_weights
        if type == "response":
            return y - mu
        if type == "working":
            return self.working_residuals.copy()
        if type == "pearson":
            return (y - mu) * np.sqrt(w) / np.sqrt(self.family.variance(mu))
        if type == "deviance":
            d = np.maximum(self.family.dev_resids(y, mu, w), 0)
            return np.where(y > mu, 1.0, -1.0) * np.sqrt(d)
        raise BayescredError(f"residual type {type!r} is not one of deviance, pearson, working, response")

    def predict(self, newdata: pd.DataFrame | None = None, type: str = "link",  # noqa: A002
                offset=None) -> np.ndarray:
        """Linear predictor (``type="link"``) or mean (``"response"``), on the fitted rows or
        on ``newdata`` (formula offsets are evaluated there; ``offset`` adds a column or array)."""
        if type not in ("link", "response"):
            raise BayescredError(f"predict type {type!r} is not 'link' or 'response'")
        if newdata is None:
            eta = self.eta
        else:
            X, off = self.transform(newdata)
            if offset is not None:
                off = off + (newdata[offset].to_numpy(float) if isinstance(offset, str) else np.asarray(offset, float))
            b = np.nan_to_num(self.coef.to_numpy())
            eta = X @ b + off
        return self.family.link.linkinv(eta) if type == "response" else eta.copy()

    # ------------------------------------------------------------ tables
    def coef_table(self) -> pd.DataFrame:
        """Estimate, Std. Error, z or t value and p-value, as R's ``coef(summary(fit))``."""
        est = self.coef.dropna()
        se = self.se.reindex(est.index)
        stat = est / se
        if self.dispersion_kind in ("fixed", "family"):
            p = 2 * special.ndtr(-np.abs(stat))
            cols = ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
        else:
            p = 2 * special.stdtr(self.df_residual, -np.abs(stat))
            cols = ["Estimate", "Std. Error", "t value", "Pr(>|t|)"]
        return pd.DataFrame(np.column_stack([est, se, stat, p]), index=est.index, columns=cols)

    def summary(self) -> str:
        """The fit laid out as R's ``print(summary(glm))``."""
        tab = self.coef_table()
        stars = pd.cut(tab.iloc[:, 3], [-1, 0.001, 0.01, 0.05, 0.1, 2], labels=["***", "**", "*", ".", ""])
        shown = tab.copy()
        shown[" "] = stars.astype(str)
        body = shown.to_string(formatters={c: "{:.6g}".format for c in tab.columns[:3]}
                               | {tab.columns[3]: lambda v: "<2e-16" if v < 2.2e-16 else f"{v:.3g}"})
        lines = ["", "Call:", f"glm(formula = {self.formula}, family = {self.family.display}"
                 f"(link = \"{self.family.link.name}\"))", ""]
        aliased = self.coef.index[self.coef.isna()]
        if len(aliased):
            lines.append(f"Coefficients: ({len(aliased)} not defined because of singularities: {', '.join(aliased)})")
        else:
            lines.append("Coefficients:")
        lines += [body, "---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1", ""]
        if self.dispersion_model is not None:
            lines += ["Dispersion model (log link):", self.dispersion_model.to_string(), ""]
        else:
            lines.append(f"(Dispersion parameter for {self.family.display} family taken to be {self.dispersion:.6g})")
        lines += ["", f"    Null deviance: {self.null_deviance:.3f}  on {self.df_null}  degrees of freedom",
                  f"Residual deviance: {self.deviance:.3f}  on {self.df_residual}  degrees of freedom"]
        lines.append(f"AIC: {self.aic:.5g}" if np.isfinite(self.aic) else "AIC: NA")
        if self.theta is not None:
            lines += ["", f"              Theta:  {self.theta:.5g}", f"          Std. Err.:  {self.theta_se:.5g}",
                      f" 2 x log-likelihood:  {2 * self.loglik:.3f}"]
        if self.var_power is not None:
            lines += ["", f"Tweedie var.power: {self.var_power:.5g}; ML dispersion: {self.tweedie_phi:.6g}"]
        lines += ["", f"Number of Fisher Scoring iterations: {self.iterations}", ""]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """Plain numbers for JSON: coef, se, vcov, loglik, deviance, aic, bic, dispersion, ..."""

        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        out = {
            "formula": self.formula,
            "family": self.family.name,
            "link": self.family.link.name,
            "coef": {k: num(v) for k, v in self.coef.items()},
            "se": {k: num(v) for k, v in self.se.items()},
            "vcov": {r: {c: float(v) for c, v in row.items()} for r, row in self.vcov.iterrows()},
            "deviance": num(self.deviance),
            "null_deviance": num(self.null_deviance),
            "df_residual": self.df_residual,
            "df_null": self.df_null,
            "loglik": num(self.loglik),
            "aic": num(self.aic),
            "bic": num(self.bic),
            "dispersion": num(self.dispersion),
            "nobs": self.nobs,
            "iterations": self.iterations,
            "converged": self.converged,
        }
        if self.theta is not None:
            out["theta"] = num(self.theta)
            out["theta_se"] = num(self.theta_se)
        if self.var_power is not None:
            out["var_power"] = num(self.var_power)
            out["tweedie_phi"] = num(self.tweedie_phi)
        if self.dispersion_model is not None:
            out["dispersion_model"] = {k: {c: num(v) for c, v in row.items()}
                                       for k, row in self.dispersion_model.iterrows()}
        out.update({k: num(v) for k, v in self.extra.items()})
        return out
