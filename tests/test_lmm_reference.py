"""bc.lmm against published and derived reference values (REFERENCE-VALUES.md, no R needed).

Every number carries its provenance (REFERENCE-VALUES section, seed file and line);
tolerances are the catalogue's. Live lme4 parity is in test_lme4_crosscheck.py and
test_lmm_parity.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import BoundaryWarning


def lmm(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        return bc.lmm(*args, **kw)


# ---------------------------------------------------------------- Table 3.1 (balanced Bühlmann)
@pytest.fixture(scope="module")
def t31():
    return bc.datasets.load("buhlmann_table31")  # seed 004_07f8365c92996b9b.txt, lines 636-642


def test_table31_reml(t31):
    f = lmm("loss ~ 1 + (1|class)", t31)
    # REFERENCE-VALUES §3.2/§3.3: seed 004_07f8365c92996b9b.txt lines 2076, 2085-2099, 2109-2112
    assert f.criterion == pytest.approx(133.557855, abs=1e-5)  # §3.3 (D)
    assert f.varcorr.vcov.tolist() == pytest.approx([8437.5, 6250.0], rel=1e-6)  # exact = MoM
    assert f.fixef["(Intercept)"] == pytest.approx(750.0, rel=1e-9)
    assert f.fixef_se["(Intercept)"] == pytest.approx(57.735027, rel=1e-7)
    r = f.ranef()
    assert r.value.tolist() == pytest.approx([-84.375, 0.0, 84.375], abs=1e-5)
    # §3.3 (D): condVar τ²(1−Z) = 1318.359375; PEV incl. β̂ = 3691.40625
    assert (r.cond_sd**2).tolist() == pytest.approx([1318.359375] * 3, rel=1e-6)
    assert (r.pev_sd**2).tolist() == pytest.approx([3691.40625] * 3, rel=1e-6)
    # premium β + u_j: PEV 1399.739583 (§3.3), g3 (Prasad-Rao) 298.394 per class
    unc = f._measures()
    g1, g2, g3 = unc.components([1.0], [(0, 0, 0, 1.0)])
    assert g1 + g2 == pytest.approx(1399.739583, rel=1e-6)
    assert g3 == pytest.approx(298.394, rel=1e-3)
    # asymptotic REML SEs of (τ², σ²): 10,027.09 and 2,946.28 (§3.3)
    assert np.sqrt(np.diag(unc.info_inv)) == pytest.approx([10027.09, 2946.28], rel=1e-4)
    p = f.predict(pd.DataFrame({"class": [1, 2, 3]}))
    assert p.premium.tolist() == pytest.approx([665.625, 750.0, 834.375], abs=1e-5)  # line 934
    assert p.mse_sd.tolist() == pytest.approx([np.sqrt(1399.739583 + 2 * 298.394)] * 3, rel=1e-3)


def test_table31_ml(t31):
    f = lmm("loss ~ 1 + (1|class)", t31, method="ML")
    # §3.3 (D): balanced ML closed form ((1 − 1/J)MSB − MSW)/T = 5104.1667; deviance 143.29106
    assert f.varcorr.vcov.tolist() == pytest.approx([5104.1667, 6250.0], rel=1e-6)
    assert f.criterion == pytest.approx(143.29106, rel=1e-6)
    prem = f.predict(pd.DataFrame({"class": [1, 2, 3]})).premium
    assert prem.tolist() == pytest.approx([673.4375, 750.0, 826.5625], abs=1e-4)


# ---------------------------------------------------------------- Hachemeister (§5)
@pytest.fixture(scope="module")
def hach():
    return bc.datasets.load("hachemeister")


BS_RECORD = dict(tau2=64849.0366813034, sigma2=139054992.862528)  # §5.7 L record hachemeister_bs


def test_hachemeister_bs_plugin_at_lme4_record(hach):
    """§5.7 (a): at the L record's θ, β̂, criterion, modes and condSDs to rel 1e-8."""
    f = lmm("severity ~ 1 + (1|state)", hach, weights="claims")
    g = f.at([np.sqrt(BS_RECORD["tau2"] / BS_RECORD["sigma2"])])
    assert g.fixef["(Intercept)"] == pytest.approx(1688.75895042702, rel=1e-8)
    assert g.criterion == pytest.approx(847.156267727802, rel=1e-8)
    assert g.sigma2 == pytest.approx(BS_RECORD["sigma2"], rel=1e-8)
    r = g.ranef()
    modes = [364.361572319341, -160.261772702557, 101.273170715902, -221.427486270432, -83.9454840621985]
    csd = [36.8686290372358, 79.4318205020628, 93.5788674237178, 148.611018566575, 60.2911036121364]
    assert r.value.tolist() == pytest.approx(modes, rel=1e-8)
    assert r.cond_sd.tolist() == pytest.approx(csd, rel=1e-8)
    # §5.9 (D), at the same θ: PEV SD of u_j (C22), of the premium, g3 (PR), MSE SD
    assert r.pev_sd.tolist() == pytest.approx([125.0936, 135.8574, 141.1036, 169.0203, 130.0697], rel=1e-4)
    p = g.predict(pd.DataFrame({"state": [1, 2, 3, 4, 5]}))
    assert p.pev_sd.tolist() == pytest.approx([36.9574, 80.3152, 95.0202, 154.3187, 60.6783], rel=1e-4)
    assert p.mse_sd.tolist() == pytest.approx([37.4850, 85.0347, 102.3193, 175.4965, 62.8706], rel=1e-4)
    g3 = [g._measures().components([1.0], [(0, j, 0, 1.0)])[2] for j in range(5)]
    assert g3 == pytest.approx([19.641, 390.183, 720.200, 3492.376, 135.427], rel=1e-3)
    # asymptotic REML SEs: SE(τ²) = 52,593, SE(σ²) = 2.650e7 (σ² in the caller's weight units)
    se = np.sqrt(np.diag(g._measures().info_inv))
    assert se[0] == pytest.approx(52593, rel=1e-4)
    assert se[1] * g._design.scale == pytest.approx(2.650e7, rel=2e-3)


def test_hachemeister_bs_optimum(hach):
    f = lmm("severity ~ 1 + (1|state)", hach, weights="claims")
    # §5.7 (b): criterion abs 1e-4; β̂₀ abs 0.01; τ² rel 1e-3 (flat); σ² rel 1e-4
    assert f.criterion <= 847.156267727802 + 1e-4
    assert f.criterion == pytest.approx(847.156267727802, abs=1e-4)
    assert f.fixef["(Intercept)"] == pytest.approx(1688.75595, abs=0.01)
    assert f.varcorr.vcov[0] == pytest.approx(64859.74, rel=1e-4)  # D optimum
    assert f.sigma2 == pytest.approx(139053562, rel=1e-4)
    prem = f.predict(pd.DataFrame({"state": [1, 2, 3, 4, 5]})).premium
    # §5.8 (D REML premiums; seed 002_112bee5238c97912.txt line 723 prints old-lme4 values within 1.0)
    assert prem.tolist() == pytest.approx([2053.122, 1528.494, 1790.034, 1467.317, 1604.812], abs=0.05)
    assert not f.singular


def test_hachemeister_diag_true_optimum_not_lme4_record(hach):
    """§5.7 hachemeister_diag: the L record (800.4228) is a premature stop (E9); the true
    REML optimum is 785.496952 (abs 1e-4) with τ₀² 19,907.42, τ₁² 605.118 (rel 1e-3)."""
    f = lmm("severity ~ period + (1|state) + (0 + period|state)", hach, weights="claims")
    assert f.criterion <= 785.4970 + 1e-4
    assert f.criterion == pytest.approx(785.496952, abs=1e-4)
    vc = f.varcorr.vcov.tolist()
    assert vc[:2] == pytest.approx([19907.42, 605.118], rel=1e-3)
    assert vc[2] == pytest.approx(48723759, rel=1e-4)
    assert f.fixef.tolist() == pytest.approx([1491.9977, 29.5503], abs=2e-3)
    assert f.fixef_se.tolist() == pytest.approx([78.463, 12.764], rel=1e-4)
    r = f.ranef()
    ints, slopes = r[r.term == "(Intercept)"], r[r.term == "period"]
    assert ints.value.tolist() == pytest.approx([162.864, -78.553, 44.104, -137.974, 9.559], abs=0.02)
    assert slopes.value.tolist() == pytest.approx([32.785, -13.242, 12.017, -16.885, -14.675], abs=0.02)
    assert ints.cond_sd.tolist() == pytest.approx([43.288, 78.807, 85.180, 106.668, 64.905], rel=1e-3)
    assert slopes.cond_sd.tolist() == pytest.approx([5.940, 10.821, 12.184, 15.849, 8.836], rel=1e-3)
    assert ints.pev_sd.tolist() == pytest.approx([82.354, 94.585, 98.019, 112.258, 88.491], rel=1e-3)
    assert slopes.pev_sd.tolist() == pytest.approx([13.240, 14.715, 15.364, 17.546, 13.957], rel=1e-3)
    # (a) plug-in at the record's θ reproduces its criterion (rel 1e-8)
    s = np.sqrt(45514083.6928736)
    g = f.at([np.sqrt(3730712.66840154) / s, np.sqrt(443.250579563385) / s])
    assert g.criterion == pytest.approx(800.422797295218, rel=1e-8)
    assert g.fixef.tolist() == pytest.approx([1448.10574303221, 33.9732470844186], rel=1e-8)


def test_hachemeister_hm_mixed_1_is_singular(hach):
    """§5.6 hm.mixed.1 (weights claims/1000): corr 1.00, eigen(D) ≈ (12,543, 1e-13): E6."""
    with pytest.warns(BoundaryWarning):
        f = bc.lmm("severity ~ period + (1 + period|state)", hach, weights=hach.claims / 1000)
    assert f.singular
    assert f.criterion == pytest.approx(782.4041, abs=0.01)  # seed 004 line 2718
    assert f.sigma2 == pytest.approx(47599.07, rel=1e-4)  # line 2740
    assert f.varcorr.vcov.tolist()[:3] == pytest.approx([11989.25, 553.160, 2575.26], rel=1e-3)
    prem = f.predict(pd.DataFrame({"state": [1, 2, 3, 4, 5], "period": 13})).premium
    assert prem.tolist() == pytest.approx([2463.917, 1605.918, 2067.336, 1453.528, 1719.698], abs=0.5)


def test_hachemeister_hm_mixed_3_centred(hach):
    """§5.6 hm.mixed.3: time centred at each state's centre of gravity, diagonal D."""
    h = hach.copy()
    cg = h.groupby("state").apply(lambda g: np.average(g.period, weights=g.claims), include_groups=False)
    h["ctime"] = h.period - h.state.map(cg)
    f = lmm("severity ~ ctime + (1|state) + (0 + ctime|state)", h, weights=h.claims / 1000)
    assert f.varcorr.vcov.tolist() == pytest.approx([70863.80, 446.468, 49018.14], rel=1e-3)
    assert f.criterion == pytest.approx(788.59935, abs=1e-3)
    assert f.fixef.tolist() == pytest.approx([1674.96, 34.09], abs=0.02)  # lines 2895-2903
    r = f.ranef()
    ints, slopes = r[r.term == "(Intercept)"], r[r.term == "ctime"]
    assert ints.cond_sd.tolist() == pytest.approx([22.047, 48.796, 58.290, 100.598, 36.496], rel=1e-3)
    assert slopes.cond_sd.tolist() == pytest.approx([6.116, 11.821, 13.350, 17.429, 9.401], rel=1e-3)
    assert ints.pev_sd.tolist() == pytest.approx([123.292, 127.727, 130.077, 145.196, 125.280], rel=1e-3)
    assert slopes.pev_sd.tolist() == pytest.approx([12.251, 14.251, 15.056, 17.818, 13.219], rel=1e-3)
    totals = f.fixef["(Intercept)"] + ints.value.to_numpy()
    assert totals.tolist() == pytest.approx([2058.274, 1516.725, 1799.567, 1398.957, 1601.241], abs=0.05)


# ---------------------------------------------------------------- Bühlmann–Straub simulated (§4)
def test_bs_simulated(shared_data):
    d = pd.read_csv(shared_data / "bs_simulated.csv")
    f = lmm("X.jt ~ 1 + (1|risk)", d, weights="W.jt")
    # §4.3 (D: dense REML) rel 1e-4; seed 004 lines 2162-2195
    assert f.varcorr.vcov.tolist() == pytest.approx([61.1412, 104.6386], rel=1e-4)
    assert f.fixef["(Intercept)"] == pytest.approx(78.5384, rel=1e-4)
    assert f.fixef_se["(Intercept)"] == pytest.approx(0.9083, abs=5e-5)
    assert f.criterion == pytest.approx(3901.42, abs=0.005)
    eblup = f.predict(pd.DataFrame({"risk": range(1, 21)})).premium
    printed = [67.412, 74.652, 82.376, 81.782, 75.534, 84.268, 80.164, 71.724, 95.032, 71.414,
               86.433, 80.360, 90.375, 73.343, 74.710, 78.710, 71.746, 92.539, 72.314, 69.291]  # lines 2214-2216
    assert eblup.tolist() == pytest.approx(printed, abs=5e-4 + 1e-9)


# ---------------------------------------------------------------- workers' compensation (§8)
@pytest.fixture(scope="module")
def workers(shared_data):
    d = pd.read_csv(shared_data / "workers_comp_losses.csv")
    d = d[(d.year <= 6) & (d.payroll > 0) & (d.loss > 0)].copy()  # §8.1 incl. E11: 669 rows, 118 classes
    assert (len(d), d.riskclass.nunique()) == (669, 118)
    d["yearcentr"] = d.year - d.year.mean()  # 3.502242
    d["logloss"] = np.log(d.loss)
    d["logpay"] = np.log(d.payroll)
    return d


def test_workers_comp_random_intercept(workers):
    f = lmm("logloss ~ yearcentr + (1|riskclass)", workers, offset="logpay")
    # §8.2, seed 002_112bee5238c97912.txt lines 559-576
    assert f.varcorr.vcov.tolist() == pytest.approx([0.88589, 0.30145], abs=5e-6)
    assert f.fixef["(Intercept)"] == pytest.approx(-4.31968, abs=2e-4)
    assert f.fixef["yearcentr"] == pytest.approx(0.03784, abs=5e-6)
    assert f.fixef_se.tolist() == pytest.approx([0.08938, 0.01253], abs=5e-6)
    assert f.loglik == pytest.approx(-720.23, abs=0.005)


def test_workers_comp_random_slope_and_lrt(workers):
    f2 = lmm("logloss ~ yearcentr + offset(logpay) + (1 + yearcentr|riskclass)", workers)
    vc = f2.varcorr
    # §8.2 lines 625-628: Var(Int) 0.885937, Var(slope) 0.003171, corr −0.195, σ² 0.290719
    assert vc.vcov.tolist()[:2] == pytest.approx([0.885937, 0.003171], abs=5e-7)
    assert vc.sdcor[2] == pytest.approx(-0.195, abs=5e-4)
    assert f2.sigma2 == pytest.approx(0.290719, abs=5e-7)
    assert f2.fixef.tolist() == pytest.approx([-4.32030, 0.03715], abs=2e-4)
    # ML refits (anova): logLik −715.27 / −714.45 (D), LRT ≈ 1.64, mixture p (§13)
    m1 = lmm("logloss ~ yearcentr + (1|riskclass)", workers, offset="logpay", method="ML")
    m2 = lmm("logloss ~ yearcentr + (1 + yearcentr|riskclass)", workers, offset="logpay", method="ML")
    assert (m1.loglik, m2.loglik) == pytest.approx((-715.27, -714.45), abs=0.01)
    assert (m1.aic, m1.bic, m2.aic) == pytest.approx((1438.5, 1456.6, 1440.9), abs=0.05)  # line 652-653
    # printed BIC 1468.0 comes from the old fit's logLik −714.46; the optimum −714.45 gives 1467.94
    assert m2.bic == pytest.approx(1467.94, abs=0.01)
    from bayescred.lmm import lrt

    test = lrt(m1, m2)
    assert test["df"] == 2
    assert test["statistic"] == pytest.approx(1.6313, abs=0.02)
    assert test["p_mixture"] < test["p_naive"]


def test_boundary_mixture_pvalues_of_published_lrts():
    from bayescred.lmm.inference import mixture_pvalue

    # §13: LRT 1.6313 (seed 002 line 653) -> naive χ²₂ 0.442352, mixture 0.321938
    assert mixture_pvalue(1.6313, 2) == pytest.approx(0.321938, abs=1e-5)
    # LRT 17.521 (seed 002 line 805) -> mixture 9.2611e-5 (E10)
    assert mixture_pvalue(17.521, 2) == pytest.approx(9.2611e-5, rel=1e-4)
    # one variance component: p = ½P(χ²₁ > T)
    assert mixture_pvalue(2.7055, 1) == pytest.approx(0.05, abs=1e-4)
    assert mixture_pvalue(0.0, 1) == 1.0


def test_hachemeister_lrt_ml(hach):
    # §5.8: ML deviances 816.2248 − 798.7401 = 17.485 on the shipped data (abs 0.05)
    m0 = lmm("severity ~ period + (1|state)", hach, weights="claims", method="ML")
    m1 = lmm("severity ~ period + (1 + period|state)", hach, weights="claims", method="ML")
    from bayescred.lmm import lrt

    t = lrt(m0, m1)
    assert m0.criterion == pytest.approx(816.2248, abs=0.05)
    assert t["statistic"] == pytest.approx(17.485, abs=0.05)


# ---------------------------------------------------------------- Massachusetts BI (§9)
def test_massbi_random_intercept(shared_data):
    m = pd.read_csv(shared_data / "usmassBI2.csv")
    tr = m[m.YEAR <= 1997].copy()
    tr["YR"], tr["PCI.k"], tr["lnPPSM"] = tr.YEAR - 1992, tr.PCI / 1000, np.log(tr.PPSM)
    f = lmm("AC ~ PCI.k + lnPPSM + YR + (1|TOWNCODE)", tr)
    # §9 bi.rnd.int, seed 004 lines 4093-4110 (nlme REML). The catalogue asks rel 1e-6, but
    # −4.19414 is printed to 5 decimals (half a unit = rel 1.2e-6), so: half a printed unit.
    assert f.fixef.tolist() == pytest.approx([70.25708, -4.19414, 21.98209, 3.82988], abs=5e-6)
    assert f.fixef_se.tolist() == pytest.approx([39.65931, 0.97273, 5.16832, 1.14148], rel=1e-5)
    assert f.varcorr.sdcor.tolist() == pytest.approx([18.44886, 19.01929], rel=1e-6)
    assert f.criterion == pytest.approx(1298.7220, abs=1e-3)
    assert f.loglik == pytest.approx(-649.361, abs=1e-3)
    sd = f.varcorr.vcov
    assert sd[0] / (sd[0] + sd[1]) == pytest.approx(0.484779, rel=1e-5)  # ICC, E13


# ---------------------------------------------------------------- credit insurance from summaries (§6)
def test_credit_insurance_from_summaries():
    cells = bc.datasets.load("credit_insurance")  # seed 002 Table 1, lines 155-161
    ss, df = cells.attrs["within_ss"], cells.attrs["within_df"]  # derived SSW (§6), labelled D
    form = "mean_payment ~ 1 + (1|experience) + (1|status) + (1|status:experience)"
    f = lmm(form, cells, weights="count", within_ss=ss, within_df=df)
    vc = f.varcorr.set_index("grp").vcov
    # derived-SSW REML optimum (§6): (σ₁², σ₂², σ₁₂², σ²) = (992.594, 2569.243, 14.681, 26990.37)
    assert [vc["status"], vc["experience"], vc["status:experience"], vc["Residual"]] == pytest.approx(
        [992.594, 2569.243, 14.681, 26990.37], rel=1e-4)
    # printed (old lme4, seed 002 lines 857-883): 14.611, 992.791, 2569.330; rel 5e-3 in a refit
    assert [vc["status:experience"], vc["status"], vc["experience"]] == pytest.approx(
        [14.611, 992.791, 2569.330], rel=5e-3)
    assert vc["Residual"] == pytest.approx(26990.398, rel=1e-4)  # by construction of the SSW
    assert f.criterion == pytest.approx(5231.32, abs=0.05)  # printed REMLdev 5231 (line 880)
    assert (f.aic, f.bic, f.loglik) == pytest.approx((5241.3, 5261.3, -2615.7), abs=0.05)
    assert f.fixef["(Intercept)"] == pytest.approx(244.2515, abs=0.01)
    assert f.fixef_se["(Intercept)"] == pytest.approx(35.454, abs=0.01)
    prem = f.predict(cells).premium.to_numpy().reshape(3, 3)
    lme4 = [[181.0253, 238.1813, 277.7692], [172.1086, 229.1551, 268.7954], [225.2921, 282.2424, 323.6784]]
    np.testing.assert_allclose(prem, lme4, atol=0.05)  # line 887
    ml = lmm(form, cells, weights="count", within_ss=ss, within_df=df, method="ML")
    vc = ml.varcorr.set_index("grp").vcov
    assert ml.criterion == pytest.approx(5240.152, abs=0.05)  # §6 ML optimum (D)
    assert [vc["status"], vc["experience"], vc["status:experience"], vc["Residual"]] == pytest.approx(
        [807.17, 1835.71, 26.594, 26989.99], rel=5e-3)


def test_other_frame_engines():
    """Data in any narwhals-supported frame (here polars) gives the same fit."""
    pl = pytest.importorskip("polars")
    t31 = bc.datasets.load("buhlmann_table31")
    a = lmm("loss ~ 1 + (1|class)", t31)
    b = lmm("loss ~ 1 + (1|class)", pl.from_pandas(t31))
    assert b.criterion == pytest.approx(a.criterion, rel=1e-12)


def test_convergence_problem_is_reported(monkeypatch):
    """A stalled optimiser is never silent: ConvergenceWarning and .converged = False."""
    from bayescred.lmm import fit as engine

    class Stalled:
        def __init__(self, x):
            self.x, self.fun, self.success, self.message = x, np.inf, False, "stalled"

    monkeypatch.setattr(engine, "_newton", lambda *args, **kw: None)  # the general path, for a small design too
    monkeypatch.setattr(engine, "minimize", lambda f, x0, **kw: Stalled(np.asarray(x0, float)))
    monkeypatch.setattr(engine, "_newton_polish", lambda f, x, lower, grad=None: (x, f(x), 0.5, True))
    t31 = bc.datasets.load("buhlmann_table31")
    with pytest.warns(bc.errors.ConvergenceWarning, match="scaled gradient"):
        f = bc.lmm("loss ~ 1 + (1|class)", t31)
    assert not f.converged and "scaled gradient" in f.convergence_message


def test_aggregated_input_equals_raw_rows():
    """Cell means + counts + pooled within SS/df give exactly the fit of the raw rows."""
    rng = np.random.default_rng(7)
    rows = []
    for s in range(3):
        for e in range(4):
            n = int(rng.integers(3, 9))
            rows += [(f"s{s}", f"e{e}", 10 + s + 2 * e + rng.normal(0, 2) + rng.normal()) for _ in range(n)]
    raw = pd.DataFrame(rows, columns=["s", "e", "y"])
    cells = raw.groupby(["s", "e"]).agg(y=("y", "mean"), n=("y", "size")).reset_index()
    ss = float(((raw.y - raw.groupby(["s", "e"]).y.transform("mean")) ** 2).sum())
    df = len(raw) - len(cells)
    form = "y ~ 1 + (1|s) + (1|e) + (1|s:e)"
    for method in ("REML", "ML"):
        a = lmm(form, raw, method=method)
        b = lmm(form, cells, weights="n", within_ss=ss, within_df=df, method=method)
        assert b.criterion == pytest.approx(a.criterion, rel=1e-9)
        assert b.varcorr.vcov.tolist() == pytest.approx(a.varcorr.vcov.tolist(), rel=1e-4, abs=1e-8)
        assert b.nobs == a.nobs


# ---------------------------------------------------------------- Halliwell (§7.6, §7.7)
def test_venter_reml_and_uncertainty():
    v = bc.datasets.load("venter")
    f = lmm("loss ~ 1 + (1|state)", v)
    # §7.6 (D): REML = moments σ² 0.3570127, τ² 0.0066941, β₀ 0.562704; rel 1e-5
    assert f.varcorr.vcov.tolist() == pytest.approx([0.0066941, 0.3570127], rel=1e-4)
    assert f.fixef["(Intercept)"] == pytest.approx(0.562704, rel=1e-5)
    r = f.ranef()
    assert (r.cond_sd**2).tolist() == pytest.approx([0.0060172] * 9, rel=1e-4)
    assert (r.pev_sd**2).tolist() == pytest.approx([0.0060924] * 9, rel=1e-4)
    p = f.predict(pd.DataFrame({"state": range(1, 10)}))
    assert p.premium.round(4).tolist() == pytest.approx(
        [0.5868, 0.5867, 0.5482, 0.5199, 0.5882, 0.5682, 0.5780, 0.5266, 0.5618], abs=1e-4)
    assert (p.pev_sd**2).tolist() == pytest.approx([0.0119600] * 9, rel=1e-4)
    assert p.mse_sd.tolist() == pytest.approx([0.20846] * 9, rel=1e-3)  # √(g1+g2+2g3), PR


def test_venter_ml_is_boundary():
    v = bc.datasets.load("venter")
    with pytest.warns(BoundaryWarning):
        f = bc.lmm("loss ~ 1 + (1|state)", v, method="ML")
    # §7.6 ML: τ² = 0 (boundary), σ² 0.3563516, SE(β̂₀) 0.081235
    assert f.singular
    assert f.varcorr.vcov[0] == pytest.approx(0.0, abs=1e-6)
    assert f.sigma2 == pytest.approx(0.3563516, rel=1e-6)
    assert f.fixef_se["(Intercept)"] == pytest.approx(0.081235, rel=1e-5)


def test_halliwell_trend_random_coefficients():
    d = bc.datasets.load("halliwell_trend")
    f = lmm("loss_ratio ~ year + (1 + year|state)", d)
    vc = f.varcorr.vcov.tolist()
    # §7.7 (D): REML D = moment V [[0.0022195, −0.0002894], [·, 0.0005208]], σ² 0.00127583
    assert vc == pytest.approx([0.0022195, 0.0005208, -0.0002894, 0.00127583], abs=5e-8)
    ranef = f.ranef()
    ints = 100 * (f.fixef["(Intercept)"] + ranef[ranef.term == "(Intercept)"].value.to_numpy())
    slopes = 100 * (f.fixef["year"] + ranef[ranef.term == "year"].value.to_numpy())
    assert ints.tolist() == pytest.approx([45.849, 40.586, 49.074, 42.806, 40.318, 41.825, 45.156, 37.149, 37.958], abs=1e-3)
    assert slopes.tolist() == pytest.approx([5.854, 3.757, 2.146, 0.478, 5.672, 1.466, -0.373, 1.960, 3.649], abs=1e-3)
    ml = lmm("loss_ratio ~ year + (1 + year|state)", d, method="ML")
    assert ml.varcorr.vcov.tolist()[:3] == pytest.approx([0.00185, 0.0004548, -0.0002289], rel=1e-3)
