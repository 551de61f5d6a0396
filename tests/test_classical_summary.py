"""Classical fits: summary() laid out as actuar's summary(cm(...)), predict() as actuar's
predict(fit, newdata=), with the Hachemeister forecast period chosen at predict time.

R's printed output (actuar 3.3-2, R's default digits = 7) is held below, so the check runs
without R; a live test reprints it with Rscript when R and actuar are installed.
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import DataError, NewLevelError

# summary(cm(~state, hachemeister, ratios = ratio.1:ratio.12, weights = weight.1:weight.12))
R_BS = """\
Structure Parameters Estimators

  Collective premium: 1683.713

  Between state variance: 89638.73
  Within state variance: 139120026

Detailed premiums

    state Indiv. mean Weight Cred. factor Cred. premium
    1     2060.921    100155 0.9847404    2055.165
    2     1511.224     19895 0.9276352    1523.706
    3     1805.843     13735 0.8984754    1793.444
    4     1352.976      4152 0.7279092    1442.967
    5     1599.829     36110 0.9587911    1603.285"""

# summary(cm(~state, hachemeister, regformula = ~time, regdata = data.frame(time = 1:12),
#            ratios = ratio.1:ratio.12, weights = weight.1:weight.12), newdata = data.frame(time = 13))
R_HACHE = """\
  Collective premium: 1468.775 32.04892

  Between state variance:  24154.175 2699.9751
                            2699.975  301.8056
  Within state variance: 49870187

Detailed premiums

    state Indiv. coef. Cred. matrix          Adj. coef. Cred. premium
    1     1658.47243   0.54943640 3.97189852 1693.52313 2436.752
            62.39246   0.06141647 0.44398251   57.17147
    2     1398.30252   0.53096094 3.91217504 1373.02958 1650.533
            17.13975   0.05935128 0.43730644   21.34641
    3     1532.99872   0.53173122 3.76958745 1545.36429 2073.296
            43.30732   0.05943739 0.42136786   40.61014
    4     1176.70407   0.47835694 3.42117436 1314.54855 1507.070
            27.80702   0.05347116 0.38242192   14.80935
    5     1521.89933   0.53897497 3.96533471 1417.40928 1759.403
            11.87448   0.06024710 0.44324870   26.30721"""

# predict(fit, newdata = data.frame(time = 15))
R_PREDICT_15 = [2551.095, 1693.226, 2154.516, 1536.689, 1812.017]


def _numbers(text: str) -> np.ndarray:
    out = []
    for token in text.split():
        try:
            out.append(float(token))
        except ValueError:
            pass
    return np.array(out)


@pytest.fixture(scope="module")
def hach():
    return bc.datasets.load("hachemeister")


@pytest.fixture(scope="module")
def bs(hach):
    return bc.credibility.buhlmann_straub(hach, "state", "severity", "claims")


@pytest.fixture(scope="module")
def regression(hach):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # actuar's iteration: U nearly singular (BoundaryWarning)
        # actuar's stopping rule (cm's defaults tol = sqrt(.Machine$double.eps), maxit = 100): U is
        # near-singular, the iteration crawls along its flat direction, and where it stops moves
        # the 6th digit (our default tol=1e-13 stops at 301.80603 where actuar prints 301.8056)
        return bc.credibility.hachemeister(hach, "state", "period", "severity", "claims", method="iterative",
                                           structure="correlated", tol=np.sqrt(np.finfo(float).eps), maxit=100)


def _block(text: str, start: str) -> list[str]:
    """The lines from the first that begins with ``start`` on."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    return lines[next(i for i, ln in enumerate(lines) if ln.startswith(start)):]


def test_buhlmann_straub_summary_is_actuars(bs):
    """Every line from "Structure Parameters Estimators" on is R's (trailing blanks aside)."""
    assert _block(bs.summary(), "Structure Parameters Estimators") == R_BS.splitlines()


def test_hachemeister_summary_is_actuars_layout_and_numbers(regression):
    # located by its label: the printed digits are compared below, at the iteration's precision
    ours = _block(regression.summary(), "  Collective premium:")
    ours = [ln for ln in ours if "BOUNDARY" not in ln]  # our flag of the near-singular U
    theirs = R_HACHE.splitlines()
    assert len(ours) == len(theirs)
    assert ours[ours.index("Detailed premiums") + 2].split() == theirs[theirs.index("Detailed premiums") + 2].split()
    # the same numbers at R's printed precision (7 significant digits: half a unit in the 7th)
    np.testing.assert_allclose(_numbers("\n".join(ours)), _numbers(R_HACHE), rtol=5e-7)


def test_predict_chooses_the_forecast_period(regression):
    np.testing.assert_allclose(regression.predict(period=15), R_PREDICT_15, rtol=5e-7)
    np.testing.assert_allclose(regression.predict(pd.DataFrame({"period": [15]})).iloc[:, 0], R_PREDICT_15,
                               rtol=5e-7)
    pd.testing.assert_series_equal(regression.predict(), regression.table["premium"])  # default: last + 1
    rows = regression.predict(pd.DataFrame({"state": [2, 4, 2], "period": [15, 15, 13]}))
    at15 = regression.predict(period=15)
    np.testing.assert_allclose(rows, [at15[2], at15[4], regression.table.premium[2]], rtol=1e-12)
    assert regression.predict(15).equals(regression.predict(period=15))  # the former positional form


def test_predict_of_the_risks_in_newdata(bs):
    out = bs.predict(pd.DataFrame({"state": [4, 1]}, index=["a", "b"]))
    assert list(out.index) == ["a", "b"]
    np.testing.assert_allclose(out, [1442.967, 2055.165], rtol=5e-7)
    pd.testing.assert_series_equal(bs.predict(), bs.premiums())
    with pytest.raises(NewLevelError, match="risk.*9") as err:
        bs.predict(pd.DataFrame({"state": [1, 9]}))
    assert err.value.column == "state" and err.value.rows == [1]
    with pytest.raises(DataError, match="no forecast period"):
        bs.predict(period=13)


R_LIVE = r"""
suppressMessages(library(actuar)); data(hachemeister)
fit <- cm(~state, hachemeister, ratios = ratio.1:ratio.12, weights = weight.1:weight.12)
print(summary(fit))
fit2 <- cm(~state, hachemeister, regformula = ~time, regdata = data.frame(time = 1:12),
           ratios = ratio.1:ratio.12, weights = weight.1:weight.12)
cat("PREDICT", sprintf("%.10g", predict(fit2, newdata = data.frame(time = 15))), "\n")
"""


@pytest.mark.r
def test_live_against_actuar(rscript, bs, regression):
    res = subprocess.run([rscript, "-e", R_LIVE], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    printed = [ln.rstrip() for ln in res.stdout.splitlines()]
    start = printed.index("Structure Parameters Estimators")
    end = next(i for i, ln in enumerate(printed) if ln.startswith("PREDICT"))
    r_block = [ln for ln in printed[start:end] if ln]
    assert [ln for ln in _block(bs.summary(), "Structure Parameters Estimators") if ln] == r_block
    r_pred = [float(v) for v in printed[end].split()[1:]]
    np.testing.assert_allclose(regression.predict(period=15), r_pred, rtol=1e-6)
