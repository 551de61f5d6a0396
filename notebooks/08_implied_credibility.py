# %% [markdown]
# # 08 · Implied credibility: what a GLMM does to a rating factor
#
# Seed `001_09ddcaa1e17cf6d2.txt`: in a GLM, a rating factor with many thin levels (territory,
# class) is not credibility-adjusted, so actuaries shrink its relativities by hand afterwards.
# Fitting the factor as a *random* effect in a GLMM does the shrinking inside the model. To see
# how much, fit it twice — fixed in a GLM, random in a GLMM — and compare level by level:
#
# * relativity r_j = exp(β_j) / (exposure-weighted mean of exp(β)), GLM;
# * relativity s_j = exp(b_j) / (exposure-weighted mean of exp(b)), GLMM;
# * inferred credibility Z_j = (s_j − 1) / (r_j − 1);
# * Bühlmann form Z = e/(e + k): 1/Z − 1 = k/e, so k by least squares through the origin of
#   (1/Z_j − 1) on 1/e_j.
#
# The random effect can be normal on the log scale (Poisson–lognormal: glmer, glmmTMB, brms,
# bambi) or a gamma frailty (Poisson–gamma, the actuary's classical model); we fit both, by
# empirical Bayes and by full Bayes (`bc.models.poisson_lognormal`, `bc.models.poisson_gamma`),
# on the Swedish bus fleet (seed `004_07f8365c92996b9b.txt` §6.3) with **zone** as the factor
# and bus age as a fixed rating factor.
#
# Set `BAYESCRED_FAST=1` to run with short chains (as the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayescred as bc
from bayescred.lmm.poisson_gamma import poisson_gamma_eb

FAST = os.environ.get("BAYESCRED_FAST") == "1"
DRAWS, TUNE, CHAINS = (300, 300, 2) if FAST else (2000, 1000, 4)
SEED = 20261202
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1. Seed 001's table, recomputed from its printed effects
#
# The seed prints, for 12 classes, the ALCCL exposure, the GLM effect, the GLMM random
# effect and the inferred credibility (REFERENCE-VALUES §15). The raw data are not public;
# the table itself is the test: from columns (3) and (6) we recompute every other column.
# The printed (9) is ((8) − 1)/((5) − 1) on the *relativities* — not b/β on the log scale
# (class 01 would get 0.37, not 0.99).

# %%
seed001 = pd.DataFrame({
    "alccl": [484185185, 16832999, 359748011, 103293336, 27864645, 324592379, 60941612, 55682170,
              108633028, 39019053, 15101361, 664914612],
    "fe": [0.3346, 0.2585, 0.3056, -0.1181, 0.4388, 0.2196, 0.4695, 0.4268, 0.2978, -0.1779, -0.0423, 0.0],
    "re": [0.1241, 0.0304, 0.0951, -0.2898, 0.1674, 0.0115, 0.2229, 0.1836, 0.0814, -0.2876, -0.1349, -0.2040],
    "Z_printed": [0.9877, 0.6545, 0.9845, 0.8994, 0.7129, 1.0506, 0.8426, 0.8328, 0.9190, 0.7742, 0.5542,
                  0.9777],
}, index=pd.Index(["01", "02", "03", "04", "05", "06", "07", "08", "10", "11", "13", "99"], name="class"))
seed = bc.implied_credibility(seed001["fe"], seed001["re"], factor="class", exposure=seed001["alccl"])
table = seed.table.assign(Z_printed=seed001["Z_printed"])
# the seed's total row: exposure-weighted means of exp(effect) 1.2240 (GLM) and 0.9932 (GLMM)
assert abs(seed.fixed_mean - 1.2240) < 5e-5 and abs(seed.random_mean - 0.9932) < 5e-5
# class 06 sits at relativity 1.018: the rounding of the printed effects moves its Z by 0.008
assert np.all(np.abs(table["Z"] - table["Z_printed"])[table.index != "06"] < 2.5e-3)
print(f"k = {seed.k:,.0f} ALCCL (regression through the origin of 1/Z - 1 on 1/exposure)")
table.round(4)

# %%
seed.plot();

# %% [markdown]
# ## 2. The Swedish bus fleet, zone as the thin factor
#
# After the seed's cleaning (REFERENCE-VALUES §11.1) 1,473 company × zone × bus-age rows; the
# seven zones carry from 43,000 to 1.9 million exposure days. Without the shared data
# folder the notebook runs on the bundled simulated portfolio (zones, no other factor).

# %%
try:
    data = bc.datasets.clean_bus(bc.datasets.load("bus"))
    FACTOR, OTHERS, CLAIMS, EXPOSURE = "zone", ["bus.age"], "clm.cnt", "dur"
except bc.errors.DatasetNotFoundError as missing:
    print("bus data not available here:", missing)
    data = bc.datasets.load("sim_poisson_gamma")
    FACTOR, OTHERS, CLAIMS, EXPOSURE = "zone", [], "claims", "exposure"
BUS = CLAIMS == "clm.cnt"
data.groupby(FACTOR).agg(claims=(CLAIMS, "sum"), exposure=(EXPOSURE, "sum"), rows=(CLAIMS, "size"))

# %% [markdown]
# ### The GLM: zone fixed
#
# `bc.glm` (R `glm` parity), Poisson with log(exposure) offset, zone and bus age as factors
# (base level: the first, as R). On the bus data these are the seed's printed coefficients
# (REFERENCE-VALUES §11.3, seed 004 lines 5670–5704).

# %%
rhs = " + ".join(f"`{c}`" for c in [FACTOR, *OTHERS])
glm = bc.glm(f"`{CLAIMS}` ~ {rhs} + offset(log(`{EXPOSURE}`))", data, family="poisson", factors=[FACTOR, *OTHERS])
if BUS:
    printed = {"(Intercept)": -6.943244, "zone2": 0.279470, "zone3": -0.271849, "zone4": -0.084820,
               "zone5": -0.002343, "zone6": 0.034376, "zone7": -0.718687, "bus.age1": 0.008051,
               "bus.age2": 0.014442, "bus.age3": -0.213333, "bus.age4": -0.531115}
    # printed to 6 decimals: equal within half a unit of the last digit
    assert np.max(np.abs(glm.coef[list(printed)] - list(printed.values()))) < 5e-7
pd.DataFrame({"coef": glm.coef, "se": glm.se}).round(5)

# %% [markdown]
# ### The mixed models: zone random
#
# * **Poisson–lognormal**, empirical Bayes: `bc.glmm` (glmer parity, Laplace), the seed's
#   GLMM: u_j ~ N(0, s²) on the log scale, b_j its conditional mode.
# * **Poisson–gamma**, empirical Bayes: exact marginal ML (the negative binomial per zone),
#   `poisson_gamma_eb`; the zone's frailty u_j has mean 1 and variance λ, and its EB value is
#   the Bühlmann credibility estimate with Z_j = μ_j/(μ_j + 1/λ).
# * **Poisson–gamma**, full Bayes: `bc.models.poisson_gamma` (marginal likelihood, exact
#   conditional draws of u_j).
# * **Poisson–lognormal**, full Bayes: `bc.models.poisson_lognormal`, u_j ~ N(0, s²) on the
#   log scale, sampled latent and non-centred; its `Z`, `k` are Bühlmann's linear credibility
#   for R = exp(u): k = exp(−s²/2)/(exp(s²) − 1).
#
# With seven zones the between-zone variance is poorly determined: that is where the
# posterior and the plug-in part ways.

# %%
args = {"group": FACTOR, "claims": CLAIMS, "exposure": EXPOSURE}
others = "".join(f" + factor(`{c}`)" for c in OTHERS)
glmm = bc.glmm(f"`{CLAIMS}` ~ 1{others} + offset(log(`{EXPOSURE}`)) + (1 | {FACTOR})", data, family="poisson")
pg_eb = poisson_gamma_eb(data, **args, fixed=" + ".join(f"C(`{c}`)" for c in OTHERS) or None)
pg_model = bc.models.poisson_gamma(data, **args, fixed=OTHERS or None)
# seven zones: a wide, skewed posterior of the between variance; a smaller step size avoids divergences
pg_post = bc.sample(pg_model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED, target_accept=0.99)
ln_model = bc.models.poisson_lognormal(data, **args, fixed=OTHERS or None)
ln_post = bc.sample(ln_model, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED + 1, target_accept=0.99)


def ptile(tree, name, q=0.5):
    return tree["posterior"][name].quantile(q, dim=("chain", "draw")).drop_vars("quantile")


s2 = ln_post["posterior"]["between"]
var_rel = np.exp(s2) * np.expm1(s2)  # Var exp(u) of the lognormal, comparable with lam
s2_eb = float(glmm.varcorr["vcov"].iloc[0])
pd.DataFrame({
    "Poisson-lognormal EB (glmm)": [np.exp(s2_eb) * np.expm1(s2_eb), np.exp(-s2_eb / 2) / np.expm1(s2_eb)],
    "Poisson-gamma EB": [pg_eb.lam, 1 / pg_eb.lam],
    "Poisson-gamma posterior median": [float(ptile(pg_post, "lam")), float(ptile(pg_post, "k"))],
    "Poisson-lognormal posterior median": [float(var_rel.median()), float(ptile(ln_post, "k"))],
}, index=["Var of the zone relativity", "k (expected claims)"]).round(4)

# %% [markdown]
# Relativities per zone, side by side: the GLM's (no shrinkage), the Poisson–gamma EB
# frailties, and the posterior medians of both Bayesian models (each divided by its
# exposure-weighted mean, as the seed's relativities).

# %%
e = data.groupby(FACTOR)[EXPOSURE].sum()


def relativity(effect):
    ex = np.exp(effect)
    return ex / np.sum(ex * e.to_numpy()) * e.sum()


glm_effect = pd.Series([glm.coef.get(f"{FACTOR}{lev}", 0.0) for lev in e.index], index=e.index)
side = pd.DataFrame({
    "exposure": e,
    "GLM": relativity(glm_effect.to_numpy()),
    "Poisson-lognormal EB": relativity(glmm.ranef().set_index("level")["value"].reindex(e.index.map(str)).to_numpy()),
    "Poisson-gamma EB": relativity(np.log(pg_eb.ranef()["u"].reindex(e.index).to_numpy())),
    "Poisson-gamma Bayes": relativity(np.log(ptile(pg_post, "u").to_numpy())),
    "Poisson-lognormal Bayes": relativity(ptile(ln_post, "u").to_numpy()),
}, index=e.index)
side.round(4)

# %% [markdown]
# `bc.compare` sets the glmm's plug-in answer beside the Poisson–lognormal posterior: per zone
# the relativity exp(u_j) (EB: exp(b_j) with the conditional SD carried by the delta method),
# and the between variance, the variance of the log-scale zone effect. The posterior SD of
# exp(u_j) also counts the intercept's uncertainty (with seven zones, u_j and the intercept
# trade off), so the like-for-like plug-in measure is the PEV SD, which counts the fixed
# effects too; what is left of the ratio is the uncertainty about s², which the EBLUP treats
# as known.

# %%
cmp = bc.compare(glmm, ln_post)
print(cmp.variance_components[["unit", "reml", "post_median", "post_lower", "post_upper"]].round(4).to_string())
cmp.premiums[["eblup", "cond_sd", "pev_sd", "post_mean", "post_sd", "sd_ratio_pev_sd"]].round(3)

# %% [markdown]
# ## 3. Implied credibility against exposure
#
# The GLM against each mixed model: `bc.glmm`'s conditional modes are the seed's own
# computation; the Poisson–gamma's random effect is log û_j. For the posteriors every draw of the zone effects gives
# a Z_j (and a k): the columns `Z_lower`, `Z_upper` are 90 % equal-tailed intervals. Where a
# zone's GLM relativity is close to 1 (zones 1, 4, 5 and 6 on the bus data: within 0.1 of 1)
# Z is a ratio of two small numbers and its interval is very wide — the seed's class 06
# (Z = 1.05) is the same effect, not a credibility above 1. The same draws make the interval
# of k wide (and reach below 0): the regression through the origin is only as good as its
# noisiest points.

# %%
implied = {
    "Poisson-lognormal EB (glmm)": bc.implied_credibility(glm, glmm, factor=FACTOR, exposure=e),
    "Poisson-gamma EB": bc.implied_credibility(glm, np.log(pg_eb.ranef()["u"]), factor=FACTOR, exposure=e),
    "Poisson-gamma Bayes": bc.implied_credibility(glm, pg_post, factor=FACTOR, exposure=e),
    "Poisson-lognormal Bayes": bc.implied_credibility(glm, ln_post, factor=FACTOR, exposure=e),
}
# the Poisson-gamma's implied credibility tracks its own Bühlmann Z = mu/(mu + 1/lam)
pd.concat({"implied Z, glmm": implied["Poisson-lognormal EB (glmm)"].table["Z"],
           "implied Z, PG EB": implied["Poisson-gamma EB"].table["Z"], "Buhlmann Z, PG EB": pg_eb.ranef()["Z"],
           "implied Z, lognormal (median)": implied["Poisson-lognormal Bayes"].table["Z_median"],
           "90% lower": implied["Poisson-lognormal Bayes"].table["Z_lower"],
           "90% upper": implied["Poisson-lognormal Bayes"].table["Z_upper"]}, axis=1).round(3)

# %%
pd.DataFrame({name: {"k": fit.k, "k 90% lower": (fit.k_interval or (np.nan, np.nan))[0],
                     "k 90% upper": (fit.k_interval or (np.nan, np.nan))[1]} for name, fit in implied.items()}).T

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
axes = axes.ravel()
for ax, (name, fit) in zip(axes, implied.items()):
    fit.plot(ax=ax)
    ax.set_title(name, fontsize=10)
    ax.set_ylim(-0.5, 2.0)
fig.tight_layout()

# %% [markdown]
# Reading the picture: the big zones keep their GLM relativities (Z ≈ 1), the small ones
# (zone 7: 43,000 days, 14 claims) are pulled halfway to the mean. The Bühlmann curve with
# one k summarises it; on seven points k is uncertain, and the Bayesian intervals say by how
# much. The Poisson–gamma and the Poisson–lognormal agree closely here: with a variance of
# the relativity of 0.04 to 0.10, a gamma and a lognormal of the same mean and variance are
# nearly the same distribution. The Poisson–gamma's implied credibility also tracks its own
# Bühlmann Z = μ_j/(μ_j + 1/λ): the seed's "backing into" credibility recovers the
# credibility the model actually applies.

# %% [markdown]
# ## 4. Companies: a gamma frailty or a lognormal effect?
#
# The same choice one level down, where credibility matters most: 660 bus companies within
# zone and bus-age classes (seed 004 §6.3), company as the random effect. The Poisson–gamma
# by exact marginal ML gives λ = Var(u) = 0.4205 (REFERENCE-VALUES §11.6); glmer's model —
# `bc.glmm`, the normal effect on the log scale — gives s². To compare like with like, the
# lognormal relativity is exp(u − s²/2) (mean 1, variance exp(s²) − 1). Same fixed effects,
# one variance parameter each: the log-likelihoods compare directly (the glmm's by Laplace).
# The implied-credibility table is not drawn here: 336 of the 660 companies have no claim,
# so their GLM effects are −∞.

# %%
if BUS:
    co = {"group": "co.id", "claims": CLAIMS, "exposure": EXPOSURE}
    pg_co = poisson_gamma_eb(data, **co, fixed="zone + bus.age", base={"zone": 4, "bus.age": 4})
    assert np.isclose(pg_co.lam, 0.420456, rtol=1e-3)  # REFERENCE-VALUES §11.6
    ln_co = bc.glmm(f"`{CLAIMS}` ~ factor(zone) + factor(`bus.age`) + offset(log(`{EXPOSURE}`)) + (1 | `co.id`)",
                    data, family="poisson")
    s2_co = float(ln_co.varcorr["vcov"].iloc[0])
    ln_co_post = bc.sample(bc.models.poisson_lognormal(data, **co, fixed=["zone", "bus.age"]), draws=DRAWS,
                           tune=TUNE, chains=CHAINS, random_seed=SEED + 2)
    s2_post = ln_co_post["posterior"]["between"]
    print(pd.DataFrame({
        "Poisson-gamma (exact ML)": [pg_co.lam, pg_co.loglik],
        "Poisson-lognormal (glmm, Laplace)": [np.expm1(s2_co), ln_co.loglik],
        "Poisson-lognormal (posterior median)": [float(np.expm1(s2_post).median()), np.nan],
    }, index=["Var of the company relativity", "log-likelihood"]).round(4).to_string())
    # the five companies with the largest Poisson-gamma relativities (seed 004 Table 6.10)
    u_pg = pg_co.ranef()["u"]
    top = u_pg.sort_values().index[-5:][::-1]
    b = ln_co.ranef().set_index("level")["value"]
    print("correlation of the log relativities:", round(float(np.corrcoef(np.log(u_pg), b.reindex(u_pg.index.map(str)))[0, 1]), 3))
    u_post = ln_co_post["posterior"]["u"] - ln_co_post["posterior"]["between"] / 2
    rel_post = np.exp(u_post).sel({"co.id": list(top)})
    display_top = pd.DataFrame({
        "claims": data.groupby("co.id")[CLAIMS].sum().loc[top],
        "Poisson-gamma u": u_pg.loc[top],
        "lognormal exp(b - s2/2)": np.exp(b.reindex(top.map(str)).to_numpy() - s2_co / 2),
        "lognormal posterior mean": rel_post.mean(("chain", "draw")).to_numpy(),
        "90% lower": rel_post.quantile(0.05, ("chain", "draw")).to_numpy(),
        "90% upper": rel_post.quantile(0.95, ("chain", "draw")).to_numpy(),
    }, index=top)
display_top.round(3) if BUS else "the bus data are not available here"

# %% [markdown]
# The two models agree on the ranking (the log relativities correlate at 0.98) but
# not on the tail: the lognormal's variance of the relativity is larger and its top
# companies get larger relativities — the credibility given to a company with many claims
# depends on the shape of the effect's distribution, not only on its variance. That is
# the difference a user sees when setting our Poisson–gamma numbers beside glmer's.
