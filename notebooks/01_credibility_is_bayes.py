# %% [markdown]
# # 01 · Credibility is Bayes: from the exam flashcards to full posteriors
#
# A credibility premium is a posterior mean. This notebook walks the link in four steps,
# in the actuary's language, with the numbers of the sources:
#
# 1. the worked examples of the Exam MAS-II flashcards (seed `000_5e44464b038263f5.txt`):
#    Z = n / (n + k) with k = EPV / VHM;
# 2. the same numbers as a **normal–normal posterior with known variances** (Halliwell,
#    seed `003_74058930f1b144d2.txt`, Appendix B: a prior is one more observation);
# 3. Bühlmann's balanced example, Table 3.1 of Schirmacher (seed `004_07f8365c92996b9b.txt`):
#    moments, REML and ML;
# 4. what changes when the variances are **unknown**: empirical Bayes plugs in estimates,
#    full Bayes averages over them.
#
# Set `BAYESCRED_FAST=1` to run with short chains (as the test suite does).

# %%
import os

import numpy as np
import pandas as pd

import bayescred as bc

FAST = os.environ.get("BAYESCRED_FAST") == "1"
DRAWS, TUNE, CHAINS = (300, 300, 2) if FAST else (2000, 1000, 4)
SEED = 20261121

# %% [markdown]
# ## 1. The flashcards: Z = n / (n + k)
#
# Card 35 (line 35 of seed 000): collective β₀ = 1000, VHM σ_u² = 200, EPV σ_e² = 5400,
# n = 3 observations averaging ȳ = 1300. Then k = 5400 / 200 = 27, Z = 3 / 30 = 0.1 and the
# credibility estimate is 0.1 · 1300 + 0.9 · 1000 = 1030.

# %%
def credibility(beta0, vhm, epv, n, ybar):
    k = epv / vhm
    Z = n / (n + k)
    return {"k": k, "Z": Z, "premium": Z * ybar + (1 - Z) * beta0}


cards = pd.DataFrame(
    [
        ("card 33", 200, 900, 3600, 4, 260),
        ("card 35", 1000, 200, 5400, 3, 1300),
        ("card 36", 50, 16, 64, 24, 62),
        ("card 37", 500, 1200, 4800, 8, 650),
        ("card 47", 40, 50, 200, 5, 70),
    ],
    columns=["card", "beta0", "vhm", "epv", "n", "ybar"],
).set_index("card")
cards = cards.join(pd.DataFrame([credibility(*row) for row in cards.itertuples(index=False)], index=cards.index))
cards

# %%
# the cards' printed answers (seed 000, lines 33-47): 230, 1030, 60.29, 600, 56.67
assert np.allclose(cards["premium"], [230, 1030, 60 + 2 / 7, 600, 56 + 2 / 3])

# %% [markdown]
# ## 2. The same number is a posterior mean
#
# Give the risk's true mean μ a prior N(β₀, σ_u²) and let the n observations be
# N(μ, σ_e²). With both variances known the posterior of μ is normal with
#
# * precision n/σ_e² + 1/σ_u²,
# * mean (n ȳ/σ_e² + β₀/σ_u²) / (n/σ_e² + 1/σ_u²) = Z ȳ + (1 − Z) β₀.
#
# The prior counts as k = σ_e²/σ_u² pseudo-observations at β₀ — Halliwell's "prior as a
# quasi-observation" (seed 003, Appendix B). The posterior variance σ_u²(1 − Z) is the
# EBLUP's conditional variance (lme4's `condVar`).

# %%
post_precision = cards["n"] / cards["epv"] + 1 / cards["vhm"]
post_mean = (cards["n"] * cards["ybar"] / cards["epv"] + cards["beta0"] / cards["vhm"]) / post_precision
pd.DataFrame({"credibility premium": cards["premium"], "posterior mean": post_mean,
              "posterior SD": 1 / np.sqrt(post_precision),
              "sqrt(VHM (1 - Z))": np.sqrt(cards["vhm"] * (1 - cards["Z"]))})

# %%
assert np.allclose(post_mean, cards["premium"], rtol=1e-12)
assert np.allclose(1 / post_precision, cards["vhm"] * (1 - cards["Z"]), rtol=1e-12)

# %% [markdown]
# ## 3. Bühlmann's balanced example (Table 3.1 of seed 004)
#
# Three classes observed over four periods. The classical (moment) estimators give
# EPV σ̂² = MSW = 6250 and VHM τ̂² = (MSB − MSW)/T = 8437.5, so Z = 4 / (4 + 6250/8437.5) =
# 0.84375 and premiums 665.625, 750, 834.375 (seed 004, lines 917–987).

# %%
table31 = bc.datasets.load("buhlmann_table31")
classical = bc.credibility.buhlmann(table31, group="class", response="loss")
classical.structure

# %%
classical.table

# %% [markdown]
# In a balanced design the REML estimates **coincide** with the moment estimators; ML does not
# (it divides the between-class sum of squares by J instead of J − 1: τ̂² = 5104.17, see the
# erratum E3 of REFERENCE-VALUES.md to seed 004 line 1945).

# %%
reml = bc.lmm("loss ~ 1 + (1 | class)", table31, method="REML")
ml = bc.lmm("loss ~ 1 + (1 | class)", table31, method="ML")
pd.concat({"REML": reml.varcorr, "ML": ml.varcorr})

# %%
assert np.isclose(reml.varcorr["vcov"].iloc[0], 8437.5, rtol=1e-6)
assert np.isclose(ml.varcorr["vcov"].iloc[0], 5104.1667, rtol=1e-6)
reml.ranef()

# %% [markdown]
# ## 4. Unknown variances: plug in, or average over?
#
# The EBLUP takes τ̂² and σ̂² as if they were the truth. With three classes the data say very
# little about τ²: full Bayes keeps that uncertainty. The factory `bc.models.buhlmann` takes the
# same arguments as the classical function; its default priors are weakly informative and scaled
# to the data (see its docstring).

# %%
model = bc.models.buhlmann(table31, group="class", response="loss")
posterior = bc.sample(model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED)

# %%
import arviz as az

az.summary(posterior, var_names=["collective", "between", "within", "k", "Z", "premium"],
           ci_prob=0.9, ci_kind="eti")

# %% [markdown]
# The posterior means of the premiums sit close to the credibility premiums, but the posterior
# SDs are larger than the EBLUP's conditional SDs: the difference is exactly the uncertainty
# about the variance components that the plug-in leaves out.

# %%
premium_sd = posterior["posterior"]["premium"].std(("chain", "draw")).to_numpy()
cond_sd = reml.ranef()["cond_sd"].to_numpy()
pd.DataFrame({"classical premium": classical.table["premium"].to_numpy(),
              "posterior mean": posterior["posterior"]["premium"].mean(("chain", "draw")).to_numpy(),
              "EBLUP cond. SD": cond_sd, "posterior SD": premium_sd,
              "ratio": premium_sd / cond_sd}, index=classical.table.index)

# %% [markdown]
# ## Diagnostics a reviewer asks for
#
# R-hat ≤ 1.01, bulk ESS ≥ 400 and no divergences at the full settings; the rank plots should
# look uniform.

# %%
from bayescred.report import diagnostics

diagnostics.health(posterior, ["collective", "between", "within"])

# %%
import arviz_plots as azp

azp.plot_rank(posterior, var_names=["collective", "between", "within"], backend="matplotlib");
