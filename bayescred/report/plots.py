"""Comparison plots: shrinkage, premium forest, between-variance posterior vs REML profile, Z."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from ..compare import MEASURE_NAMES, MEASURES, Comparison, _draws


def shrinkage(cmp: Comparison, own_mean, weight):
    """Each risk's own mean -> EBLUP -> posterior mean, marker area proportional to weight."""
    tab = cmp.premiums
    own = np.asarray(own_mean, float)
    w = np.asarray(weight, float)
    size = 30 + 400 * w / w.max()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(tab) + 2.5))
    levels = {"own mean": 0, "EBLUP": 1, "posterior mean": 2}
    for i, risk in enumerate(tab.index):
        xs = [own[i], tab["eblup"].iloc[i], tab["post_mean"].iloc[i]]
        ax.plot(xs, list(levels.values()), color="0.6", lw=0.8, zorder=1)
        ax.scatter(xs, list(levels.values()), s=size[i], alpha=0.6, zorder=2)
        ax.annotate(str(risk), (xs[0], -0.12), ha="center", va="top", fontsize=7)
    ax.set_yticks(list(levels.values()), list(levels))
    ax.invert_yaxis()
    ax.set_xlabel("premium")
    ax.set_title("Shrinkage: own experience towards the collective (size ~ weight)")
    return fig


def forest(cmp: Comparison):
    """Per-risk posterior ETI (thick) with the EBLUP normal intervals of each measure overlaid."""
    tab = cmp.premiums
    z = stats.norm.ppf(0.5 + cmp.prob / 2)
    y = np.arange(len(tab))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(tab) + 2))
    ax.hlines(y, tab["post_lower"], tab["post_upper"], lw=5, color="tab:blue", alpha=0.45,
              label=f"posterior {cmp.prob:.0%} ETI")
    ax.plot(tab["post_mean"], y, "o", color="tab:blue", ms=4)
    offsets = {"cond_sd": -0.22, "pev_sd": -0.11, "mse_sd": 0.11}
    colors = {"cond_sd": "tab:red", "pev_sd": "tab:orange", "mse_sd": "tab:green"}
    for m in MEASURES:
        if m in tab:
            yy = y + offsets[m]
            ax.hlines(yy, tab["eblup"] - z * tab[m], tab["eblup"] + z * tab[m], lw=1.5, color=colors[m],
                      label=f"EBLUP ± {z:.2f}·{MEASURE_NAMES[m]}")
    ax.plot(tab["eblup"], y, "|", color="k", ms=9, label="EBLUP")
    ax.set_yticks(y, [str(r) for r in tab.index])
    ax.set_xlabel("premium")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"Premiums: posterior vs EBLUP intervals ({cmp.prob:.0%})")
    return fig


def between_vs_profile(cmp: Comparison, profile=None, name: str = "between"):
    """Posterior of the between-variance against the REML profile likelihood, on log10 scale.

    ``profile``: DataFrame with columns ``value`` (the variance) and ``deviance`` (profiled
    REML criterion); exp(-(deviance - min)/2) is normalised to unit area over log10(value),
    like the histogram of log10 of the posterior draws. The EBLUP uses only the curve's peak.
    """
    draws = np.log10(_draws(cmp.posterior, name).to_numpy())
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(draws, bins=50, density=True, alpha=0.5, label="posterior")
    if profile is not None and len(profile):
        x = np.log10(profile["value"].to_numpy(float))
        lik = np.exp(-(profile["deviance"].to_numpy(float) - profile["deviance"].min()) / 2)
        area = np.trapezoid(lik, x)
        if area > 0:
            ax.plot(x, lik / area, color="k", label="REML profile likelihood (normalised)")
    est = cmp.variance_components.loc[name, "reml"] if name in cmp.variance_components.index else None
    if est is not None and np.isfinite(est) and est > 0:
        ax.axvline(np.log10(est), color="tab:red", ls="--", label="REML estimate (plugged into the EBLUP)")
    ax.set_xlabel(f"log10 {name} (VHM)")
    ax.set_ylabel("density")
    ax.set_title("What the EBLUP ignores: uncertainty of the between-variance")
    ax.legend(fontsize=8)
    return fig


def credibility_factors(cmp: Comparison):
    """Posterior of each risk's Z, with the classical and REML values marked."""
    zd = _draws(cmp.posterior, "Z")
    dim = [d for d in zd.dims if d != "sample"][0]
    values = zd.to_numpy()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * values.shape[1] + 2))
    ax.boxplot(values, orientation="horizontal", whis=(5, 95), showfliers=False)
    ticks = np.arange(1, values.shape[1] + 1)
    cred = cmp.credibility
    if "classical" in cred:
        ax.plot(cred["classical"], ticks, "s", color="tab:orange", label="classical")
    if "reml" in cred:
        ax.plot(cred["reml"], ticks, "D", color="tab:red", label="REML plug-in")
    ax.set_yticks(ticks, [str(v) for v in zd[dim].to_numpy()])
    ax.set_xlabel("credibility factor Z (box: 5-95% of posterior draws)")
    ax.legend(fontsize=8)
    return fig
