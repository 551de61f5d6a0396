"""LMMFit.summary() prints lme4's summary(lmer) numbers (issue 14).

R's printed output below is from lme4 1.1-31 (R 4.2, Debian bookworm) on lme4's own
sleepstudy data (tests/data/sleepstudy.csv, written from R by write.csv(sleepstudy)). lme4's
optimiser stops a little before the optimum on this flat surface (our REML criterion is lower
at the 8th digit, variances differ at the 5th), so the printed numbers are compared with our
fit evaluated at lme4's θ (``LMMFit.at``; θ printed by getME(fm, "theta") with
options(digits = 17)); the optimum itself is compared criterion-to-criterion.

Each number R prints must equal ours to R's printed precision (half a unit in its last digit),
token by token in the order printed, so the layout (sections, rows, columns) is R's too.
"""

import re
from pathlib import Path

import pandas as pd
import pytest

import bayescred as bc
from bayescred.lmm.summary import format_r

DATA = Path(__file__).resolve().parent / "data" / "sleepstudy.csv"

REML_PRINTED = """\
Linear mixed model fit by REML ['lmerMod']
Formula: Reaction ~ Days + (Days | Subject)
   Data: sleepstudy

REML criterion at convergence: 1743.6

Scaled residuals: 
    Min      1Q  Median      3Q     Max 
-3.9536 -0.4634  0.0231  0.4634  5.1793 

Random effects:
 Groups   Name        Variance Std.Dev. Corr
 Subject  (Intercept) 612.10   24.741       
          Days         35.07    5.922   0.07
 Residual             654.94   25.592       
Number of obs: 180, groups:  Subject, 18

Fixed effects:
            Estimate Std. Error t value
(Intercept)  251.405      6.825  36.838
Days          10.467      1.546   6.771

Correlation of Fixed Effects:
     (Intr)
Days -0.138
"""
REML_THETA = [0.966741773967412343, 0.015169058896036137, 0.230909953207794533]
REML_CRITERION = 1743.6282719599519

ML_PRINTED = """\
Linear mixed model fit by maximum likelihood  ['lmerMod']
Formula: Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)
   Data: sleepstudy

     AIC      BIC   logLik deviance df.resid 
    1762     1778     -876     1752      175 

Scaled residuals: 
    Min      1Q  Median      3Q     Max 
-3.9535 -0.4673  0.0239  0.4625  5.1883 

Random effects:
 Groups    Name        Variance Std.Dev.
 Subject   (Intercept) 584.27   24.172  
 Subject.1 Days         33.63    5.799  
 Residual              653.12   25.556  
Number of obs: 180, groups:  Subject, 18

Fixed effects:
            Estimate Std. Error t value
(Intercept)  251.405      6.708   37.48
Days          10.467      1.519    6.89

Correlation of Fixed Effects:
     (Intr)
Days -0.194
"""
ML_THETA = [0.94582374325826013, 0.22692668171054448]
ML_DEVIANCE = 1752.0032551446006

NUMBER = re.compile(r"(?<![\w.(])-?\d+(?:\.\d+)?(?![\w(])")


def numbers(text: str) -> list[str]:
    """The printed numbers, in order (not those inside names such as Subject.1 or df.resid)."""
    body = text.split("\n", 3)[3] if text.startswith("Linear") else text  # skip header and formula
    return NUMBER.findall(body)


def assert_same_numbers(ours: str, printed: str):
    got, want = numbers(ours), numbers(printed)
    assert len(got) == len(want), f"{len(got)} numbers printed, R prints {len(want)}:\n{ours}"
    for g, w in zip(got, want):
        decimals = len(w.split(".")[1]) if "." in w else 0
        assert abs(float(g) - float(w)) <= 0.5 * 10.0**-decimals + 1e-9, f"{g} vs R's {w}\n{ours}"


@pytest.fixture(scope="module")
def sleepstudy():
    return pd.read_csv(DATA, dtype={"Subject": str})


def test_reml_summary_prints_lme4s_numbers(sleepstudy):
    fit = bc.lmm("Reaction ~ Days + (Days | Subject)", sleepstudy)
    assert fit.criterion <= REML_CRITERION + 1e-9  # our optimum is at least lme4's
    assert fit.criterion == pytest.approx(REML_CRITERION, rel=1e-8)
    text = str(fit.at(REML_THETA).summary())
    assert_same_numbers(text, REML_PRINTED)
    assert "REML criterion at convergence: 1743.6" in text and "(Intr)" in text


def test_ml_summary_prints_lme4s_numbers(sleepstudy):
    fit = bc.lmm("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy, method="ML")
    assert fit.criterion <= ML_DEVIANCE + 1e-9
    summary = fit.at(ML_THETA).summary()
    assert_same_numbers(str(summary), ML_PRINTED)
    assert list(summary.criterion.index) == ["AIC", "BIC", "logLik", "deviance", "df.resid"]


def test_summary_tables_are_data(sleepstudy):
    s = bc.lmm("Reaction ~ Days + (Days | Subject)", sleepstudy).summary()
    assert list(s.coefficients.columns) == ["Estimate", "Std. Error", "t value"]
    assert s.random["Groups"].tolist() == ["Subject", "", "Residual"]
    assert s.correlation.loc["Days", "(Intercept)"] == pytest.approx(-0.138, abs=5e-4)


@pytest.mark.parametrize(("values", "digits", "expected"), [
    ([612.0955, 35.0717, 654.941], 4, ["612.10", "35.07", "654.94"]),  # lme4's variance column
    ([24.7407, 5.9221, 25.5918], 4, ["24.741", "5.922", "25.592"]),
    ([1762.0, 1777.9, -876.0, 1752.0, 175.0], 4, ["1762", "1778", "-876", "1752", "175"]),
    ([9.99996], 4, ["10"]),
    ([0.0], 4, ["0"]),
])
def test_format_r_is_rs_format(values, digits, expected):
    """R: format(c(612.0955, 35.0717, 654.941), digits = 4) etc."""
    assert format_r(values, digits) == expected
