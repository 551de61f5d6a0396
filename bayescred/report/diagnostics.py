"""Sampler diagnostics a reviewer asks for, as tables and figures (ArviZ 1.x, DataTree).

R-hat and bulk/tail ESS (Vehtari et al. 2021), divergences, E-BFMI per chain, PSIS-LOO with
Pareto k (Vehtari, Gelman & Gabry 2017), trace and rank plots, posterior predictive check.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd

from . import html

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3


def summary(posterior, var_names, prob: float = 0.9) -> pd.DataFrame:
    """Mean, SD, equal-tailed interval, ESS (bulk, tail), R-hat of ``var_names``."""
    table = az.summary(posterior, var_names=var_names, ci_prob=prob, ci_kind="eti", round_to="none")
    return table.astype(float)


def divergences(posterior) -> pd.Series:
    """Number of divergent transitions per chain."""
    stats = posterior["sample_stats"]
    name = "diverging" if "diverging" in stats else None
    if name is None:
        return pd.Series(dtype=int, name="divergences")
    div = stats[name].to_numpy().astype(bool).sum(axis=-1)
    return pd.Series(div, index=pd.Index(stats["chain"].to_numpy(), name="chain"), name="divergences")


def bfmi(posterior) -> pd.Series:
    """Energy Bayesian fraction of missing information per chain (low: < 0.3)."""
    values = az.bfmi(posterior)["energy"].to_numpy()
    return pd.Series(np.atleast_1d(values), name="E-BFMI").rename_axis("chain")


def loo_table(posterior) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """PSIS-LOO estimate and Pareto-k counts, or None when no log-likelihood was stored."""
    if "log_likelihood" not in posterior.children:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(posterior, pointwise=True)
    est = pd.DataFrame(
        {"estimate": [loo.elpd, loo.p], "SE": [loo.se, np.nan]}, index=["elpd_loo", "p_loo"]
    )
    k = np.asarray(loo.pareto_k).ravel()
    good = getattr(loo, "good_k", 0.7)
    counts = pd.DataFrame(
        {
            "count": [(k <= good).sum(), ((k > good) & (k <= 1)).sum(), (k > 1).sum()],
        },
        index=[f"k <= {good:.2f} (good)", f"{good:.2f} < k <= 1 (bad)", "k > 1 (very bad)"],
    )
    return est, counts


def n_chains(posterior) -> int:
    return int(posterior["posterior"].sizes["chain"])


def health(posterior, var_names) -> dict:
    """Pass/fail of the sampler-health rules: no divergences, R-hat <= 1.01, bulk ESS >= 400.
    One chain cannot pass: R-hat compares chains (it is NaN then)."""
    s = summary(posterior, var_names)
    div = int(divergences(posterior).sum())
    return {
        "divergences": div,
        "max_rhat": float(s["r_hat"].max()),
        "min_ess_bulk": float(s["ess_bulk"].min()),
        "ok": bool(div == 0 and s["r_hat"].max() <= RHAT_MAX and s["ess_bulk"].min() >= ESS_MIN),
    }


def _plot(fn, posterior, **kwargs):
    import arviz_plots as azp

    pc = getattr(azp, fn)(posterior, backend="matplotlib", **kwargs)
    return pc.get_viz("figure")


def section_html(posterior, var_names, observed: str | None = None) -> str:
    """The report's diagnostics section: tables, verdict, trace/rank and PPC plots."""
    parts = []
    s = summary(posterior, var_names)
    h = health(posterior, var_names)
    rhat = (f"max R-hat {h['max_rhat']:.4f} (rule <= {RHAT_MAX})" if n_chains(posterior) > 1
            else "R-hat not computed: it needs at least 2 chains")
    verdict = f"divergences {h['divergences']}, {rhat}, min bulk ESS {h['min_ess_bulk']:.0f} (rule >= {ESS_MIN})"
    parts.append(html.note(("Sampler healthy: " if h["ok"] else "Sampler problems: ") + verdict,
                           "ok" if h["ok"] else "fail"))
    parts.append(html.table(s, "Posterior summary (90% ETI, equal-tailed interval)"))
    div = divergences(posterior)
    bf = bfmi(posterior)
    per_chain = pd.concat([div, bf], axis=1)
    parts.append(html.table(per_chain, f"Per chain: divergences and E-BFMI (low if < {BFMI_MIN})"))
    loo = loo_table(posterior)
    if loo is not None:
        parts.append(html.table(loo[0], "PSIS-LOO"))
        parts.append(html.table(loo[1], "Pareto k diagnostic"))
    parts.append(html.figure(_plot("plot_trace_dist", posterior, var_names=var_names, compact=True),
                             "Trace and marginal posterior per chain"))
    if n_chains(posterior) > 1:  # ranks compare chains
        parts.append(html.figure(_plot("plot_rank", posterior, var_names=var_names),
                                 "Rank plots (uniform ranks: chains mix)"))
    if observed and "posterior_predictive" in posterior.children:
        parts.append(html.figure(_plot("plot_ppc_dist", posterior, var_names=[observed]),
                                 "Posterior predictive check: observed vs replicated data"))
    if "prior_predictive" in posterior.children and observed in posterior["prior_predictive"]:
        parts.append(html.figure(
            _plot("plot_ppc_dist", posterior, var_names=[observed], group="prior_predictive"),
            "Prior predictive check"))
    return "\n".join(parts)
