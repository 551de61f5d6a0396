"""``LMMFit.summary()``: the fit laid out as lme4's ``summary(lmer(...))``.

Sections and number formats follow lme4's print method for ``summary.merMod`` (Bates et al.
2015, section 5.2): the criterion (REML) or the AIC/BIC/logLik/deviance/df.resid line (ML),
quantiles of the scaled Pearson residuals, the random-effects table (variances, standard
deviations and correlations), the fixed effects with standard errors and t values, and the
correlation of the fixed effects. Numbers are formatted as R's ``format(x, digits=)`` does
(:func:`format_r`), so the printed figures are R's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

DIGITS = 4  # lme4 prints with max(3, getOption("digits") - 3) significant digits


def _decimals(x: float, digits: int) -> int:
    """Decimals R needs to show ``x`` with ``digits`` significant digits, trailing zeros dropped."""
    if x == 0 or not math.isfinite(x):
        return 0
    power = math.floor(math.log10(abs(x)))
    mantissa = round(abs(x) / 10.0**power, digits - 1)
    if mantissa >= 10:  # rounding carried into the next power (9.9996 -> 10.00)
        power, mantissa = power + 1, mantissa / 10
    text = f"{mantissa:.{digits - 1}f}".rstrip("0").rstrip(".")
    significant = len(text.replace(".", ""))
    return max(0, significant - power - 1)


def format_r(values, digits: int = DIGITS) -> list[str]:
    """R's ``format(values, digits=digits)`` for finite reals: one number of decimals for all,
    enough that each value shows ``digits`` significant digits (R's formatReal)."""
    values = [float(v) for v in values]
    decimals = max((_decimals(v, digits) for v in values), default=0)
    return ["NA" if not math.isfinite(v) else f"{v:.{decimals}f}" for v in values]


def _table(rows: list[list[str]], header: list[str], align_left: int = 1) -> list[str]:
    """Columns padded as R prints a matrix: the first ``align_left`` left-aligned, the rest right."""
    cols = list(zip(header, *rows))
    widths = [max(len(c) for c in col) for col in cols]
    out = []
    for row in [header, *rows]:
        cells = [c.ljust(w) if i < align_left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append(" ".join(cells).rstrip())
    return out


@dataclass
class LMMSummary:
    """The pieces of the summary as tables, and its text as ``str(summary)``."""

    header: str
    criterion: pd.Series
    residual_quantiles: pd.Series
    random: pd.DataFrame
    coefficients: pd.DataFrame
    correlation: pd.DataFrame
    nobs: int
    ngrps: dict
    singular: bool

    def __str__(self) -> str:
        lines = [self.header, ""]
        if list(self.criterion.index) == ["REML"]:
            lines.append(f"REML criterion at convergence: {round(float(self.criterion['REML']), 1)}")
        else:
            rounded = self.criterion.round(1)
            text = format_r(rounded.to_numpy())
            width = max(max(len(t) for t in text), max(len(k) for k in rounded.index))
            lines += [" ".join(k.rjust(width) for k in rounded.index), " ".join(t.rjust(width) for t in text)]
        lines += ["", "Scaled residuals: "]
        q = format_r(self.residual_quantiles.to_numpy())
        width = max(len(t) for t in q + list(self.residual_quantiles.index))
        lines += [" ".join(k.rjust(width) for k in self.residual_quantiles.index) + " ",
                  " ".join(t.rjust(width) for t in q) + " ", "", "Random effects:"]
        lines += self._random_lines()
        groups = ", ".join(f"{g}, {n}" for g, n in self.ngrps.items())
        lines += [f"Number of obs: {self.nobs}, groups:  {groups}", "", "Fixed effects:"]
        lines += self._coefficient_lines()
        if len(self.correlation) > 1:
            lines += ["", "Correlation of Fixed Effects:"] + self._correlation_lines()
        if self.singular:
            lines += ["optimizer: boundary (singular) fit: see .varcorr"]
        return "\n".join(lines)

    __repr__ = __str__

    def _random_lines(self) -> list[str]:
        """lme4's formatVC: numbers right-aligned among themselves, columns left-aligned."""
        r = self.random

        def numbers(texts):
            width = max(len(t) for t in texts)
            return [t.rjust(width) for t in texts]

        variance, sd = numbers(format_r(r["Variance"])), numbers(format_r(r["Std.Dev."]))
        corr_cols = [c for c in r.columns if c.startswith("Corr")]
        corr = [numbers(["" if pd.isna(v) else f"{v:.2f}" for v in r[c]]) for c in corr_cols]
        rows = [[row["Groups"], row["Name"], variance[i], sd[i], *(col[i] for col in corr)]
                for i, (_, row) in enumerate(r.iterrows())]
        header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] + [""] * (len(corr_cols) - 1) if corr_cols else [])
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        return [" " + " ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [header, *rows]]

    def _coefficient_lines(self) -> list[str]:
        c = self.coefficients
        est_se = format_r(np.round(c[["Estimate", "Std. Error"]].to_numpy().ravel(), DIGITS - 1))
        t = format_r(np.round(c["t value"].to_numpy(), DIGITS - 1))
        rows = [[name, est_se[2 * i], est_se[2 * i + 1], t[i]] for i, name in enumerate(c.index)]
        return _table(rows, ["", "Estimate", "Std. Error", "t value"], align_left=1)

    def _correlation_lines(self) -> list[str]:
        names = list(self.correlation.index)
        abbrev = [_abbreviate(n) for n in names]
        rows = []
        for i, name in enumerate(names[1:], start=1):
            rows.append([name] + [f"{self.correlation.iloc[i, j]:.3f}" for j in range(i)] + [""] * (len(names) - 1 - i))
        return _table(rows, [""] + abbrev[:-1], align_left=1)


def _abbreviate(name: str) -> str:
    """R's abbreviate(name, minlength = 6) as lme4 uses for the fixed-effects correlation header
    (vowels dropped from the end first): "(Intercept)" -> "(Intr)"."""
    if len(name) <= 6:
        return name
    chars = list(name)
    i = len(chars) - 1
    while len(chars) > 6 and i > 0:
        if chars[i] in "aeiou" and chars[i - 1] != " ":
            del chars[i]
        i -= 1
    i = len(chars) - 1
    while len(chars) > 6 and i > 0:
        if chars[i].islower():
            del chars[i]
        i -= 1
    return "".join(chars[:6]) if len(chars) > 6 else "".join(chars)


def summarise(fit) -> LMMSummary:
    """The summary of an :class:`~bayescred.lmm.LMMFit` (see the module docstring)."""
    if fit.reml:
        criterion = pd.Series({"REML": fit.criterion})
        header = "Linear mixed model fit by REML"
    else:
        criterion = pd.Series({"AIC": fit.aic, "BIC": fit.bic, "logLik": fit.loglik, "deviance": fit.criterion,
                               "df.resid": fit.nobs - fit.n_params})
        header = "Linear mixed model fit by maximum likelihood"
    header += f"\nFormula: {fit.formula}"
    scaled = fit.residuals(type="pearson", scaled=True).to_numpy()
    quantiles = np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1.0])
    largest = np.max(np.abs(quantiles))
    if largest > 0:  # lme4 zaps the quantiles to DIGITS + 1 significant digits of the largest
        quantiles = np.round(quantiles, max(0, DIGITS + 1 - math.ceil(math.log10(largest))))
    quantiles = pd.Series(quantiles, index=["Min", "1Q", "Median", "3Q", "Max"])
    coefficients = pd.DataFrame({"Estimate": fit.fixef, "Std. Error": fit.fixef_se, "t value": fit.fixef / fit.fixef_se})
    sd = fit.fixef_se.to_numpy()
    corr = fit.vcov.to_numpy() / np.outer(sd, sd) if len(sd) else np.zeros((0, 0))
    correlation = pd.DataFrame(corr, index=fit.fixef.index, columns=fit.fixef.index)
    return LMMSummary(header, criterion, quantiles, _random_table(fit.varcorr), coefficients, correlation,
                      int(fit.nobs), dict(fit.ngrps), bool(fit.singular))


def _random_table(varcorr: pd.DataFrame) -> pd.DataFrame:
    """lme4's random-effects block: a row per variance, correlations beside the second and later
    effects of a correlated term (``Corr`` columns, lower triangle)."""
    rows = []
    for grp, block in varcorr.groupby("grp", sort=False):
        variances = block[block["var2"].isna()]
        names = list(variances["var1"])
        corr = {(r.var1, r.var2): r.sdcor for r in block[block["var2"].notna()].itertuples()}
        for i, r in enumerate(variances.itertuples()):
            row = {"Groups": grp if i == 0 else "", "Name": "" if r.var1 is None else r.var1,
                   "Variance": r.vcov, "Std.Dev.": r.sdcor}
            for j in range(i):
                row[f"Corr{j + 1}"] = corr.get((names[j], r.var1), corr.get((r.var1, names[j]), np.nan))
            rows.append(row)
    table = pd.DataFrame(rows)
    corr_cols = sorted(c for c in table.columns if c.startswith("Corr"))
    return table[["Groups", "Name", "Variance", "Std.Dev.", *corr_cols]]
