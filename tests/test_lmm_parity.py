"""Parity with lme4 (live, one Rscript call) on every reference fit of REFERENCE-VALUES.md.

Fits: Hachemeister BS and diagonal models (§5.7; raw claim weights and claims/1000),
simulated Bühlmann–Straub (§4), workers' compensation with offset (§8, filter E11),
Massachusetts BI (§9), credit insurance (§6, derived SSW) — the last by lme4 on raw rows
constructed to have exactly the Table 1 counts, means and the derived pooled SSW, against
bc.lmm on the 9 cell summaries.

Acceptance (issue 4): (a) our criterion evaluated at lme4's θ equals lme4's to 1e-8
relative (same function); (b) our optimum is never worse than lme4's by more than 1e-6
relative, and where lme4 reached the optimum (criteria within 1e-6 relative, i.e. lme4
did not stop early as in E9) the estimates agree to 1e-4 relative. Profile intervals are
compared with lme4's confint(method = "profile") to 2e-3 relative. lme4 is run with tight
optimiser tolerances so that its numbers are its optimum.
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc

pytestmark = pytest.mark.r

R_FITS = r"""
suppressMessages(library(lme4))
dir <- commandArgs(TRUE)[1]
out <- c()
emit <- function(id, kind, name, v) out <<- c(out, sprintf("%s,%s,%s,%.14g", id, kind, name, v))
fit <- function(id, m) {
  crit <- if (isREML(m)) getME(m, "devcomp")$cmp[["REML"]] else deviance(m)
  emit(id, "crit", "", crit)
  th <- getME(m, "theta"); for (k in seq_along(th)) emit(id, "theta", k, th[k])
  fe <- fixef(m); for (k in seq_along(fe)) emit(id, "fixef", names(fe)[k], fe[k])
  vc <- as.data.frame(VarCorr(m)); for (k in seq_len(nrow(vc))) emit(id, "vcov", k, vc$vcov[k])
  m
}
# tight optimiser settings, so that lme4's answer is its optimum and not an early stop
ctl <- lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
h <- read.csv(file.path(dir, "hach.csv"))
fit("hach_bs", lmer(severity ~ 1 + (1|state), h, weights = claims, control = ctl))
fit("hach_diag", lmer(severity ~ period + (1|state) + (0 + period|state), h, weights = claims, control = ctl))
h$w1000 <- h$claims / 1000
fit("hach_diag_1000", lmer(severity ~ period + (1|state) + (0 + period|state), h, weights = w1000, control = ctl))
b <- read.csv(file.path(dir, "bs.csv"))
fit("bs", lmer(X.jt ~ 1 + (1|risk), b, weights = W.jt, control = ctl))
w <- read.csv(file.path(dir, "wc.csv"))
fit("wc1", lmer(logloss ~ yearcentr + (1|riskclass), w, offset = logpay, control = ctl))
fit("wc2", lmer(logloss ~ yearcentr + (1 + yearcentr|riskclass), w, offset = logpay, control = ctl))
fit("wc1_ml", lmer(logloss ~ yearcentr + (1|riskclass), w, offset = logpay, REML = FALSE, control = ctl))
m <- fit("wc2_ml", lmer(logloss ~ yearcentr + (1 + yearcentr|riskclass), w, offset = logpay, REML = FALSE, control = ctl))
ci <- suppressMessages(suppressWarnings(confint(m, method = "profile", oldNames = FALSE)))
for (k in 1:3) { r <- c(1, 3, 4)[k]; emit("wc2_ml", "ci_lo", k, ci[r, 1]); emit("wc2_ml", "ci_hi", k, ci[r, 2]) }
mb <- read.csv(file.path(dir, "mb.csv"))
m <- fit("massbi", lmer(AC ~ PCI.k + lnPPSM + YR + (1|TOWNCODE), mb, control = ctl))
m <- fit("massbi_ml", lmer(AC ~ PCI.k + lnPPSM + YR + (1|TOWNCODE), mb, REML = FALSE, control = ctl))
ci <- suppressMessages(confint(m, method = "profile", oldNames = FALSE))
for (k in 1:2) { emit("massbi_ml", "ci_lo", k, ci[k, 1]); emit("massbi_ml", "ci_hi", k, ci[k, 2]) }
ci <- read.csv(file.path(dir, "credit_raw.csv"))
ci$status <- factor(ci$status); ci$experience <- factor(ci$experience)
fit("credit", lmer(payment ~ 1 + (1|experience) + (1|status) + (1|status:experience), ci, control = ctl))
fit("credit_ml", lmer(payment ~ 1 + (1|experience) + (1|status) + (1|status:experience), ci, REML = FALSE, control = ctl))
writeLines(out, file.path(dir, "out.csv"))
"""


def _credit_raw(cells: pd.DataFrame) -> pd.DataFrame:
    """401 raw payments with exactly the Table 1 counts and cell means and the derived
    pooled within-cell SS (REFERENCE-VALUES §6): the Gaussian likelihood depends on the
    raw rows only through these, so lme4 on these rows is lme4 on the summaries."""
    rng = np.random.default_rng(6)
    ss, df = cells.attrs["within_ss"], cells.attrs["within_df"]
    rows = []
    for _, c in cells.iterrows():
        n = int(c["count"])
        z = rng.normal(size=n)
        z -= z.mean()
        z *= np.sqrt(ss * (n - 1) / df / np.sum(z**2))
        rows += [(int(c.status), int(c.experience), c.mean_payment + v) for v in z]
    return pd.DataFrame(rows, columns=["status", "experience", "payment"])


def _lmm(*a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bc.lmm(*a, **k)


@pytest.fixture(scope="module")
def parity(rscript, shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    hach = bc.datasets.load("hachemeister")
    bs = pd.read_csv(shared_data / "bs_simulated.csv")
    wc = pd.read_csv(shared_data / "workers_comp_losses.csv")
    wc = wc[(wc.year <= 6) & (wc.payroll > 0) & (wc.loss > 0)].copy()  # §8.1 with E11
    wc["yearcentr"], wc["logloss"], wc["logpay"] = wc.year - wc.year.mean(), np.log(wc.loss), np.log(wc.payroll)
    mb = pd.read_csv(shared_data / "usmassBI2.csv")
    mb = mb[mb.YEAR <= 1997].copy()
    mb["YR"], mb["PCI.k"], mb["lnPPSM"] = mb.YEAR - 1992, mb.PCI / 1000, np.log(mb.PPSM)
    cells = bc.datasets.load("credit_insurance")
    for name, frame in [("hach", hach), ("bs", bs), ("wc", wc), ("mb", mb), ("credit_raw", _credit_raw(cells))]:
        frame.to_csv(d / f"{name}.csv", index=False)
    (d / "fits.R").write_text(R_FITS)
    res = subprocess.run([rscript, str(d / "fits.R"), str(d)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.DataFrame([ln.split(",", 3) for ln in (d / "out.csv").read_text().splitlines()],
                       columns=["id", "kind", "name", "value"])
    ref["value"] = ref.value.astype(float)
    credit_form = "mean_payment ~ 1 + (1|experience) + (1|status) + (1|status:experience)"
    agg = dict(weights="count", within_ss=cells.attrs["within_ss"], within_df=cells.attrs["within_df"])
    ours = {
        "hach_bs": _lmm("severity ~ 1 + (1|state)", hach, weights="claims"),
        "hach_diag": _lmm("severity ~ period + (1|state) + (0 + period|state)", hach, weights="claims"),
        "hach_diag_1000": _lmm("severity ~ period + (1|state) + (0 + period|state)", hach,
                               weights=hach.claims / 1000),
        "bs": _lmm("X.jt ~ 1 + (1|risk)", bs, weights="W.jt"),
        "wc1": _lmm("logloss ~ yearcentr + (1|riskclass)", wc, offset="logpay"),
        "wc2": _lmm("logloss ~ yearcentr + (1 + yearcentr|riskclass)", wc, offset="logpay"),
        "wc1_ml": _lmm("logloss ~ yearcentr + (1|riskclass)", wc, offset="logpay", method="ML"),
        "wc2_ml": _lmm("logloss ~ yearcentr + (1 + yearcentr|riskclass)", wc, offset="logpay", method="ML"),
        "massbi": _lmm("AC ~ PCI.k + lnPPSM + YR + (1|TOWNCODE)", mb),
        "massbi_ml": _lmm("AC ~ PCI.k + lnPPSM + YR + (1|TOWNCODE)", mb, method="ML"),
        "credit": _lmm(credit_form, cells, **agg),
        "credit_ml": _lmm(credit_form, cells, method="ML", **agg),
    }
    return ours, ref


FITS = ["hach_bs", "hach_diag", "hach_diag_1000", "bs", "wc1", "wc2", "wc1_ml", "wc2_ml", "massbi", "massbi_ml",
        "credit", "credit_ml"]


@pytest.mark.parametrize("fid", FITS)
def test_reference_fit_matches_lme4(parity, fid):
    ours, ref = parity
    fit, r = ours[fid], ref[ref.id == fid]
    crit = r[r.kind == "crit"].value.item()
    theta = r[r.kind == "theta"].value.to_numpy()
    # (a) the same criterion function: ours at lme4's θ reproduces lme4's number
    assert fit.at(theta).criterion == pytest.approx(crit, rel=1e-8)
    # (b) our optimum is not worse
    assert fit.criterion <= crit + 1e-6 * abs(crit)
    if fid == "hach_diag" and crit > fit.criterion + 1e-6 * crit:
        # E9: with raw claim weights lme4 1.1-31 stops ~14.9 above the optimum 785.4970
        assert fit.criterion == pytest.approx(785.496952, abs=1e-4)
        return
    assert fit.criterion == pytest.approx(crit, rel=1e-6)
    if fit.singular:
        return
    fe = r[r.kind == "fixef"]
    assert list(fit.fixef.index) == fe.name.tolist()
    np.testing.assert_allclose(fit.fixef.to_numpy(), fe.value.to_numpy(), rtol=1e-4)
    vc = r[r.kind == "vcov"].value.to_numpy()
    np.testing.assert_allclose(fit.varcorr.vcov.to_numpy(), vc, rtol=1e-4)


@pytest.mark.parametrize("fid", ["massbi_ml", "wc2_ml"])
def test_profile_intervals_match_lme4(parity, fid):
    """lme4's confint(method = "profile") profiles the ML deviance (its intervals for the
    REML and the ML fit of MassBI coincide), so compare with our ML fits' profiles:
    a random intercept, and a correlated random slope whose SD interval reaches 0."""
    ours, ref = parity
    r = ref[ref.id == fid]
    ci = ours[fid].confint(parm="theta_")
    ci = ci[ci.var2.isna()]  # the SDs and sigma (lme4's rows picked above)
    lo = r[r.kind == "ci_lo"].value.to_numpy()
    hi = r[r.kind == "ci_hi"].value.to_numpy()
    np.testing.assert_allclose(ci.lower.to_numpy(), lo, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(ci.upper.to_numpy(), hi, rtol=2e-3)
