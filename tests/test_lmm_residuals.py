"""LMMFit.residuals(), .fitted() and information_criteria(convention=), issue 12.

Published references: seed 004_07f8365c92996b9b.txt Table 3.1 scaled residuals (line 2080),
Exercise 4.1 (lines 2238-2266) and the nlme fit ``bi.rnd.int`` (line 4093); REFERENCE-VALUES.md
§3.2, §4.2 and §9. Live parity: lme4's residuals()/fitted() on random designs with weights and
offsets, in one Rscript call (marked ``r``).
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc


def close(value, printed: str):
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(value - float(printed)) <= 0.5 * 10.0**-decimals + 1e-9, (value, printed)


def test_table_3_1_scaled_residual_quantiles():
    """lme4 summary's "Scaled residuals" = residuals("pearson", scaled=TRUE), line 2080."""
    df = pd.DataFrame(
        {"cls": np.repeat([1, 2, 3], 4), "value": [625, 675, 600, 700, 750, 800, 650, 800, 900, 700, 850, 950]}
    )
    fit = bc.lmm("value ~ 1 + (1|cls)", df)
    q = np.quantile(fit.residuals("pearson", scaled=True), [0, 0.25, 0.5, 0.75, 1])
    for value, printed in zip(q, ["-1.6997", "-0.5929", "0.1581", "0.6325", "1.4626"]):
        close(value, printed)
    # conditional fit: class means shrunk to 665.625, 750, 834.375 (REFERENCE-VALUES §3.2)
    np.testing.assert_allclose(fit.fitted().to_numpy(), np.repeat([665.625, 750.0, 834.375], 4), rtol=1e-6)
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), df["value"], rtol=1e-12)


def test_exercise_4_1_residuals_on_fitted(shared_data):
    """lm(sres ~ mu) with sres = resid(BS.mx, "pearson", scaled=TRUE), mu = fitted(BS.mx)."""
    bs = pd.read_csv(shared_data / "bs_simulated.csv")
    fit = bc.lmm("X.jt ~ 1 + (1|risk)", bs, weights="W.jt")
    x, y = fit.fitted().to_numpy(), fit.residuals("pearson", scaled=True).to_numpy()
    X = np.column_stack([np.ones_like(x), x])
    coef, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    se = np.sqrt(np.diag(rss[0] / (len(y) - 2) * np.linalg.inv(X.T @ X)))
    r2 = 1 - rss[0] / np.sum((y - y.mean()) ** 2)
    close(coef[0], "-2.683488")
    close(se[0], "0.471425")
    close(coef[1], "0.034135")
    close(se[1], "0.005981")
    close(r2, "0.0614")


def test_nlme_convention_bic(shared_data):
    """bi.rnd.int (nlme REML): AIC 1310.722, BIC 1328.415, logLik -649.361 (line 4093); lme4's
    BIC counts N = 145 observations (1328.58, Table 6.2 note E20), nlme N - p = 141."""
    mb = pd.read_csv(shared_data / "usmassBI2.csv")
    mb = mb.assign(YR=mb.YEAR - 1992, lnPPSM=np.log(mb.PPSM), PCIk=mb.PCI / 1000)
    fit = bc.lmm("AC ~ PCIk + lnPPSM + YR + (1|TOWNCODE)", mb[mb.YEAR < 1998])
    nlme = fit.information_criteria("nlme")
    close(nlme["loglik"], "-649.361")
    close(nlme["aic"], "1310.722")
    close(nlme["bic"], "1328.415")
    lme4 = fit.information_criteria()
    assert lme4["bic"] == pytest.approx(fit.bic) and lme4["aic"] == nlme["aic"]
    close(lme4["bic"], "1328.58")
    ml = bc.lmm("AC ~ PCIk + lnPPSM + YR + (1|TOWNCODE)", mb[mb.YEAR < 1998], method="ML")
    assert ml.information_criteria("nlme")["bic"] == pytest.approx(ml.bic, rel=1e-12)
    with pytest.raises(bc.errors.ArgumentError, match="convention"):
        fit.information_criteria("sas")
    with pytest.raises(bc.errors.ArgumentError, match="type"):
        fit.residuals("partial")


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "data.csv"))
forms <- readLines(file.path(args[1], "forms.txt"))
out <- NULL
thetas <- character(0)
for (i in seq_along(forms)) {
  s <- d[d$design == i - 1, ]
  f <- lmer(as.formula(forms[i]), data = s, weights = w, offset = off, REML = (i %% 2 == 1))
  out <- rbind(out, data.frame(design = i - 1, row = s$row, fitted = fitted(f),
    response = residuals(f, "response"), pearson = residuals(f, "pearson"),
    scaled = residuals(f, "pearson", scaled = TRUE), working = residuals(f, "working")))
  thetas <- c(thetas, paste(format(getME(f, "theta"), digits = 17), collapse = " "))
}
write.csv(out, file.path(args[1], "out.csv"), row.names = FALSE)
writeLines(thetas, file.path(args[1], "theta.txt"))
"""

FORMS = ["y ~ x + (1|a)", "y ~ x + (1 + x|a)", "y ~ x + (1|a) + (1|b)", "y ~ x + f + (1|a)"]


@pytest.mark.r
def test_lme4_parity_residuals_and_fitted(rscript, tmp_path):
    """Weights, offsets, random slopes and crossed factors; REML and ML alternate. Evaluated at
    lme4's own θ (``fit.at``) so that the comparison tests the residuals, not the optimisers:
    1e-8 relative; at our own optimum within 1e-3 of the response scale."""
    rng = np.random.default_rng(20261202)
    frames = []
    for i, _ in enumerate(FORMS * 2):
        n = int(rng.integers(80, 160))
        a, b = rng.integers(0, 12, n), rng.integers(0, 5, n)
        x = rng.normal(size=n)
        s = pd.DataFrame({"a": a, "b": b, "x": x, "f": rng.choice(["p", "q", "r"], n)})
        s["w"] = rng.uniform(0.5, 3, n)
        s["off"] = rng.uniform(-1, 1, n)
        s["y"] = 1 + 0.5 * x + rng.normal(0, 1, 12)[a] * (1 + 0.3 * x) + rng.normal(0, 0.5, 5)[b] + s.off
        s["y"] += rng.normal(size=n) / np.sqrt(s.w)
        frames.append(s.assign(design=i, row=np.arange(n)))
    data = pd.concat(frames, ignore_index=True)
    data.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "forms.txt").write_text("\n".join(FORMS * 2) + "\n")
    (tmp_path / "check.R").write_text(R_SCRIPT)
    res = subprocess.run([rscript, str(tmp_path / "check.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv")
    thetas = (tmp_path / "theta.txt").read_text().splitlines()
    for i, form in enumerate(FORMS * 2):
        s = data[data.design == i].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bc.errors.BoundaryWarning)
            fit = bc.lmm(form, s, weights="w", offset="off", method="REML" if i % 2 == 0 else "ML")
            at = fit.at([float(t) for t in thetas[i].split()])
        r = ref[ref.design == i].sort_values("row")
        scale = max(1.0, float(np.abs(s.y).max()))
        np.testing.assert_allclose(fit.fitted(), r.fitted, atol=1e-3 * scale)
        tol = dict(rtol=1e-8, atol=1e-8 * scale)
        np.testing.assert_allclose(at.fitted(), r.fitted, **tol)
        np.testing.assert_allclose(at.residuals(), r.response, **tol)
        np.testing.assert_allclose(at.residuals("working"), r.working, **tol)
        np.testing.assert_allclose(at.residuals("pearson"), r.pearson, **tol)
        np.testing.assert_allclose(at.residuals("pearson", scaled=True), r.scaled, rtol=1e-7, atol=1e-8)
