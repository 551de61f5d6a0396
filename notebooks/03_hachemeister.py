# %% [markdown]
# # 03 · Hachemeister: regression credibility, its anomaly, and the mixed model behind it
#
# Hachemeister's model gives every state its own claim-severity trend,
# X_jt = β_0j + β_1j t + ε_jt with Var ε_jt = σ²/w_jt (claim counts as weights), and shrinks
# each state's (intercept, slope) towards the portfolio's by a **credibility matrix**
# A_j = U (U + σ² M_j⁻¹)⁻¹, M_j = Q_j′W_jQ_j, U = Cov(β_j) (seed `004_07f8365c92996b9b.txt`,
# eqs 3.24–3.32, lines 1500–1880):
#
#   credibility estimate CW_j = A_j B_j + (I − A_j) B_GLS,  B_GLS = (Σ A_j)⁻¹ Σ A_j B_j.
#
# This notebook reproduces Tables 3.4–3.6 (three choices of the time origin), shows the
# state-4 anomaly, fits the same model as the linear mixed models `hm.mixed.1–3` of seed 004
# (§4.3, lines 2700–2990), and finally samples its posterior, where the credibility matrices
# and the random-effect ellipses of Figure 4.9 become distributions.
#
# Set `BAYESCRED_FAST=1` to run with short chains (as the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

import bayescred as bc

FAST = os.environ.get("BAYESCRED_FAST") == "1"
DRAWS, TUNE, CHAINS = (300, 300, 2) if FAST else (2000, 1000, 4)
SEED = 20261121
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. Data: five states, twelve quarters
#
# Private passenger auto bodily-injury severity, 3Q 1970 – 2Q 1973, seed 004 Table 3.2
# (lines 1351–1366). `period` runs 1..12; `claims` is the weight.

# %%
hach = bc.datasets.load("hachemeister")
args = dict(group="state", time="period", response="severity", weight="claims")
hach.pivot(index="period", columns="state", values="severity").round(0).T

# %% [markdown]
# ## 2. Table 3.4: time measured from the origin
#
# The structure parameters are Bühlmann–Gisler's unbiased estimators (eqs 3.28–3.32):
# σ̂² = 4.9870187·10⁷, τ̂₀² = 18,029.435, τ̂₁² = 665.5618 (seed 004, line 1704, where the
# second τ̂₀² is a misprint for τ̂₁²: erratum E2).

# %%
origin = bc.credibility.hachemeister(hach, **args, centering="origin")
print(origin.structure["between"], "\nwithin", origin.structure["within"])
origin.coefficients.round(4)

# %%
# seed 004 line 1704 (REFERENCE-VALUES §5.3): rel 1e-7 on the unrounded values, R for tau1
assert np.isclose(origin.structure["within"], 49_870_186.917, rtol=1e-7)
assert np.isclose(origin.structure["between"].loc["intercept", "intercept"], 18_029.43507, rtol=1e-7)
assert round(origin.structure["between"].loc["slope", "slope"], 4) == 665.5618
# Table 3.4, seed 004 lines 1766-1775: A (4 decimals), stand-alone / credibility / collective (2 decimals)
table34 = {
    "A_intercept": [0.8946, 0.0125, 0.6583, 0.0380, 0.6029, 0.0437, 0.3930, 0.0545, 0.7658, 0.0267],
    "A_slope": [0.3389, 0.9460, 1.0286, 0.8222, 1.1851, 0.7740, 1.4753, 0.6122, 0.7245, 0.8812],
    "standalone": [1658.47, 62.39, 1398.30, 17.14, 1533.00, 43.31, 1176.70, 27.81, 1521.90, 11.87],
    "credibility": [1652.61, 62.63, 1419.30, 15.57, 1535.05, 41.73, 1368.48, 10.93, 1503.30, 14.62],
    "collective": [1495.75, 29.09] * 5,
}


def check_table(fit, printed):
    """Every printed entry is the fit's value rounded to the printed digits (tolerance R)."""
    for column, values in printed.items():
        digits = 4 if column.startswith("A_") else 2
        got = fit.coefficients[column].to_numpy()
        assert np.all(np.abs(got - np.array(values)) <= 0.5 * 10.0**-digits + 1e-9), (column, got.round(digits))


check_table(origin, table34)

# %% [markdown]
# ### The state-4 anomaly
#
# State 4 has few claims (4,152 of 174,047). Its credibility **slope** 10.93 lies below both
# its own stand-alone slope 27.81 and the collective slope 29.09: the credibility estimate is
# not between the two estimates it is supposed to mix. The cause is the off-diagonal entry
# of A_4 (1.4753 in the first row): with time measured from the origin, the intercept and the
# slope estimates of a state are strongly correlated, and the credibility matrix borrows
# the intercept's deviation into the slope.

# %%
state4 = origin.coefficients.loc[4]
print(state4[["standalone", "credibility", "collective"]])
assert state4.loc["slope", "credibility"] < min(state4.loc["slope", "standalone"], state4.loc["slope", "collective"])
assert origin.table.loc[4, "outside_slope"]
origin.table[["B_slope", "cred_slope", "outside_intercept", "outside_slope"]]

# %% [markdown]
# ## 3. Tables 3.5 and 3.6: centring time removes the anomaly
#
# Measuring time from a centre of gravity Σ w t / Σ w makes the intercept and slope of a
# state (nearly) uncorrelated: A_j becomes (nearly) diagonal. Table 3.5 centres at the
# portfolio's centre of gravity 6.474895 (printed 6.475, line 1836), Table 3.6 at each state's
# own (lines 1863–1872).
#
# **An undocumented convention (erratum E5).** The printed tables keep the between-variances
# estimated on *un-centred* time (τ̂₀² = 18,029.4) while σ̂² and B_j use centred time. τ̂₁² and
# σ̂² do not depend on the origin, but τ̂₀² does: it is the variance of the intercepts at
# t = 0, far from the data. `tau_estimated_on="uncentred"` reproduces the book;
# `"centred"` (the default) re-estimates τ̂₀² where the intercepts now live.

# %%
glob = bc.credibility.hachemeister(hach, **args, centering="global", tau_estimated_on="uncentred")
group = bc.credibility.hachemeister(hach, **args, centering="group", tau_estimated_on="uncentred")
assert abs(glob.centre.iloc[0] - 6.474895) < 5e-7  # the unrounded global centre of gravity (REFERENCE-VALUES §5.1)
# Table 3.5, seed 004 lines 1844-1853
check_table(glob, {
    "A_intercept": [0.9731, -0.0001, 0.8779, 0.0009, 0.8321, -0.0017, 0.6000, -0.0018, 0.9288, 0.0004],
    "A_slope": [-0.0014, 0.9413, 0.0236, 0.7629, -0.0454, 0.6881, -0.0483, 0.4079, 0.0118, 0.8559],
    "standalone": [2062.46, 62.39, 1509.28, 17.14, 1813.41, 43.31, 1356.75, 27.81, 1598.79, 11.87],
    "credibility": [2052.54, 60.69, 1531.57, 20.91, 1793.09, 40.12, 1492.32, 31.91, 1605.38, 14.98],
    "collective": [1694.98, 33.72] * 5,
})
# Table 3.6, seed 004 lines 1863-1872
check_table(group, {
    "A_intercept": [0.9731, 0.0, 0.8779, 0.0, 0.8324, 0.0, 0.6002, 0.0, 0.9288, 0.0],
    "A_slope": [0.0, 0.9413, 0.0, 0.7628, 0.0, 0.6880, 0.0, 0.4077, 0.0, 0.8559],
    "standalone": [2060.92, 62.39, 1511.22, 17.14, 1805.84, 43.31, 1352.98, 27.81, 1599.83, 11.87],
    "credibility": [2051.04, 60.71, 1533.46, 21.06, 1787.00, 40.30, 1489.09, 31.28, 1606.49, 15.02],
    "collective": [1693.42, 33.67] * 5,
})
pd.concat({"origin (3.4)": origin.coefficients["credibility"], "global CG (3.5)": glob.coefficients["credibility"],
           "state CG (3.6)": group.coefficients["credibility"], "stand-alone": origin.coefficients["standalone"]},
          axis=1).unstack("coef").round(2)

# %% [markdown]
# With centred time no credibility slope leaves the interval between its stand-alone and
# collective values. Re-estimating τ̂₀² on the centred design (the consistent choice) gives
# τ̂₀² = 93,024 instead of 18,029 and intercept factors close to 1 (REFERENCE-VALUES §5.5,
# derived): the book's convention, not the estimator, drives most of the gap between
# Table 3.6 and the mixed model below.

# %%
assert not group.table[["outside_slope"]].to_numpy().any()
consistent = bc.credibility.hachemeister(hach, **args, centering="group", tau_estimated_on="centred")
assert np.isclose(consistent.structure["between"].loc["intercept", "intercept"], 93_023.760, rtol=1e-6)
assert np.allclose(consistent.structure["collective"], [1673.135, 33.673], atol=5e-4)
pd.DataFrame({"book (E5)": group.table["A_intercept"], "re-estimated": consistent.table["A_intercept"]}).round(4)

# %% [markdown]
# ## 4. The same model as a linear mixed model (seed 004 §4.3)
#
# Seed 004 fits `lmer` with weights claims/1000; we pass the claim counts themselves, which
# multiplies the residual variance by 1000 and changes nothing else (erratum E14).
#
# * `hm.mixed.1`: `severity ~ period + (period | state)`, correlated intercept and slope —
#   a **singular** fit, correlation +1 (lines 2718–2773; erratum E6);
# * `hm.mixed.2`: `(1 | state) + (0 + period | state)`, independent effects (lines 2781–2849);
# * `hm.mixed.3`: the same with time centred at each state's centre of gravity
#   (lines 2860–2905) — the mixed-model twin of Table 3.6.

# %%
import warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mixed1 = bc.lmm("severity ~ period + (period | state)", hach, weights="claims")
print("hm.mixed.1 singular:", mixed1.singular, "|", [str(w.message) for w in caught])
assert mixed1.singular  # REFERENCE-VALUES E6: eigen(D) = (12,543.32, ~0)
assert abs(mixed1.criterion - 782.4041) < 0.01  # line 2718 prints 782.4
mixed1.varcorr

# %%
mixed2 = bc.lmm("severity ~ period + (1 | state) + (0 + period | state)", hach, weights="claims")
vc2 = mixed2.varcorr.set_index(["grp", "var1"])["vcov"]
# seed 004 lines 2790-2826; the derived optimum of REFERENCE-VALUES §5.6 (rel 1e-3 on a flat surface)
assert abs(mixed2.criterion - 785.49695) < 0.01
assert np.isclose(vc2.loc[("state", "(Intercept)")], 19_907.42, rtol=1e-3)
assert np.isclose(vc2.loc[("state.1", "period")], 605.118, rtol=1e-3)
assert np.isclose(mixed2.sigma2 / 1000, 48_723.76, rtol=1e-4)  # E14: x 1000 with weights = claims
assert np.allclose(mixed2.fixef, [1491.998, 29.5503], atol=0.01)
mixed2.varcorr

# %%
centre = hach.groupby("state").apply(lambda g: np.average(g["period"], weights=g["claims"]), include_groups=False)
hach_c = hach.assign(ctime=hach["period"] - hach["state"].map(centre))
mixed3 = bc.lmm("severity ~ ctime + (1 | state) + (0 + ctime | state)", hach_c, weights="claims")
vc3 = mixed3.varcorr.set_index(["grp", "var1"])["vcov"]
# seed 004 lines 2882-2903 (printed D = diag(70,838.77, 446.39) on a flat surface: rel 1e-3),
# REFERENCE-VALUES §5.6 derived optimum and criterion
assert abs(mixed3.criterion - 788.59935) < 1e-3
assert np.isclose(vc3.loc[("state", "(Intercept)")], 70_838.8, rtol=1e-3)
assert np.isclose(vc3.loc[("state.1", "ctime")], 446.4, rtol=1e-3)
assert np.allclose(mixed3.fixef, [1674.96, 34.09], atol=0.02)
# SEs: printed 122.12, 11.59 at the printed D; at the optimum (D 70,863.8 on the flat surface) they
# move by 0.02, so rel 1e-3 rather than the printed rounding
assert np.allclose(mixed3.fixef_se, [122.12, 11.59], rtol=1e-3)
mixed3.varcorr

# %% [markdown]
# The conditional modes of `hm.mixed.3` and their uncertainty, in three grades: (i) the
# conditional SD with β and the variances known (lme4's `condVar`), (ii) the prediction-error
# SD that also counts β̂, (iii) the second-order SD that also counts the variances. With five
# states the collective intercept is very uncertain (SE 122), so (ii) is 1.4–5.6 times (i)
# for the intercepts (REFERENCE-VALUES §5.6).

# %%
ranef3 = mixed3.ranef()
# REFERENCE-VALUES §5.6 (derived at the hm.mixed.3 optimum): cond. SD and PEV SD, rel 1e-3
cond = ranef3.pivot(index="level", columns="term", values="cond_sd")
pev = ranef3.pivot(index="level", columns="term", values="pev_sd")
assert np.allclose(cond["(Intercept)"], [22.047, 48.796, 58.290, 100.598, 36.496], rtol=1e-3)
assert np.allclose(cond["ctime"], [6.116, 11.821, 13.350, 17.429, 9.401], rtol=1e-3)
assert np.allclose(pev["(Intercept)"], [123.292, 127.727, 130.077, 145.196, 125.280], rtol=1e-3)
assert np.allclose(pev["ctime"], [12.251, 14.251, 15.056, 17.818, 13.219], rtol=1e-3)
modes = ranef3.pivot(index="level", columns="term", values="value")
totals = modes + mixed3.fixef.to_numpy()
# EBLUP totals beta + u (REFERENCE-VALUES §5.6, derived; hglm prints the same to 0.01, line 3197)
assert np.allclose(totals["(Intercept)"], [2058.274, 1516.725, 1799.567, 1398.957, 1601.241], atol=0.05)
assert np.allclose(totals["ctime"], [60.022, 22.445, 39.628, 32.081, 16.272], atol=0.05)
ranef3.round(3)

# %% [markdown]
# ### Figure 4.9: the random effects and their Mahalanobis ellipses
#
# Under the model the state effects (u₀, u₁) are N(0, D). Points at Mahalanobis distance d
# from the origin form an ellipse; in two dimensions d² ~ χ²₂, so the 68 % and 95 % ellipses
# sit at d = √χ²₂(0.68) = 1.509592 and √χ²₂(0.95) = 2.447747 (seed 004, lines 2979–2987), not
# at 1 and 2 as in one dimension.

# %%
radii = np.sqrt(stats.chi2.ppf([0.68, 0.95], df=2))
assert np.allclose(radii, [1.509592, 2.447747], atol=5e-7)  # seed 004 line 2987
D3 = np.diag([vc3.loc[("state", "(Intercept)")], vc3.loc[("state.1", "ctime")]])


from bayescred.report.plots import ellipse  # points x with x' D^-1 x = radius^2


fig, ax = plt.subplots(figsize=(6, 4.5))
for r, p in zip(radii, (68, 95)):
    x, y = ellipse(D3, r)
    ax.plot(x, y, color="k", lw=1, ls="-" if p == 68 else "--", label=f"{p}% ellipse of D̂ (REML)")
ax.scatter(modes["(Intercept)"], modes["ctime"], color="tab:red", zorder=3, label="conditional modes")
for state, row in modes.iterrows():
    ax.annotate(f"state {state}", (row["(Intercept)"], row["ctime"]), xytext=(4, 4), textcoords="offset points")
ax.set_xlabel("intercept effect u₀ (at the state's centre of gravity)")
ax.set_ylabel("trend effect u₁")
ax.set_title("hm.mixed.3: random effects (seed 004 Figure 4.9)")
ax.legend(fontsize=8, loc="lower right");

# %%
d2 = np.einsum("ja,ab,jb->j", modes.to_numpy(), np.linalg.inv(D3), modes.to_numpy())
pd.Series(np.sqrt(d2), index=modes.index, name="Mahalanobis distance").round(3)

# %% [markdown]
# ## 5. Full Bayes: the credibility matrices as distributions
#
# `bc.models.hachemeister` takes the classical function's data arguments. Its U is diagonal by
# default (`structure="diagonal"`), as in the classical fit above and in `hm.mixed.3`: one model
# in all three arms. `structure="correlated"` gives a full 2 × 2 U with an LKJ(2) prior on the
# correlation, which keeps the correlation off ±1 — the boundary where `hm.mixed.1` got stuck —
# without ruling it out (the classical fit then uses the unbiased estimator of the full U,
# and the mixed model `(1 + ctime | state)`). Time is centred at each state's centre of
# gravity, as in Table 3.6 and `hm.mixed.3`.

# %%
model = bc.models.hachemeister(hach, **args, centering="group")
posterior = bc.sample(model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED)

# %% [markdown]
# The posterior mean of each credibility matrix A_j against the book's (Table 3.6) and the
# plug-in of `hm.mixed.3`. The book's intercept factors are low because of its convention E5
# (τ̂₀² from un-centred time); at the centres of gravity the REML plug-in and the posterior
# both put the intercept factors closer to 1. With time centred at each state's centre of
# gravity the weighted cross-product Σ w ctime of every state is 0, so with a diagonal U each
# A_j is diagonal too: the off-diagonal column is 0 up to rounding (under
# `structure="correlated"` it would say how much the other coefficient's own deviation moves
# this one's credibility estimate).

# %%
A_post = posterior["posterior"]["A"].mean(("chain", "draw"))
M = [np.array([[g["claims"].sum(), (g["claims"] * g["ctime"]).sum()],
               [(g["claims"] * g["ctime"]).sum(), (g["claims"] * g["ctime"] ** 2).sum()]]) for _, g in hach_c.groupby("state")]
A_reml = np.array([D3 @ np.linalg.inv(D3 + mixed3.sigma2 * np.linalg.inv(m)) for m in M])  # A_j at the REML D̂
rows = []
for j, state in enumerate(group.table.index):
    for c, coef in enumerate(["intercept", "slope"]):
        rows.append({"state": state, "coef": coef, "book (Table 3.6)": group.A[j, c, c],
                     "REML plug-in (hm.mixed.3)": A_reml[j, c, c],
                     "posterior mean": float(A_post.isel(state=j, coef=c, coef_=c)),
                     "posterior off-diagonal": float(A_post.isel(state=j, coef=c, coef_=1 - c))})
pd.DataFrame(rows).set_index(["state", "coef"]).round(4)

# %% [markdown]
# ### Premiums for the next quarter: classical, EBLUP and posterior
#
# The model's catalogue entry fits `hm.mixed.3` (the mixed model of Hachemeister's model, with
# the same covariance structure as the classical fit and the factory) and `bc.compare` predicts
# period 13 with the three uncertainty measures beside the posterior.

# %%
from bayescred import catalogue

entry = catalogue.get("hachemeister")
eb_args = {**args, "centering": "group"}
eb = entry.eb(hach, eb_args)
print(entry.formula(eb_args), "--", entry.structure(eb_args))
cmp = bc.compare(eb, posterior, classical=group, arguments=eb_args)
eb_summary = cmp.eb
print("intervals:", cmp.interval_label)
cmp.premiums.round(2)

# %%
cmp.understatement()

# %%
from bayescred.report import plots


plots.forest(cmp);

# %% [markdown]
# ### The random-effect ellipses, averaged over U
#
# The same picture as Figure 4.9, now with the posterior: the state effects' posterior
# draws (clouds), their posterior means, and the 68 % / 95 % ellipses of the posterior mean
# of U next to those of the REML D̂.

# %%
plots.random_effect_ellipses(posterior, eb_cov=D3);

# %% [markdown]
# ## Diagnostics a reviewer asks for
#
# No divergences, R-hat ≤ 1.01, bulk ESS ≥ 400 at the full settings (`BAYESCRED_FAST=1` runs
# too few draws to meet the ESS rule), E-BFMI above 0.3, uniform rank plots.

# %%
from bayescred.report import diagnostics

HYPER = ["collective", "between_sd", "within"]
diagnostics.health(posterior, HYPER)

# %%
diagnostics.summary(posterior, HYPER)

# %%
pd.concat([diagnostics.divergences(posterior), diagnostics.bfmi(posterior)], axis=1)

# %%
import arviz_plots as azp

azp.plot_rank(posterior, var_names=HYPER, backend="matplotlib");
