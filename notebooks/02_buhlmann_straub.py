# %% [markdown]
# # 02 · Bühlmann–Straub: three estimators on one portfolio
#
# The Bühlmann–Straub model lets each observation carry a weight (exposure, payroll, claim
# count): X_jt = m + Ξ_j + ε_jt with Var Ξ_j = τ² (the VHM, *between*) and
# Var ε_jt = σ²/w_jt (the EPV, *within*). The credibility premium of risk j is
# Z_j X̄_j + (1 − Z_j) X_z with Z_j = w_j / (w_j + k), k = σ²/τ² (seed
# `004_07f8365c92996b9b.txt`, eqs 3.14–3.23, lines 1100–1300).
#
# We fit it three ways on two portfolios:
#
# 1. the **simulated portfolio** of seed 004 (Listing 3.1, line 1152: J = 100 risks, T = 5
#    years, m = 80, τ² = 64, σ² = 100, weights 0.5–1.5) — many risks, so the variance
#    components are well determined;
# 2. the **Hachemeister data** (5 states, 12 quarters, claim counts as weights) treated as
#    Bühlmann–Straub — few risks, so they are not.
#
# For each: the classical moment estimators (unbiased and Bichsel–Straub iterative), REML
# (`bc.lmm`), the posterior (`bc.models.buhlmann_straub` + `bc.sample`), and the comparison
# (`bc.compare`) that shows how much the plug-in EBLUP understates each premium's uncertainty.
#
# Set `BAYESCRED_FAST=1` to run with short chains (as the test suite does).

# %%
import os

import numpy as np
import pandas as pd
from scipy import optimize

import bayescred as bc
from bayescred.report import plots
from bayescred import catalogue


FAST = os.environ.get("BAYESCRED_FAST") == "1"
DRAWS, TUNE, CHAINS = (300, 300, 2) if FAST else (2000, 1000, 4)
SEED = 20261121

# %% [markdown]
# ## 1. The simulated portfolio of seed 004
#
# The exact portfolio of Listing 3.1 (R's `set.seed(12094851)`) is the file
# `bs_simulated.csv` of the shared data folder; R's random stream cannot be replayed in numpy.
# Without the folder this notebook simulates a portfolio with the same generator
# (`bc.datasets.simulate.buhlmann_straub`, whose defaults are line 1152's parameters): the
# published numbers are then checked only where they hold for any portfolio.

# %%
try:
    raw = bc.datasets.load("bs_simulated")
    portfolio = pd.DataFrame({"risk": raw["risk"], "loss": raw["X.jt"], "weight": raw["W.jt"]})
    SHARED = True
except bc.errors.DatasetNotFoundError as missing:
    print(missing)
    portfolio = bc.datasets.simulate.buhlmann_straub(seed=SEED).data[["risk", "loss", "weight"]]
    SHARED = False
print("seed 004's portfolio" if SHARED else "a simulated portfolio", portfolio.shape)
portfolio.head()

# %% [markdown]
# ### Classical: the unbiased estimators and the iterative pseudo-estimator
#
# σ̂² is the weighted within-risk mean square (eq. 3.22), τ̂² the unbiased between-risk
# estimator (eq. 3.23); the collective X_z is the credibility-weighted mean. The iterative
# (Bichsel–Straub) pseudo-estimator replaces τ̂² by Σ Z_j (X̄_j − X_z)²/(J − 1) until it no
# longer moves.

# %%
unbiased = bc.credibility.buhlmann_straub(portfolio, group="risk", response="loss", weight="weight")
iterative = bc.credibility.buhlmann_straub(portfolio, group="risk", response="loss", weight="weight",
                                           method="iterative")
pd.DataFrame({"unbiased": unbiased.structure, "iterative": iterative.structure}).T[
    ["collective", "weighted_mean", "between", "within", "k"]]

# %%
if SHARED:
    s = unbiased.structure
    # seed 004, lines 1164 and 1297 (σ̂² = 104.6239; Table 4.1 line 2195 misprints 104.5239, erratum E1),
    # line 1176 (weighted mean 78.43628), lines 1195/1296 (τ̂² = 60.9652), line 1209 (X_z = 78.53833)
    assert round(s["within"], 4) == 104.6239
    assert round(s["weighted_mean"], 5) == 78.43628
    assert round(s["between"], 4) == 60.9652
    assert round(s["collective"], 5) == 78.53833
    # premiums of risks 1-20, seed 004 lines 1223-1270 (five decimals)
    printed = [67.41990, 74.65462, 82.37383, 81.77987, 75.53623, 84.26384, 80.16259, 71.72899, 95.02067,
               71.41841, 86.42743, 80.35881, 90.36646, 73.34605, 74.71319, 78.70976, 71.75083, 92.52850,
               72.31943, 69.29793]
    assert np.allclose(unbiased.table["premium"].iloc[:20], printed, atol=5e-6)
    # iterative: derived, REFERENCE-VALUES §4.3 (τ̂² = 61.1912, X_z = 78.53843)
    assert np.isclose(iterative.structure["between"], 61.1912, rtol=1e-5)
    assert np.isclose(iterative.structure["collective"], 78.53843, rtol=1e-5)
unbiased.table.head(20)

# %% [markdown]
# ### REML: the same model as a linear mixed model
#
# Bühlmann–Straub *is* the mixed model `loss ~ 1 + (1 | risk)` with precision weights
# (seed 004, `BS.mx`, lines 2162–2184). REML maximises the likelihood of the contrasts free of
# the collective; its τ̂² is close to, not equal to, the unbiased moment estimate.

# %%
reml = bc.lmm("loss ~ 1 + (1 | risk)", portfolio, weights="weight", method="REML")
print(f"REML criterion {reml.criterion:.2f}; collective {reml.fixef.iloc[0]:.4f} (SE {reml.fixef_se.iloc[0]:.4f})")
reml.varcorr

# %%
tau2_reml = float(reml.varcorr["vcov"].iloc[0])
if SHARED:
    # seed 004 lines 2162-2184 and Table 4.1 (lines 2190-2195); REFERENCE-VALUES §4.3 (derived optimum)
    assert np.isclose(tau2_reml, 61.1412, rtol=1e-4) and np.isclose(reml.sigma2, 104.6386, rtol=1e-4)
    assert np.isclose(reml.fixef.iloc[0], 78.5384, rtol=1e-5) and np.isclose(reml.fixef_se.iloc[0], 0.9083, atol=5e-5)
    assert abs(reml.criterion - 3901.42) < 0.005
# The EBLUP is the credibility premium at the REML components (exact identity, any portfolio)
at_reml = bc.credibility.buhlmann_straub(portfolio, group="risk", response="loss", weight="weight",
                                         between=tau2_reml, within=reml.sigma2)
eblup = reml.predict(pd.DataFrame({"risk": at_reml.table.index}))
assert np.allclose(eblup["premium"], at_reml.table["premium"], rtol=1e-8)
if SHARED:  # EBLUPs of risks 1-20, seed 004 lines 2214-2216 (three decimals)
    printed = [67.412, 74.652, 82.376, 81.782, 75.534, 84.268, 80.164, 71.724, 95.032, 71.414, 86.433, 80.360,
               90.375, 73.343, 74.710, 78.710, 71.746, 92.539, 72.314, 69.291]
    assert np.allclose(eblup["premium"].iloc[:20], printed, atol=5e-4)

# %% [markdown]
# ### The REML profile likelihood of the between-variance
#
# The EBLUP uses only the peak of this curve. With the risks' weighted means X̄_j, weights
# w_j, v_j = τ² + σ²/w_j and the pooled within sum of squares SSW, the REML criterion of
# Bühlmann–Straub is (FORMULAS.md §2, §8)
#
#   −2ℓ_R = Σ_j [(T_j − 1) log σ² − Σ_t log w_jt + log w_j + log v_j] + SSW/σ²
#           + Σ_j (X̄_j − m̂)²/v_j + log Σ_j 1/v_j + (N − 1) log 2π,
#
# with m̂ = Σ (X̄_j/v_j) / Σ (1/v_j). Profiling σ² out at each τ² gives the curve; we check
# the formula against `bc.lmm`'s criterion here, and below against the profile that
# the model's catalogue entry computes with the package's own engine.

# %%
def reml_profile(data, group, response, weight, grid):
    """Profiled REML criterion of Bühlmann–Straub at each between-variance in ``grid``."""
    g = data.groupby(group)
    w = g[weight].sum().to_numpy()
    xbar = (data[response] * data[weight]).groupby(data[group]).sum().to_numpy() / w
    T = g.size().to_numpy()
    dev = data[response] - data[group].map(pd.Series(xbar, index=g[weight].sum().index))
    ssw = float((data[weight] * dev**2).sum())
    fixed = -np.log(data[weight]).sum() + np.log(w).sum() + (len(data) - 1) * np.log(2 * np.pi)

    def crit(tau2, log_s2):
        s2 = np.exp(log_s2)
        v = tau2 + s2 / w
        m = np.sum(xbar / v) / np.sum(1 / v)
        return (fixed + (T - 1).sum() * log_s2 + np.log(v).sum() + ssw / s2
                + np.sum((xbar - m) ** 2 / v) + np.log(np.sum(1 / v)))

    s2_start = np.log(ssw / (T - 1).sum())
    out = [optimize.minimize_scalar(lambda ls: crit(t2, ls), bounds=(s2_start - 5, s2_start + 5),
                                    method="bounded", options={"xatol": 1e-10}).fun for t2 in grid]
    return pd.DataFrame({"value": grid, "deviance": out})


at_estimate = reml_profile(portfolio, "risk", "loss", "weight", [tau2_reml])["deviance"].iloc[0]
assert abs(at_estimate - reml.criterion) < 1e-4  # the formula is bc.lmm's criterion

# %% [markdown]
# ### Full Bayes
#
# `bc.models.buhlmann_straub` takes the classical function's data arguments; its default
# priors are weakly informative and scaled to the data (see its docstring). The risk effects
# are integrated out for sampling and drawn afterwards from their exact conditional
# distribution.

# %%
model_sim = bc.models.buhlmann_straub(portfolio, group="risk", response="loss", weight="weight")
post_sim = bc.sample(model_sim, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED)

# %% [markdown]
# ### Classical vs REML vs Bayes
#
# The catalogue entry of the model fits the mixed model that *is* Bühlmann–Straub
# (`y ~ 1 + (1 | risk)` with weights, by `bc.lmm`) and summarises each risk's EBLUP with its
# three uncertainty measures: (i) the conditional SD at the estimates (lme4's condVar),
# (ii) the prediction-error SD that also counts the collective's estimation error,
# (iii) the second-order MSE (Prasad–Rao) that also counts the variance components.

# %%
entry = catalogue.get("buhlmann_straub")
args_sim = {"group": "risk", "response": "loss", "weight": "weight"}
eb_sim = entry.eb(portfolio, args_sim)  # an LMMFit: bc.compare takes it as it is
print(entry.formula(args_sim))
cmp_sim = bc.compare(eb_sim, post_sim, classical=unbiased)
print("intervals:", cmp_sim.interval_label)
cmp_sim.variance_components

# %%
cmp_sim.premiums.head(10)

# %% [markdown]
# With 100 risks the variance components are pinned down, so the three EBLUP measures nearly
# coincide and the ratios posterior SD / EBLUP SD (median over risks) sit close to 1.

# %%
cmp_sim.understatement()

# %%
profile = cmp_sim.eb.extra["profile"]  # bc's profile of the between-variance (lmm.inference.profile_between)
mine = reml_profile(portfolio, "risk", "loss", "weight", profile["value"].to_numpy())
assert np.allclose(mine["deviance"], profile["deviance"], atol=1e-6)  # the formula above, point by point
assert profile["deviance"].min() >= reml.criterion - 1e-6  # and bc.lmm found the minimum
plots.between_vs_profile(cmp_sim, profile);

# %% [markdown]
# ## 2. Hachemeister's five states as Bühlmann–Straub
#
# Severity by state with the claim counts as weights (seed 004, Table 3.2, lines 1351–1366;
# seed `002_112bee5238c97912.txt`, `lmmBS`, lines 690–723). Five risks: the between-variance is
# almost unidentified (REFERENCE-VALUES §5.9: SE(τ̂²) = 52,593 against τ̂² = 64,849).

# %%
hach = bc.datasets.load("hachemeister")
args_h = {"group": "state", "response": "severity", "weight": "claims"}
hach_unbiased = bc.credibility.buhlmann_straub(hach, **args_h)
hach_iterative = bc.credibility.buhlmann_straub(hach, **args_h, method="iterative")
pd.DataFrame({"unbiased": hach_unbiased.structure, "iterative": hach_iterative.structure}).T[
    ["collective", "between", "within", "k"]]

# %%
# actuar cm() values, REFERENCE-VALUES §5.8 (derived; seed 002 mentions but does not print them)
assert np.isclose(hach_unbiased.structure["within"], 139_120_025.9, rtol=1e-7)
assert np.isclose(hach_unbiased.structure["between"], 89_638.726, rtol=1e-7)
assert np.isclose(hach_unbiased.structure["collective"], 1683.7134, rtol=1e-7)
assert np.allclose(hach_unbiased.table["Z"], [0.984740, 0.927635, 0.898475, 0.727909, 0.958791], atol=5e-7)
assert np.allclose(hach_unbiased.table["premium"], [2055.1654, 1523.7063, 1793.4436, 1442.9665, 1603.2854],
                   rtol=1e-7)
assert np.isclose(hach_iterative.structure["between"], 64_366.51, rtol=1e-6)
assert np.allclose(hach_iterative.table["premium"], [2053.0626, 1528.6346, 1789.9418, 1467.9773, 1604.8586],
                   rtol=1e-7)
pd.concat({"unbiased": hach_unbiased.table, "iterative": hach_iterative.table[["Z", "premium"]]}, axis=1)

# %% [markdown]
# REML with the raw claim counts as weights is lme4's `hachemeister_bs` record
# (REFERENCE-VALUES §5.7). Seed 002 prints τ² = 22.3 and σ² = 47,929 for the same model
# (lines 698–709): old lme4 rescaled the weights by their mean (erratum E7); its premiums agree.

# %%
eb_h = entry.eb(hach, args_h)
eb_h_summary = entry.eb_summary(eb_h, args_h, hach)
print(f"REML criterion {eb_h.criterion:.4f}")
eb_h.varcorr

# %%
# lme4 1.1-31 record hachemeister_bs (REFERENCE-VALUES §5.7; the surface is flat in τ²: rel 1e-3)
assert abs(eb_h.criterion - 847.156267727802) < 1e-4
assert np.isclose(eb_h_summary.components.loc["between", "estimate"], 64_849.04, rtol=1e-3)
assert np.isclose(eb_h.sigma2, 139_054_992.86, rtol=1e-4)
assert np.allclose(eb_h_summary.premiums["premium"], [2053.1205, 1528.4972, 1790.0321, 1467.3315, 1604.8135],
                   atol=0.05)
assert np.allclose(eb_h_summary.premiums["cond_sd"], [36.8686, 79.4318, 93.5789, 148.6110, 60.2911], rtol=1e-3)
# second-order SD sqrt(g1 + g2 + 2 g3), REFERENCE-VALUES §5.9 (derived, Prasad-Rao)
assert np.allclose(eb_h_summary.premiums["mse_sd"], [37.4850, 85.0347, 102.3193, 175.4965, 62.8706], rtol=1e-3)
eb_h_summary.premiums

# %%
model_h = bc.models.buhlmann_straub(hach, **args_h)
post_h = bc.sample(model_h, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED)
cmp_h = bc.compare(eb_h, post_h, classical=hach_unbiased)
print("intervals:", cmp_h.interval_label)
cmp_h.variance_components

# %%
cmp_h.premiums

# %%
cmp_h.credibility

# %% [markdown]
# Five states leave the between-variance wide open: its posterior spans an order of magnitude
# (table above). The EBLUP plugs in one value: measures (i) and (ii) ignore the spread, the
# second-order measure (iii) adds a first-order allowance for it. The ratio columns set each
# against the posterior SD; state 4 (the fewest claims, the lowest Z) leans most on the
# collective. The coverage study of notebook 06 asks which of them holds its nominal
# probability.

# %%
cmp_h.understatement()

# %%
profile_h = eb_h_summary.extra["profile"]
mine = reml_profile(hach, "state", "severity", "claims", profile_h["value"].to_numpy())
assert np.allclose(mine["deviance"], profile_h["deviance"], atol=1e-6)
assert profile_h["deviance"].min() >= eb_h.criterion - 1e-6
plots.between_vs_profile(cmp_h, profile_h);

# %%
plots.shrinkage(cmp_h, hach_unbiased.table["mean"], hach_unbiased.table["weight"]);

# %%
plots.forest(cmp_h);

# %%
plots.credibility_factors(cmp_h);

# %% [markdown]
# ## Diagnostics a reviewer asks for
#
# Both posteriors: no divergences, R-hat ≤ 1.01 and bulk ESS ≥ 400 at the full settings
# (`BAYESCRED_FAST=1` runs too few draws to meet the ESS rule); uniform rank plots.

# %%
from bayescred.report import diagnostics

HYPER = ["collective", "between", "within"]
pd.DataFrame({"simulated portfolio": diagnostics.health(post_sim, HYPER),
              "Hachemeister (BS)": diagnostics.health(post_h, HYPER)})

# %%
diagnostics.summary(post_h, HYPER + ["Z"])

# %%
pd.concat({"simulated portfolio": pd.concat([diagnostics.divergences(post_sim), diagnostics.bfmi(post_sim)], axis=1),
           "Hachemeister (BS)": pd.concat([diagnostics.divergences(post_h), diagnostics.bfmi(post_h)], axis=1)})

# %%
import arviz_plots as azp

azp.plot_rank(post_sim, var_names=HYPER, backend="matplotlib");

# %%
azp.plot_rank(post_h, var_names=HYPER, backend="matplotlib");
