"""Halliwell's statistical models of credibility (seed 003_74058930f1b144d2.txt), issue 12.

Every number is from REFERENCE-VALUES.md §7 (printed value, its line in the seed, and the
derived value "D"); tolerance R = half a unit of the printed last digit unless stated.
Erratum E17 (OCR digits: Example 5 data, "0.407" read 0.467, "1.954" read 1.934) and E18
(0.904 is sigma^2-hat, not Var[beta-hat]) apply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import errors
from bayescred.credibility.halliwell import credibility_given, mixed_estimation


def close(value, printed: str):
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(value - float(printed.replace(",", ""))) <= 0.5 * 10.0**-decimals + 1e-9, (value, printed)


EX1 = [6.164, 11.103, 9.663, 12.998, 10.329, 9.564, 9.602]


def obs(values, variance=1.0):
    return pd.DataFrame({"y": values, "one": 1.0, "var": variance})


# --------------------------------------------------------------------------- Examples 1-5


def test_example_1_simplest_model():
    """Lines 143-151: beta-hat = mean 9.917, sigma^2-hat = sample variance 4.240."""
    fit = mixed_estimation(obs(EX1), "y", ["one"])
    # erratum: the print truncates the mean 69.423/7 = 9.917571 to 9.917 (rounded it is 9.918;
    # REFERENCE-VALUES §7.1 gives D 9.917571); the exact mean is asserted instead
    assert fit.coef["one"] == pytest.approx(69.423 / 7, rel=1e-12)
    assert abs(fit.coef["one"] - 9.917) < 1e-3
    close(fit.sigma2, "4.240")
    assert fit.coef["one"] == pytest.approx(np.mean(EX1), rel=1e-12)
    assert fit.sigma2 == pytest.approx(np.var(EX1, ddof=1), rel=1e-12)


def test_example_2_expense_model():
    """Exhibits 3-4 (lines 401-474): y = beta index + e, Phi = diag(index^2)."""
    index = [132.545, 134.440, 134.820, 139.690, 146.572, 146.745, 150.687, 155.983, 151.240, 154.417, 158.616,
             158.302, 156.779]  # fmt: skip
    expense = [1714, 1804, 1862, 2265, 2553, 2170, 2315, 2217, 2279, 2293, 2171, 2263, 2192]
    data = pd.DataFrame({"expense": expense, "index": index, "phi": np.square(index)})
    fit = mixed_estimation(data, "expense", ["index"], variance="phi")
    close(fit.coef["index"], "14.618")
    close(fit.sigma2, "1.475")
    close(fit.vcov.iloc[0, 0], "0.113")
    future = pd.DataFrame({"index": [160.0, 162.0, 168.0]})
    future["phi"] = future["index"] ** 2
    pred = fit.predict(future, variance="phi")
    for value, printed in zip(pred.prediction, ["2,339", "2,368", "2,456"]):
        close(value, printed)
    cov = fit.prediction_vcov(future, variance="phi").to_numpy()
    printed = [[40672, 2941, 3050], [2941, 41695, 3089], [3050, 3089, 44841]]
    np.testing.assert_allclose(cov, printed, atol=0.5)
    total = cov.sum()
    close(pred.prediction.sum(), "7,163")
    close(total, "145,370")  # printed to the nearest ten: 145,369.98
    close(np.sqrt(total), "381")


def test_example_3_prior_as_quasi_observation():
    """Exhibit 5 (lines 476-511): prior mean 11 with variance 3 appended as an eighth row;
    the data rows carry the unmixed sigma^2-hat 4.240 as absolute variance."""
    prior = pd.DataFrame({"y": [11.0], "one": [1.0], "var": [3.0]})
    fit = mixed_estimation(obs(EX1, 4.240), "y", ["one"], variance="var", prior=prior)
    close(fit.coef["one"], "10.099")
    close(fit.unscaled_vcov.iloc[0, 0], "0.504")
    close(fit.sigma2, "0.904")  # E18: this is the scale check sigma^2-hat, not Var[beta-hat]
    close(fit.vcov.iloc[0, 0], "0.455")
    # credibility form: k = EVPV/VHM = 4.240/3, Z = n/(n + k) (line 189)
    k = 4.240 / 3.0
    Z = 7 / (7 + k)
    close(k, "1.413")
    close(Z, "0.832")
    assert fit.coef["one"] == pytest.approx(Z * np.mean(EX1) + (1 - Z) * 11.0, rel=1e-12)
    # the same with the structure given and one risk (no dummy second risk)
    one = credibility_given(pd.DataFrame({"risk": 1, "y": EX1}), "risk", "y",
                            between=3.0, within=4.240, collective=11.0)  # fmt: skip
    assert one.table.loc[1, "premium"] == pytest.approx(fit.coef["one"], rel=1e-12)
    assert one.table.loc[1, "Z"] == pytest.approx(Z, rel=1e-12)
    assert one.structure["k"] == pytest.approx(k, rel=1e-12)


def test_example_4_merit_rating_separate_and_summarised():
    """Exhibit 6 (lines 513-549): one accident in the second of three years; yearly
    variance 0.0625; prior 0.25 with variance 0.0225. Summarising the years leaves beta-hat
    unchanged but changes the variance estimates (Halliwell's lesson)."""
    prior = pd.DataFrame({"y": [0.25], "one": [1.0], "var": [0.0225]})
    future = pd.DataFrame({"one": [1.0], "var": [0.0625]})
    a = mixed_estimation(obs([0.0, 1.0, 0.0], 0.0625), "y", ["one"], variance="var", prior=prior)
    close(a.coef["one"], "0.293")
    close(a.unscaled_vcov.iloc[0, 0], "0.011")
    close(a.sigma2, "3.609")
    close(a.vcov.iloc[0, 0], "0.039")
    close(a.prediction_vcov(future, variance="var").iloc[0, 0], "0.265")
    b = mixed_estimation(obs([1 / 3], 0.0625 / 3), "y", ["one"], variance="var", prior=prior)
    assert b.coef["one"] == pytest.approx(a.coef["one"], rel=1e-12)
    close(b.sigma2, "0.160")
    close(b.vcov.iloc[0, 0], "0.002")
    close(b.prediction_vcov(future, variance="var").iloc[0, 0], "0.012")
    # credibility form (D, exact): k = 0.0625/0.0225 = 25/9, Z = 27/52, beta = 15.25/52
    assert a.coef["one"] == pytest.approx(15.25 / 52, rel=1e-12)
    one = credibility_given(pd.DataFrame({"driver": 7, "n": [0, 1, 0]}), "driver", "n",
                            between=0.0225, within=0.0625, collective=0.25)  # fmt: skip
    assert one.table.loc[7, "Z"] == pytest.approx(27 / 52, rel=1e-12)
    assert one.table.loc[7, "premium"] == pytest.approx(15.25 / 52, rel=1e-12)
    # absolute-variance version (sigma^2 = 1): Var[y2 - y2-hat] = 0.0625 + 0.0108173 (D)
    absolute = mixed_estimation(obs([0.0, 1.0, 0.0], 0.0625), "y", ["one"], variance="var", prior=prior, sigma2=1.0)
    assert absolute.prediction_vcov(future, variance="var").iloc[0, 0] == pytest.approx(0.0625 + 0.5625 / 52, rel=1e-12)


PAID = {  # Example 5, confirmed readings (REFERENCE-VALUES §7.5, E17): paid by age | exposure
    1988: ([266354, 166572, 32329, 53610, 8124, 16924, 39109], 131332),
    1989: ([246981, 359380, 229016, 69539, 118635, 100292], 141672),
    1990: ([203178, 375768, 276617, 74912, 86428], 141677),
    1991: ([395630, 260643, 167709, 270682], 142578),
    1992: ([207698, 174615, 162640], 143286),
    1993: ([167681, 280178], 138262),
    1994: ([215740], 121858),
}
AGES = [f"age{12 * (j + 1)}" for j in range(7)]


def triangle():
    rows = []
    for year, (paid, exposure) in PAID.items():
        for j, amount in enumerate(paid):
            row = {"paid": float(amount), **dict.fromkeys(AGES, 0.0)}
            row[AGES[j]] = float(exposure)
            rows.append(row)
    return pd.DataFrame(rows)


def constraint(variance):
    return pd.DataFrame([{"paid": 7.213, **dict.fromkeys(AGES, 1.0), "var": variance}])


def test_example_5_stochastic_versus_exact_constraint():
    """Exhibits 7-8 (lines 551-755): pure premiums by payout age whose sum is 7.213."""
    data = triangle().assign(var=1.0)
    near = mixed_estimation(data, "paid", AGES, variance="var", prior=constraint(1e-15))
    for value, d in zip(near.coef, [1.7803, 1.9421, 1.2630, 0.8632, 0.5421, 0.4669, 0.3553]):
        assert value == pytest.approx(d, abs=1e-3)  # printed 1.780 ... 0.407 (read 0.467, E17) 0.355
    assert near.df == 22
    assert near.sigma2 == pytest.approx(6.27159e9, rel=1e-3)
    assert near.residuals.iloc[-1] == pytest.approx(9.925e-7, rel=1e-3)
    exact = mixed_estimation(data, "paid", AGES, variance="var", prior=constraint(0.0))
    assert exact.coef.sum() == pytest.approx(7.213, abs=1e-12)
    np.testing.assert_allclose(exact.coef, near.coef, atol=1e-6)  # Appendix C: V -> 0 is the exact constraint
    assert exact.df == 22 and exact.sigma2 == pytest.approx(near.sigma2, rel=1e-6)
    loose = mixed_estimation(data, "paid", AGES, variance="var", prior=constraint(1.0))
    for value, d in zip(loose.coef, [1.7728, 1.9337, 1.2529, 0.8505, 0.5248, 0.4403, 0.2978]):
        assert value == pytest.approx(d, abs=1e-3)  # printed 1.773 1.954 (read 1.934, E17) ...
    diag = np.diag(loose.vcov.to_numpy())
    np.testing.assert_allclose(diag, [0.04739, 0.05338, 0.06377, 0.08061, 0.10917, 0.16789, 0.36325], rtol=1e-3)


# --------------------------------------------------------------------------- Example 6


def test_example_6_venter_states():
    """Exhibits 9-13 (lines 757-1077): Buhlmann structure by moments, the collective by GLS on
    the state means (X' Phi^-1 y printed "78.505", read 76.505, E17) and the posteriors."""
    v = bc.datasets.load("venter")
    structure = bc.credibility.buhlmann(v, group="state", response="loss").structure
    close(structure["within"], "0.3570")
    close(structure["between"], "0.0067")
    close(structure["k"], "53.332")
    means = v.groupby("state")["loss"].mean()
    for value, printed in zip(means, "0.801 0.800 0.419 0.140 0.815 0.617 0.714 0.206 0.554".split()):
        close(value, printed)
    phi = structure["between"] + structure["within"] / 6  # Var[v + e] of a state mean
    close(phi, "0.0662")
    close(structure["within"] / 6, "0.0595")
    gls = mixed_estimation(pd.DataFrame({"mean": means, "one": 1.0, "phi": phi}), "mean", ["one"], variance="phi",
                           sigma2=1.0)  # fmt: skip
    close((means / phi).sum(), "76.505")
    close(gls.coef["one"], "0.563")
    close(gls.vcov.iloc[0, 0], "0.0074")
    fit = credibility_given(v, "state", "loss", between=structure["between"], within=structure["within"])
    close(100 * fit.table["Z"].iloc[0], "10.1")
    assert fit.structure["collective"] == pytest.approx(gls.coef["one"], rel=1e-12)
    printed = "0.587 0.587 0.548 0.520 0.588 0.568 0.578 0.527 0.562".split()
    for value, p in zip(fit.table["premium"], printed):
        close(value, p)


# --------------------------------------------------------------------------- Example 7


def test_example_7_trend_credibility_with_given_structure():
    """Exhibits 14-20 (lines 1079-1410; REFERENCE-VALUES §7.7): moment V and sigma^2 given,
    collective estimated by GLS; BLUPs, the common credibility matrix and the PEV of the
    (intercept, slope) estimate, which the LMM API cannot express as a matrix. The moment V
    equals the REML D of this balanced design (§7.7), so it is taken unrounded from bc.lmm."""
    d = bc.datasets.load("halliwell_trend")
    reml = bc.lmm("loss_ratio ~ year + (1 + year|state)", d)
    V, sigma2 = reml.covariances[0], reml.sigma2
    np.testing.assert_allclose(V, [[0.0022195, -0.0002894], [-0.0002894, 0.0005208]], atol=5e-8)
    assert sigma2 == pytest.approx(0.00127583, rel=1e-5)
    fit = credibility_given(d, "state", "loss_ratio", regressors=["year"], between=V, within=sigma2)
    m = fit.structure["collective"]
    close(100 * m["(Intercept)"], "42.3")
    close(100 * m["year"], "2.7")
    assert m.to_numpy() == pytest.approx([0.423022, 0.027343], abs=2e-6)
    vm = fit.structure["collective_vcov"].to_numpy()
    np.testing.assert_allclose(vm, [[0.000369, -0.0000605], [-0.0000605, 0.0000660]], rtol=2e-3)
    np.testing.assert_allclose(fit.Z["A"], [[0.691524, 0.146858], [0.066635, 0.938318]], atol=2e-6)
    ints = [45.849, 40.586, 49.074, 42.806, 40.318, 41.825, 45.156, 37.149, 37.958]
    slopes = [5.854, 3.757, 2.146, 0.478, 5.672, 1.466, -0.373, 1.960, 3.649]
    np.testing.assert_allclose(100 * fit.table["(Intercept)"], ints, atol=1e-3)
    np.testing.assert_allclose(100 * fit.table["year"], slopes, atol=1e-3)
    # identity (Appendix E): the mean of the nine BLUPs is the collective
    assert fit.table[["(Intercept)", "year"]].mean().to_numpy() == pytest.approx(m.to_numpy(), rel=1e-10)
    # PEV of the (intercept, slope) estimate, D: [[0.000769, -0.000176], [., 0.000054]]
    np.testing.assert_allclose(fit.pev["A"], [[0.000769, -0.000176], [-0.000176, 0.000054]], rtol=1e-3, atol=5e-7)
    se = fit.coefficients.loc["A", "pev_sd"]
    close(100 * se["(Intercept)"], "2.77")
    close(100 * se["year"], "0.73")
    # the slope alone (x = (0, 1)) and the year-7 premium of state A, with their PEV SDs
    pred = fit.predict(pd.DataFrame({"state": ["A", "A", "new"], "year": [7.0, 7.0, 7.0]}))
    slope = credibility_given(d.assign(one=1.0), "state", "loss_ratio", regressors=["one", "year"], intercept=False,
                              between=V, within=sigma2)  # fmt: skip
    only_slope = slope.predict(pd.DataFrame({"state": ["A"], "one": [0.0], "year": [1.0]}))
    close(100 * only_slope["pev_sd"].iloc[0], "0.73")
    a = fit.coefficients.loc["A", "credibility"].to_numpy()
    assert pred["premium"].iloc[0] == pytest.approx(a[0] + 7 * a[1], rel=1e-12)
    x = np.array([1.0, 7.0])
    assert pred["pev_sd"].iloc[0] == pytest.approx(np.sqrt(x @ fit.pev["A"].to_numpy() @ x), rel=1e-12)
    assert pred["premium"].iloc[2] == pytest.approx(m.to_numpy() @ x, rel=1e-12)
    # "outside the range" cases: A slope and H slope move beyond the stand-alone estimate
    assert fit.coefficients.loc[("A", "year"), "credibility"] > fit.coefficients.loc[("A", "year"), "standalone"]


def test_example_7_agrees_with_the_lmm_at_its_reml_structure():
    """Given the REML structure of bc.lmm, the BLUPs and the diagonal PEVs are the LMM's."""
    d = bc.datasets.load("halliwell_trend")
    f = bc.lmm("loss_ratio ~ year + (1 + year|state)", d)
    V = f.covariances[0]
    fit = credibility_given(d, "state", "loss_ratio", regressors=["year"], between=V, within=f.sigma2)
    r = f.ranef()
    ints = f.fixef["(Intercept)"] + r[r.term == "(Intercept)"].value.to_numpy()
    np.testing.assert_allclose(fit.table["(Intercept)"], ints, rtol=1e-9)
    np.testing.assert_allclose(fit.structure["collective"], f.fixef.to_numpy(), rtol=1e-9)
    pred = f.predict(pd.DataFrame({"state": list("ABCDEFGHI"), "year": 0.0}))
    np.testing.assert_allclose(fit.coefficients.xs("(Intercept)", level="coef")["pev_sd"], pred.pev_sd, rtol=1e-7)


def test_errors_name_the_column():
    with pytest.raises(errors.MissingColumnError, match="'two'"):
        mixed_estimation(obs(EX1), "y", ["one", "two"])
    with pytest.raises(errors.DataError, match="'var'"):
        mixed_estimation(obs(EX1, -1.0), "y", ["one"], variance="var")
    with pytest.raises(errors.DataError, match="positive definite"):
        credibility_given(obs(EX1).assign(r=1), "r", "y", between=[[1.0, 0.0], [0.0, 1.0]], within=1.0)


R_LM = r"""
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "data.csv"))
out <- NULL
for (i in sort(unique(d$design))) {
  s <- d[d$design == i, ]
  m <- lm(y ~ 0 + x1 + x2 + x3, data = s, weights = 1 / phi)
  new <- data.frame(x1 = 1, x2 = 0.5, x3 = -1)
  p <- predict(m, new, se.fit = TRUE)
  out <- rbind(out, c(i, coef(m), summary(m)$sigma^2, diag(vcov(m)), p$fit, p$se.fit^2 + summary(m)$sigma^2 * 2))
}
write.csv(out, file.path(args[1], "out.csv"), row.names = FALSE)
"""


@pytest.mark.r
def test_mixed_estimation_is_weighted_lm_in_r(rscript, tmp_path):
    """Prior rows appended to the data are a weighted lm with weights 1/Phi: coefficients,
    sigma^2, Var[beta-hat] and the prediction-error variance of a new row with Phi22 = 2,
    against R on 10 random designs (one Rscript call)."""
    import subprocess

    rng = np.random.default_rng(3)
    frames = []
    for i in range(10):
        n = int(rng.integers(8, 30))
        X = rng.normal(size=(n + 2, 3))
        phi = rng.uniform(0.2, 3, n + 2)
        y = X @ [1.0, -0.5, 2.0] + rng.normal(size=n + 2) * np.sqrt(phi)
        frames.append(pd.DataFrame({"design": i, "y": y, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "phi": phi}))
    data = pd.concat(frames, ignore_index=True)
    data.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "lm.R").write_text(R_LM)
    res = subprocess.run([rscript, str(tmp_path / "lm.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "out.csv").to_numpy()
    cols = ["x1", "x2", "x3"]
    for i, s in data.groupby("design"):
        obs, prior = s.iloc[:-2], s.iloc[-2:]  # the last two rows enter as prior information
        fit = mixed_estimation(obs, "y", cols, variance="phi", prior=prior)
        new = pd.DataFrame({"x1": [1.0], "x2": [0.5], "x3": [-1.0], "phi": [2.0]})
        pred = fit.predict(new, variance="phi")
        mine = [*fit.coef, fit.sigma2, *np.diag(fit.vcov.to_numpy()), pred.prediction.iloc[0], pred.se.iloc[0] ** 2]
        np.testing.assert_allclose(mine, ref[i, 1:], rtol=1e-9)
