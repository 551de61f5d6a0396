"""bc.compare_models: AIC, BIC, likelihood basis, MSPE and MAPE on training and validation
data (issue 12). Reference: seed 004_07f8365c92996b9b.txt Table 6.2 (lines 4238-4245;
REFERENCE-VALUES.md §9), Massachusetts BI trained on 1993-1997 and validated on 1998.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import errors
from bayescred.lmm import poisson_gamma_eb


def close(value, printed: str):
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(value - float(printed)) <= 0.5 * 10.0**-decimals + 1e-9, (value, printed)


@pytest.fixture(scope="module")
def mass(shared_data):
    mb = pd.read_csv(shared_data / "usmassBI2.csv")
    mb = mb.assign(YR=mb.YEAR - 1992, lnPPSM=np.log(mb.PPSM), PCIk=mb.PCI / 1000)
    return mb[mb.YEAR < 1998], mb[mb.YEAR == 1998]


@pytest.fixture(scope="module")
def mass_fits(mass):
    train, _ = mass
    return {
        "bi.all": bc.glm("AC ~ PCIk + lnPPSM + YR", train),
        "bi.fixed": bc.glm("AC ~ TOWNCODE + PCIk + lnPPSM + YR", train, factors=["TOWNCODE"]),
        "bi.rnd.int": bc.lmm("AC ~ PCIk + lnPPSM + YR + (1|TOWNCODE)", train),
        "bi.rnd.slope": bc.lmm("AC ~ PCIk + lnPPSM + YR + (1 + YR|TOWNCODE)", train),
    }


TABLE_6_2 = {  # AIC, BIC, MSPE train, MAPE train, MSPE validation, MAPE validation
    "bi.all": ("1362.21", "1377.09", "657.01", "19.50", "769.90", "23.42"),
    "bi.fixed": ("1293.31", "1391.55", "277.65", "12.43", "743.98", "22.80"),
    "bi.rnd.int": ("1310.72", "1328.41", "298.22", "13.06", "675.22", "21.41"),
    "bi.rnd.slope": ("1312.77", "1336.36", "280.51", "12.85", "728.66", "22.12"),
}


def test_table_6_2_massachusetts_bi(mass, mass_fits):
    """The lm rows are ML, the lme rows REML with nlme's BIC (N - p observations); the seed
    puts them side by side, which the table flags as not comparable (E20)."""
    _, validation = mass
    with pytest.warns(errors.ComparabilityWarning, match="REML"):
        table = bc.compare_models(mass_fits, validation, convention="nlme")
    columns = ["aic", "bic", "mspe_train", "mape_train", "mspe_validation", "mape_validation"]
    for name, printed in TABLE_6_2.items():
        for column, value in zip(columns, printed):
            close(table.loc[name, column], value)
    assert table.loc["bi.rnd.int", "basis"] == "REML" and table.loc["bi.all", "basis"] == "ML"
    assert table.k.tolist() == [5, 33, 6, 8]  # lm: p + 1 (sigma); lme: p + variance parameters + 1
    assert table.attrs["comparable"] is False
    # lme4's convention counts all 145 observations in the REML BIC
    lme4 = bc.compare_models({"bi.rnd.int": mass_fits["bi.rnd.int"]}, validation)
    close(lme4.loc["bi.rnd.int", "bic"], "1328.58")
    assert lme4.attrs["comparable"] is True


def test_bi_fixed_coefficients_as_printed(mass_fits):
    """Seed lines 3977-4067: the TOWNCODE fixed-effects lm (base town 10)."""
    fit = mass_fits["bi.fixed"]
    for name, printed in {"(Intercept)": "1457.753", "PCIk": "-1.374", "lnPPSM": "-176.078", "YR": "5.990"}.items():
        close(fit.coef[name], printed)


def test_ml_fits_with_different_fixed_effects_are_comparable(mass):
    train, validation = mass
    fits = [
        bc.lmm("AC ~ PCIk + lnPPSM + YR + (1|TOWNCODE)", train, method="ML"),
        bc.lmm("AC ~ lnPPSM + YR + (1|TOWNCODE)", train, method="ML"),
        bc.glm("AC ~ PCIk + lnPPSM + YR", train),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.ComparabilityWarning)
        table = bc.compare_models(fits, validation)
    assert list(table.index) == ["fit1", "fit2", "fit3"] and table.attrs["comparable"]
    assert table.loc["fit1", "aic"] == pytest.approx(fits[0].aic)
    # REML fits with different fixed effects are flagged (lme4's anova refits them by ML)
    reml = [bc.lmm("AC ~ PCIk + lnPPSM + YR + (1|TOWNCODE)", train), bc.lmm("AC ~ lnPPSM + YR + (1|TOWNCODE)", train)]
    with pytest.warns(errors.ComparabilityWarning, match="different fixed effects"):
        assert not bc.compare_models(reml).attrs["comparable"]
    # the same fixed effects by REML are comparable (random-effect structures only)
    same = [reml[0], bc.lmm("AC ~ PCIk + lnPPSM + YR + (1 + YR|TOWNCODE)", train)]
    assert bc.compare_models(same).attrs["comparable"]


def test_poisson_gamma_and_glm_rows(shared_data):
    """Train collisions: Poisson GLM, NB GLM and the Poisson-gamma HGLM by ML and by
    h-likelihood; the NB with one risk per row is the same model as the ML HGLM (equal loglik)."""
    train = pd.read_csv(shared_data / "train_collisions.csv")
    fits = {
        "poisson": bc.glm("y ~ x + offset(log(t))", train, family="poisson"),
        "negbin": bc.glm("y ~ x + offset(log(t))", train, family="negbin"),
    }
    fits["hglm ml"] = poisson_gamma_eb(train, group="id", claims="y", exposure="t", covariates="x")
    fits["hglm hl"] = poisson_gamma_eb(train, group="id", claims="y", exposure="t", covariates="x", method="hl")
    table = bc.compare_models(fits, train, response="y")
    close(table.loc["poisson", "aic"], "133.52")  # seed line 3488
    assert table.loc["negbin", "loglik"] == pytest.approx(table.loc["hglm ml", "loglik"], rel=1e-6)
    assert table.loc["negbin", "k"] == table.loc["hglm ml", "k"] == 3
    # the validation rows are the training rows here: the conditional predictions are the fitted values
    assert table.loc["hglm ml", "mspe_validation"] == pytest.approx(table.loc["hglm ml", "mspe_train"], rel=1e-10)
    assert table.loc["hglm hl", "basis"] == "marginal at h-likelihood estimates"


def test_errors(mass, mass_fits):
    _, validation = mass
    with pytest.raises(errors.ArgumentError, match="convention"):
        bc.compare_models({"bi.all": mass_fits["bi.all"]}, convention="sas")
    with pytest.raises(errors.BayescredError, match="takes LMMFit"):
        bc.compare_models({"x": object()})
    with pytest.raises(errors.MissingColumnError, match="'loss'"):
        bc.compare_models({"bi.all": mass_fits["bi.all"]}, validation, response="loss")


R_IC = r"""
suppressMessages({library(lme4); library(nlme)})
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "data.csv"))
out <- NULL
for (i in sort(unique(d$design))) {
  s <- d[d$design == i, ]
  s$g <- factor(s$g)
  m1 <- lm(y ~ x, data = s)
  m2 <- lmer(y ~ x + (1 | g), data = s, REML = TRUE)
  m3 <- lme(y ~ x, random = ~ 1 | g, data = s, method = "REML")
  m4 <- lme(y ~ 1, random = ~ 1 | g, data = s, method = "ML")
  ic <- function(m) c(as.numeric(logLik(m)), AIC(m), BIC(m))
  out <- rbind(out, data.frame(design = i, model = c("lm", "lmer", "lme_reml", "lme_ml"),
    rbind(ic(m1), ic(m2), ic(m3), ic(m4))))
}
names(out)[3:5] <- c("loglik", "aic", "bic")
write.csv(out, file.path(args[1], "out.csv"), row.names = FALSE)
"""


@pytest.mark.r
def test_r_parity_of_the_information_criteria(rscript, tmp_path):
    """logLik, AIC and BIC as R's logLik/AIC/BIC of lm, lmer (REML: lme4 counts N) and nlme's
    lme (REML counts N - p; ML counts N) on 6 random designs, in one Rscript call."""
    import subprocess

    rng = np.random.default_rng(12)
    frames = []
    for i in range(6):
        J, n = int(rng.integers(8, 20)), int(rng.integers(60, 140))
        g = rng.integers(0, J, n)
        x = rng.normal(size=n)
        y = 1 + 0.5 * x + rng.normal(0, 1, J)[g] + rng.normal(0, 0.4, J)[g] * x + rng.normal(size=n)
        frames.append(pd.DataFrame({"design": i, "g": g, "x": x, "y": y}))
    data = pd.concat(frames, ignore_index=True)
    data.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "ic.R").write_text(R_IC)
    res = subprocess.run([rscript, str(tmp_path / "ic.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv").set_index(["design", "model"])
    for i, s in data.groupby("design"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits = {
                "lm": bc.glm("y ~ x", s),
                "lmer": bc.lmm("y ~ x + (1|g)", s),
                "lme_reml": bc.lmm("y ~ x + (1|g)", s),
                "lme_ml": bc.lmm("y ~ 1 + (1|g)", s, method="ML"),
            }
            lme4 = bc.compare_models({k: fits[k] for k in ("lm", "lmer")})
            nlme = bc.compare_models({k: fits[k] for k in ("lme_reml", "lme_ml")}, convention="nlme")
        table = pd.concat([lme4, nlme])
        for model in fits:
            r = ref.loc[(i, model)]
            for col in ("loglik", "aic", "bic"):
                assert table.loc[model, col] == pytest.approx(r[col], rel=1e-6, abs=1e-6), (i, model, col)
