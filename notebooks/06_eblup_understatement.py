# %% [markdown]
# # 06 · How much does the EBLUP understate its uncertainty?
#
# The empirical-Bayes premium (the EBLUP, i.e. the credibility premium at estimated
# variance components) comes with standard errors of three grades (FORMULAS.md §9; seed
# `002_112bee5238c97912.txt` §2.3):
#
# * (i) the **conditional SD** at the estimates — lme4's `condVar`, the posterior SD with
#   every parameter known;
# * (ii) the **prediction-error SD** that also counts the estimated collective (Henderson);
# * (iii) the **second-order MSE** that also counts the estimated variance components
#   (Prasad–Rao / Datta–Lahiri; Booth–Hobert for Poisson–gamma).
#
# The full-Bayes posterior SD counts everything the model knows it does not know. This
# notebook asks two questions:
#
# 1. **Coverage.** Simulating portfolios from known hyperparameters, how often does a
#    nominal 90 % interval for a risk's premium contain the true premium — for each EBLUP
#    measure and for the posterior? With few risks the variance components are poorly
#    determined; the hypothesis is that (i) and (ii) then under-cover. We report what we
#    measure.
# 2. **Size.** On single portfolios, the ratio posterior SD / EBLUP SD per risk from
#    `bc.compare`, and how it changes with the number of risks.
#
# The full study (J = 5, 10, 30, 100; hundreds of replicates) is `benchmarks/coverage_study.py`,
# published in `benchmarks/RESULTS.md` and the README. Here it runs at a size that fits a
# notebook; `BAYESCRED_FAST=1` (the test suite) makes it tiny, so its Monte Carlo errors are
# large — read the MC SE column before reading anything into the numbers.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayescred as bc
from bayescred.studies import coverage

FAST = os.environ.get("BAYESCRED_FAST") == "1"
SEED = 20260006
# (model, settings) runs of the study; a result for one J does not depend on the other J asked for
if FAST:  # a smoke-sized study: the Bayesian arm only for Bühlmann–Straub with 5 risks
    PLAN = [("buhlmann_straub", dict(n_risks=5, replicates=20, bayes_replicates=3)),
            ("buhlmann_straub", dict(n_risks=10, replicates=20, bayes=False)),
            ("hachemeister", dict(n_risks=(5, 10), replicates=10, bayes=False)),
            ("poisson_gamma", dict(n_risks=(5, 10, 30), replicates=20, bayes=False))]
    SAMPLER = dict(draws=200, tune=200, chains=2)
    RATIO_SIZES = (5,)
else:
    PLAN = [("buhlmann_straub", dict(n_risks=(5, 10, 30, 100), replicates=200, bayes_replicates=20)),
            ("hachemeister", dict(n_risks=(5, 10, 30, 100), replicates=100, bayes_replicates=10)),
            ("poisson_gamma", dict(n_risks=(5, 10, 30, 100), replicates=200, bayes_replicates=20))]
    SAMPLER = dict(draws=500, tune=500, chains=2)
    RATIO_SIZES = (5, 10, 30, 100)
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. The coverage study
#
# Each replicate simulates a portfolio (`bc.datasets.simulate`), fits it, and checks for
# every risk whether its interval contains the true premium:
#
# * **Bühlmann–Straub**: the generator of seed `004_07f8365c92996b9b.txt` (Listing 3.1,
#   line 1152: m = 80, τ² = 64, σ² = 100, T = 5, weights 0.5–1.5); target the risk mean;
# * **Hachemeister**: intercept and trend per risk, T = 12; target the next period's premium;
# * **Poisson–gamma**: frequency 0.1, Var u = 0.4, T = 5; target the claim frequency.
#
# A replicate's coverage is the share of its risks covered; the Monte Carlo SE comes from
# the spread of those shares over replicates (the risks of one portfolio share their
# estimated parameters, so they are not independent). The posterior arm runs on the first
# replicates of the same portfolios.

# %%
tables = [coverage.coverage_study(model, seed=SEED, **plan, **SAMPLER) for model, plan in PLAN]
study = pd.concat(tables, ignore_index=True)
study["coverage ± MC SE"] = [f"{c:.3f} ± {s:.3f}" for c, s in zip(study["coverage"], study["mc_se"])]
study.pivot_table(index=["model", "n_risks"], columns="method", values="coverage ± MC SE", aggfunc="first",
                  sort=False)

# %% [markdown]
# The same table with the mean interval widths (an interval can cover more by being wider),
# the share of replicates whose EB fit put a variance on its boundary (0: there (i) and (ii)
# collapse to the collective's uncertainty), the share of intervals that could not be formed
# (for Poisson–gamma at λ̂ = 0 the delta-method SD (iii) is undefined; such an interval counts
# as a miss) with the coverage among the defined ones, and the posterior arm's divergences.

# %%
study[["model", "n_risks", "method", "coverage", "mc_se", "width", "replicates", "boundary", "undefined",
       "coverage_defined", "divergences"]].round(3)

# %%
coverage.plot_coverage(study);

# %%
# The harness is what it says: every method's coverage is a share, every MC SE is the replicate-level
# one, and the number of replicates is what was asked for.
assert study["coverage"].between(0, 1).all() and (study["mc_se"] >= 0).all()
bs_plan = PLAN[0][1]
bs = study[study["model"] == "buhlmann_straub"]
assert (bs.loc[bs["method"] != coverage.BAYES_METHOD, "replicates"] == bs_plan["replicates"]).all()
assert (bs.loc[bs["method"] == coverage.BAYES_METHOD, "replicates"] == bs_plan["bayes_replicates"]).all()

# %% [markdown]
# ## 2. Posterior SD against the EBLUP's SDs, risk by risk
#
# One simulated Bühlmann–Straub portfolio per number of risks J (same hyperparameters as
# above), fitted three ways and compared with `bc.compare`. The ratio posterior SD / EBLUP SD
# is the factor by which the plug-in understates (> 1) or overstates (< 1) a premium's
# uncertainty. Plotted against each risk's credibility factor Z: risks with little own
# experience lean most on the estimated collective and between-variance.

# %%
ARGS = {"group": "risk", "response": "loss", "weight": "weight"}
comparisons = {}
for J in RATIO_SIZES:
    portfolio = bc.datasets.simulate.buhlmann_straub(J, seed=SEED + J).data
    classical = bc.credibility.buhlmann_straub(portfolio, **ARGS)
    eb = bc.lmm("loss ~ 1 + (1 | risk)", portfolio, weights="weight")  # Bühlmann–Straub as a mixed model
    posterior = bc.sample(bc.models.buhlmann_straub(portfolio, **ARGS), random_seed=SEED + J,
                          draws=SAMPLER["draws"] + 100, tune=SAMPLER["tune"] + 100, chains=SAMPLER["chains"])
    comparisons[J] = bc.compare(eb, posterior, classical=classical)

ratios = pd.concat({J: c.premiums.join(c.credibility[["reml"]].rename(columns={"reml": "Z"}))
                    for J, c in comparisons.items()}, names=["J"])
ratio_cols = ["sd_ratio_cond_sd", "sd_ratio_pev_sd", "sd_ratio_mse_sd"]
ratios.groupby("J")[ratio_cols].median().rename(columns=lambda c: "median " + c.replace("sd_ratio_", "post SD / "))

# %%
ratios[["Z", "eblup", "cond_sd", "pev_sd", "mse_sd", "post_mean", "post_sd", *ratio_cols]].round(3).head(10)

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, col, title in zip(axes, ratio_cols, ["(i) conditional SD", "(ii) PEV SD", "(iii) second-order SD"]):
    for J, part in ratios.groupby("J"):
        ax.scatter(part["Z"], part[col], s=12, label=f"J = {J}")
    ax.axhline(1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("credibility factor Z (REML)")
    ax.set_title(f"posterior SD / {title}")
axes[0].set_ylabel("ratio")
axes[-1].legend(fontsize=8)
fig.tight_layout();

# %%
# compare() is consistent with its inputs: the ratios are the posterior SD over each EBLUP measure
for c in comparisons.values():
    p = c.premiums
    assert np.allclose(p["sd_ratio_cond_sd"], p["post_sd"] / p["cond_sd"])
    assert (p["cond_sd"] <= p["pev_sd"] + 1e-9).all() and (p["pev_sd"] <= p["mse_sd"] + 1e-9).all()  # nested

# %% [markdown]
# ## Diagnostics a reviewer asks for
#
# For the posteriors of section 2: no divergences, R-hat ≤ 1.01, bulk ESS ≥ 400 at the full
# settings (`BAYESCRED_FAST=1` runs too few draws to meet the ESS rule), E-BFMI above 0.3,
# uniform rank plots. The coverage study records the divergences of its posterior arm per
# replicate (column `divergences` of `coverage.coverage_replicates`).

# %%
from bayescred.report import diagnostics

HYPER = ["collective", "between", "within"]
pd.DataFrame({f"J = {J}": diagnostics.health(c.posterior, HYPER) for J, c in comparisons.items()})

# %%
last = comparisons[RATIO_SIZES[-1]].posterior
diagnostics.summary(last, HYPER)

# %%
pd.concat([diagnostics.divergences(last), diagnostics.bfmi(last)], axis=1)

# %%
import arviz_plots as azp

azp.plot_rank(last, var_names=HYPER, backend="matplotlib");
