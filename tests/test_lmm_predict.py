"""LMMFit.predict as lme4's predict.merMod: re_form, allow_new_levels, interval columns.

Without R: the default output is the existing one (runner, compare and the notebooks read
it), re_form="~0" is x'β̂ with SE √(x'V̂βx), a subset of the terms adds only their û, an
unseen level is refused unless allowed. With R (live): the premiums of lme4's predict()
on sleepstudy and on a random crossed design, for every re.form, to 1e-6 relative (lme4
run with tight optimiser tolerances, so that both sides are at the optimum).
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayescred as bc
from bayescred.errors import DataError, FormulaError, NewLevelError


def _design(seed=3, J=12, B=5, n=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n)
    b = rng.integers(0, B, J * n)
    x = rng.normal(size=J * n)
    y = 2 + 0.5 * x + rng.normal(0, 1, J)[g] + rng.normal(0, 0.4, J)[g] * x + rng.normal(0, 0.7, B)[b] \
        + rng.normal(0, 0.5, J * n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "b": [f"b{i}" for i in b]})


def _fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bc.lmm(formula, data, **kw)


@pytest.fixture(scope="module")
def crossed():
    data = _design()
    return data, _fit("y ~ x + (x | g) + (1 | b)", data)


def test_default_is_the_existing_output(crossed):
    data, fit = crossed
    new = data.iloc[[0, 7, 30]]
    out = fit.predict(new)
    assert list(out.columns) == ["premium", "cond_sd", "pev_sd", "mse_sd"]
    pd.testing.assert_frame_equal(out, fit._measures().predict(new))
    # re_form naming every term is the default
    pd.testing.assert_frame_equal(fit.predict(new, re_form="~ (x | g) + (1 | b)"), out)


@pytest.mark.parametrize("re_form", ["~0", "~ 0", False])
def test_fixed_effects_only(crossed, re_form):
    data, fit = crossed
    new = data.iloc[:5]
    out = fit.predict(new, re_form=re_form)
    X = np.column_stack([np.ones(5), new.x])
    np.testing.assert_allclose(out.premium, X @ fit.fixef.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(out.cond_sd, 0.0)
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, fit.vcov.to_numpy(), X))
    np.testing.assert_allclose(out.pev_sd, se, rtol=1e-8)
    np.testing.assert_allclose(out.mse_sd, se, rtol=1e-8)  # θ̂ enters only through û


def test_subset_of_terms_adds_only_their_effects(crossed):
    data, fit = crossed
    new = data.iloc[:4]
    ran = fit.ranef().set_index(["grp", "level", "term"]).value
    fixed = fit.predict(new, re_form="~0").premium
    only_b = fit.predict(new, re_form="~ (1 | b)").premium
    np.testing.assert_allclose(only_b - fixed, [ran[("b", lev, "(Intercept)")] for lev in new.b], rtol=1e-10)
    # lme4 lets a term keep some effects of a model term: the intercept of (x | g)
    only_int = fit.predict(new, re_form="~ (1 | g)").premium
    np.testing.assert_allclose(only_int - fixed, [ran[("g", lev, "(Intercept)")] for lev in new.g], rtol=1e-10)
    slope = fit.predict(new, re_form="~ (0 + x | g)").premium
    np.testing.assert_allclose(slope - fixed, [ran[("g", lev, "x")] * x for lev, x in zip(new.g, new.x)],
                               rtol=1e-10)
    both = fit.predict(new, re_form="~ (1 | g) + (0 + x | g) + (1 | b)")
    pd.testing.assert_frame_equal(both, fit.predict(new))


def test_unseen_level_is_refused_unless_allowed(crossed):
    _, fit = crossed
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["g1", "new_risk"], "b": ["b0", "b1"]})
    with pytest.raises(NewLevelError, match="'new_risk'.*'g'") as err:
        fit.predict(new)
    assert err.value.column == "g" and err.value.rows == [1]
    out = fit.predict(new, allow_new_levels=True)
    ran = fit.ranef().set_index(["grp", "level", "term"]).value
    assert out.premium[1] == pytest.approx(fit.fixef["(Intercept)"] + fit.fixef["x"] + ran[("b", "b1", "(Intercept)")])
    # a level of a term left out of the target does not matter
    fixed = fit.predict(new, re_form="~ (1 | b)")
    assert np.isfinite(fixed.premium).all()


def test_interval_columns(crossed):
    data, fit = crossed
    new = data.iloc[:3]
    out = fit.predict(new, interval=["cond", "mse"], level=0.9)
    z = stats.norm.ppf(0.95)
    for m in ("cond", "mse"):
        np.testing.assert_allclose(out[f"{m}_lower"], out.premium - z * out[f"{m}_sd"])
        np.testing.assert_allclose(out[f"{m}_upper"], out.premium + z * out[f"{m}_sd"])
    assert "pev_lower" not in out
    assert {"pev_lower", "pev_upper"} <= set(fit.predict(new, interval="pev").columns)


def test_bad_arguments(crossed):
    data, fit = crossed
    with pytest.raises(DataError, match="interval"):
        fit.predict(data.iloc[:2], interval="wide")
    with pytest.raises(FormulaError, match="not part of the model"):
        fit.predict(data.iloc[:2], re_form="~ (1 | x)")
    with pytest.raises(FormulaError, match="random terms only"):
        fit.predict(data.iloc[:2], re_form="~ x + (1 | g)")
    with pytest.raises(DataError, match="bootstrap"):
        fit.predict(data.iloc[:2], re_form="~0", bootstrap=5, seed=1)


R_PREDICT = r"""
suppressMessages(library(lme4))
dir <- commandArgs(TRUE)[1]
ctl <- lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
s <- sleepstudy
m <- lmer(Reaction ~ Days + (Days | Subject), s, control = ctl)
nd <- data.frame(Days = c(0, 3, 9, 4), Subject = c("308", "335", "372", "999"))
out <- data.frame(case = "sleep_all", row = 1:4, value = predict(m, nd, allow.new.levels = TRUE))
out <- rbind(out, data.frame(case = "sleep_fixed", row = 1:4, value = predict(m, nd, re.form = NA)))
out <- rbind(out, data.frame(case = "sleep_int", row = 1:3, value = predict(m, nd[1:3, ], re.form = ~ (1 | Subject))))
write.csv(s, file.path(dir, "sleep.csv"), row.names = FALSE)
d <- read.csv(file.path(dir, "crossed.csv"))
m <- lmer(y ~ x + (x | g) + (1 | b), d, control = ctl)
nd <- d[c(1, 8, 31, 50), ]
out <- rbind(out, data.frame(case = "crossed_all", row = 1:4, value = predict(m, nd)))
out <- rbind(out, data.frame(case = "crossed_b", row = 1:4, value = predict(m, nd, re.form = ~ (1 | b))))
out <- rbind(out, data.frame(case = "crossed_g", row = 1:4, value = predict(m, nd, re.form = ~ (x | g))))
write.csv(out, file.path(dir, "out.csv"), row.names = FALSE)
"""


@pytest.mark.r
def test_predict_matches_lme4(rscript, tmp_path, crossed):
    data, fit = crossed
    data.to_csv(tmp_path / "crossed.csv", index=False)
    (tmp_path / "p.R").write_text(R_PREDICT)
    res = subprocess.run([rscript, str(tmp_path / "p.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv")
    sleep = pd.read_csv(tmp_path / "sleep.csv", dtype={"Subject": str})
    sfit = _fit("Reaction ~ Days + (Days | Subject)", sleep)
    nd = pd.DataFrame({"Days": [0, 3, 9, 4], "Subject": ["308", "335", "372", "999"]})
    ours = {
        "sleep_all": sfit.predict(nd, allow_new_levels=True),
        "sleep_fixed": sfit.predict(nd, re_form="~0"),
        "sleep_int": sfit.predict(nd.iloc[:3], re_form="~ (1 | Subject)"),
        "crossed_all": fit.predict(data.iloc[[0, 7, 30, 49]]),
        "crossed_b": fit.predict(data.iloc[[0, 7, 30, 49]], re_form="~ (1 | b)"),
        "crossed_g": fit.predict(data.iloc[[0, 7, 30, 49]], re_form="~ (x | g)"),
    }
    for case, out in ours.items():
        np.testing.assert_allclose(out.premium.to_numpy(), ref[ref.case == case].value.to_numpy(), rtol=1e-6,
                                   err_msg=case)
