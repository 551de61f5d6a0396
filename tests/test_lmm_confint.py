"""LMMFit.confint for every parameter as lme4's confint.merMod (profile, Wald, bootstrap), and bc.lrt.

Without R: names and order, Wald = β̂ ± z·SE, the ML profile of β_j checked against an
independent refit with β_j x_j moved into the offset (the criterion there is exactly
χ²₁(level) above the minimum), seeded bootstrap reproducible. With R (live, lme4 run
with tight optimiser tolerances): Wald to 1e-6; profile to 1e-3 relative, because lme4's
confint(method = "profile") inverts a spline interpolation of its profile at a few dozen
points (ours finds the root of the profile itself), so the two differ in the 4th-5th digit.
lme4 profiles the ML deviance, so variance parameters are compared on ML fits and fixed
effects on both (our β profile is the ML one too).
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayescred as bc
from bayescred.errors import BayescredError, DataError


def _fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bc.lmm(formula, data, **kw)


def _design(seed=5, J=10, n=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), n)
    x = np.tile(np.arange(n, dtype=float), J)
    b = rng.integers(0, 4, J * n)
    y = 5 + 0.8 * x + rng.normal(0, 1.2, J)[g] + rng.normal(0, 0.3, J)[g] * x + rng.normal(0, 0.6, 4)[b] \
        + rng.normal(0, 0.8, J * n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"r{i:02d}" for i in g], "b": [f"b{i}" for i in b]})


@pytest.fixture(scope="module")
def slope():
    data = _design()
    return data, _fit("y ~ x + (x | g)", data, method="ML")


def test_names_order_and_wald(slope):
    _, fit = slope
    ci = fit.confint(method="wald", level=0.9)
    assert list(ci.index) == ["sd_(Intercept)|g", "sd_x|g", "cor_x.(Intercept)|g", "sigma", "(Intercept)", "x"]
    assert list(ci.par) == [".sig01", ".sig03", ".sig02", ".sigma", "(Intercept)", "x"]
    vc = fit.varcorr
    np.testing.assert_allclose(ci.estimate.iloc[:4], vc.sdcor.to_numpy())
    assert ci.iloc[:4][["lower", "upper"]].isna().all().all()  # lme4: NA for the variance parameters
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci.lower.iloc[4:], fit.fixef - z * fit.fixef_se, rtol=1e-12)
    np.testing.assert_allclose(ci.upper.iloc[4:], fit.fixef + z * fit.fixef_se, rtol=1e-12)
    assert list(fit.confint(method="wald", parm="beta_").index) == ["(Intercept)", "x"]
    assert list(fit.confint(method="wald", parm=[".sig02", "x"]).index) == ["cor_x.(Intercept)|g", "x"]


def test_fixed_effect_profile_against_refit_with_offset(slope):
    """At each end of the profile interval of β_x, the ML fit with β_x held there (x·b in the
    offset) has a deviance χ²₁(0.95) above the minimum: an independent evaluation."""
    data, fit = slope
    ci = fit.confint(parm="x")
    cut = stats.chi2.ppf(0.95, 1)
    for b in (ci.lower.iloc[0], ci.upper.iloc[0]):
        held = _fit("y ~ 1 + (x | g)", data, offset=b * data.x, method="ML")
        assert held.criterion - fit.criterion == pytest.approx(cut, abs=2e-5)
    assert ci.lower.iloc[0] < fit.fixef["x"] < ci.upper.iloc[0]


def test_fixed_effect_profile_of_a_reml_fit_is_the_ml_profile(slope):
    data, ml = slope
    reml = _fit("y ~ x + (x | g)", data)
    ends = ["lower", "upper"]
    np.testing.assert_allclose(reml.confint(parm="beta_")[ends], ml.confint(parm="beta_")[ends], rtol=1e-6)


def test_correlation_profile_brackets_the_estimate(slope):
    _, fit = slope
    ci = fit.confint(parm="cor_x.(Intercept)|g")
    assert -1 <= ci.lower.iloc[0] < ci.estimate.iloc[0] < ci.upper.iloc[0] <= 1


def test_bootstrap_is_seeded_and_sensible(slope):
    _, fit = slope
    a = fit.confint(method="boot", nsim=60, seed=7, parm=["x", "sigma"])
    b = fit.confint(method="boot", nsim=60, seed=7, parm=["x", "sigma"])
    pd.testing.assert_frame_equal(a, b)
    assert (a.lower < a.estimate).all() and (a.estimate < a.upper).all()
    wald = fit.confint(method="wald", parm="x")
    width = float(a.upper.iloc[0] - a.lower.iloc[0]) / float(wald.upper.iloc[0] - wald.lower.iloc[0])
    assert 0.6 < width < 1.4  # 60 refits: the percentile width is within Monte Carlo noise of Wald's


def test_bad_arguments(slope):
    _, fit = slope
    with pytest.raises(DataError, match="method"):
        fit.confint(method="bayes")
    with pytest.raises(DataError, match="seed"):
        fit.confint(method="boot", nsim=5)
    with pytest.raises(DataError, match="'.sig09'"):
        fit.confint(parm=".sig09")


def test_lrt_is_reachable_from_bc():
    data = _design(seed=8)
    null = _fit("y ~ x + (1 | g)", data, method="ML")
    alt = _fit("y ~ x + (x | g)", data, method="ML")
    out = bc.lrt(null, alt)
    assert out["df"] == 2 and out["statistic"] == pytest.approx(null.criterion - alt.criterion)
    with pytest.raises(BayescredError, match="same criterion"):
        bc.lrt(_fit("y ~ x + (1 | g)", data), alt)


R_CONFINT = r"""
suppressMessages(library(lme4))
dir <- commandArgs(TRUE)[1]
ctl <- lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
write.csv(sleepstudy, file.path(dir, "sleep.csv"), row.names = FALSE)
d <- read.csv(file.path(dir, "design.csv"))
fits <- list(
  sleep_ml = lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE, control = ctl),
  sleep_reml = lmer(Reaction ~ Days + (Days | Subject), sleepstudy, control = ctl),
  design_ml = lmer(y ~ x + (x | g) + (1 | b), d, REML = FALSE, control = ctl))
out <- NULL
for (id in names(fits)) for (method in c("Wald", "profile")) {
  ci <- suppressMessages(suppressWarnings(confint(fits[[id]], method = method, oldNames = FALSE)))
  out <- rbind(out, data.frame(id = id, method = method, name = rownames(ci), lower = ci[, 1], upper = ci[, 2]))
}
write.csv(out, file.path(dir, "out.csv"), row.names = FALSE)
"""


@pytest.mark.r
def test_confint_matches_lme4(rscript, tmp_path):
    design = _design(seed=11, J=12)
    design.to_csv(tmp_path / "design.csv", index=False)
    (tmp_path / "ci.R").write_text(R_CONFINT)
    res = subprocess.run([rscript, str(tmp_path / "ci.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv").set_index(["id", "method", "name"]).sort_index()
    sleep = pd.read_csv(tmp_path / "sleep.csv", dtype={"Subject": str})
    fits = {
        "sleep_ml": _fit("Reaction ~ Days + (Days | Subject)", sleep, method="ML"),
        "sleep_reml": _fit("Reaction ~ Days + (Days | Subject)", sleep),
        "design_ml": _fit("y ~ x + (x | g) + (1 | b)", design, method="ML"),
    }
    for fid, fit in fits.items():
        wald = fit.confint(method="wald", parm="beta_")
        r = ref.loc[(fid, "Wald")].loc[wald.index]
        np.testing.assert_allclose(wald[["lower", "upper"]].to_numpy(), r[["lower", "upper"]].to_numpy(), rtol=1e-6)
        # the REML fit: lme4 profiles the ML deviance, so only the fixed effects are comparable
        prof = fit.confint(parm="beta_" if fit.reml else None)
        r = ref.loc[(fid, "profile")].loc[prof.index]
        if fid == "design_ml":
            # lme4's lower end for the correlation, -0.44553, is inside the interval: its own
            # deviance function (update(m, devFunOnly = TRUE)) at θ = (1.65249, -0.175171,
            # 0.351996, 0.225237), whose correlation is -0.44553, is 3.7813 above the minimum,
            # below χ²₁(0.95) = 3.8415 (its spline through the profile points misses the
            # root). Ours, -0.45051, is the root of the profile; it can only be wider.
            cor = "cor_x.(Intercept)|g"
            assert prof.lower[cor] < r.lower[cor] - 1e-3 and prof.upper[cor] == r.upper[cor] == 1.0
            prof, r = prof.drop(cor), r.drop(cor)
        np.testing.assert_allclose(prof[["lower", "upper"]].to_numpy(), r[["lower", "upper"]].to_numpy(),
                                   rtol=1e-3, atol=1e-6, err_msg=fid)
