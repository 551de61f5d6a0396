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
    if ax.get_legend_handles_labels()[0]:  # neither classical nor REML marks (a GLMM comparison): no legend
        ax.legend(fontsize=8)
    return fig


def ellipse(cov, radius: float, n: int = 200) -> np.ndarray:
    """Points x with x' cov^-1 x = radius^2 (2 x n)."""
    angle = np.linspace(0, 2 * np.pi, n)
    return radius * (np.linalg.cholesky(cov) @ np.vstack([np.cos(angle), np.sin(angle)]))


def random_effect_ellipses(posterior, eb_cov=None):
    """Hachemeister: each risk's (intercept, trend) effect — posterior draws, posterior means —
    with the 68% / 95% Mahalanobis ellipses of the posterior mean of U and of the REML estimate
    (seed 004_07f8365c92996b9b.txt Figure 4.9; radii sqrt(chi2_2(p)) = 1.509592, 2.447747)."""
    post = posterior["posterior"]
    risk_dim = [d for d in post["risk_coef"].dims if d not in ("chain", "draw", "coef")][0]
    coef = post["risk_coef"].stack(sample=("chain", "draw"))
    effects = (coef - post["collective"].stack(sample=("chain", "draw"))).transpose("sample", risk_dim, "coef")
    effects = effects.to_numpy()
    U_mean = post["between"].mean(("chain", "draw")).to_numpy()
    radii = np.sqrt(stats.chi2.ppf([0.68, 0.95], df=2))
    fig, ax = plt.subplots(figsize=(6.5, 5))
    step = max(1, effects.shape[0] // 1000)
    for j, risk in enumerate(post[risk_dim].to_numpy()):
        ax.scatter(effects[::step, j, 0], effects[::step, j, 1], s=3, alpha=0.25)
        ax.plot(*effects[:, j].mean(0), "o", color="k", ms=5)
        ax.annotate(str(risk), effects[:, j].mean(0), xytext=(4, 4), textcoords="offset points")
    for r, p in zip(radii, (68, 95)):
        ls = "-" if p == 68 else "--"
        ax.plot(*ellipse(U_mean, r), color="tab:blue", ls=ls, label=f"{p}%: posterior mean of U")
        if eb_cov is not None:
            ax.plot(*ellipse(np.asarray(eb_cov, float), r), color="k", lw=0.8, ls=ls, label=f"{p}%: REML estimate")
    names = list(post["coef"].to_numpy())
    ax.set_xlabel(f"{names[0]} effect")
    ax.set_ylabel(f"{names[1]} effect")
    ax.set_title("Risk effects: posterior draws and Mahalanobis ellipses")
    ax.legend(fontsize=7)
    return fig


def credibility_matrices(posterior, classical_A=None):
    """Hachemeister: posterior mean of each risk's credibility matrix A_j (2 x 2 heat maps),
    with the classical A_j in brackets when given (array J x 2 x 2 in the posterior's risk order)."""
    A = posterior["posterior"]["A"]
    risk_dim = [d for d in A.dims if d not in ("chain", "draw", "coef", "coef_")][0]
    mean = A.mean(("chain", "draw")).transpose(risk_dim, "coef", "coef_").to_numpy()
    risks = A[risk_dim].to_numpy()
    names = list(A["coef"].to_numpy())
    fig, axes = plt.subplots(1, len(risks), figsize=(2.1 * len(risks) + 1, 2.6), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(mean[j], vmin=-0.5, vmax=1, cmap="RdBu_r")
        for a in range(2):
            for b in range(2):
                text = f"{mean[j, a, b]:.3f}"
                if classical_A is not None:
                    text += f"\n({classical_A[j][a][b]:.3f})"
                ax.text(b, a, text, ha="center", va="center", fontsize=7,
                        color="white" if mean[j, a, b] > 0.6 else "black")
        ax.set_xticks([0, 1], names, fontsize=7)
        ax.set_yticks([0, 1], names if j == 0 else ["", ""], fontsize=7)
        ax.set_title(str(risks[j]), fontsize=9)
    fig.suptitle("Credibility matrices A_j: posterior mean (classical in brackets)", fontsize=10)
    return fig


def plugin_vs_posterior(cmp: Comparison):
    """The first screen: per risk, the plug-in EBLUP interval (premium ± z·conditional SD) next to
    the posterior equal-tailed interval, both at the comparison's probability."""
    tab = cmp.premiums
    z = stats.norm.ppf(0.5 + cmp.prob / 2)
    y = np.arange(len(tab))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(tab) + 1.6))
    ax.hlines(y - 0.15, tab["eblup"] - z * tab["cond_sd"], tab["eblup"] + z * tab["cond_sd"], lw=3,
              color="tab:red", label=f"plug-in: EBLUP ± {z:.2f}·conditional SD, {cmp.prob:.0%}")
    ax.plot(tab["eblup"], y - 0.15, "|", color="tab:red", ms=8)
    ax.hlines(y + 0.15, tab["post_lower"], tab["post_upper"], lw=3, color="tab:blue",
              label=f"posterior {cmp.prob:.0%} equal-tailed interval")
    ax.plot(tab["post_mean"], y + 0.15, "|", color="tab:blue", ms=8)
    ax.set_yticks(y, [str(r) for r in tab.index])
    ax.invert_yaxis()
    ax.set_xlabel(cmp.quantity)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / (0.32 * len(tab) + 1.6)),
              ncol=2, frameon=False)
    ax.set_title(f"Each risk's {cmp.quantity}: plug-in interval (red) vs posterior interval (blue)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig
