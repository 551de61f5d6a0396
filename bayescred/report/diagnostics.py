"""Sampler diagnostics a reviewer asks for, as tables and figures (ArviZ 1.x, DataTree).

R-hat and bulk/tail ESS (Vehtari et al. 2021), divergences, E-BFMI per chain, PSIS-LOO with
Pareto k (Vehtari, Gelman & Gabry 2017), trace and rank plots, posterior predictive check.
"""

from __future__ import annotations

import contextlib
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from . import html

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3
RANK_P_MIN = 0.01  # 1 - arviz-plots' default envelope probability (0.99) for its rank-plot test


@contextlib.contextmanager
def _quiet_constant_entries():
    """Entries fixed by the model's structure (the zero covariances of a diagonal between
    matrix) are the same in every draw: their R-hat and ESS are undefined (NaN in the tables)
    and their density is a point, which numpy and ArviZ would otherwise warn about on every run."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.filterwarnings("ignore", message="Your data appears to have a single value")
        yield


def summary(posterior, var_names, prob: float = 0.9) -> pd.DataFrame:
    """Mean, SD, equal-tailed interval, ESS (bulk, tail), R-hat of ``var_names``."""
    with _quiet_constant_entries():
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


def loo_table(posterior) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, list[str], float] | None:
    """PSIS-LOO estimate, Pareto-k counts, the k of each observation, ArviZ's warnings (shown in
    the report, not suppressed) and ArviZ's threshold for a good k (0.7, lower for few draws:
    min(1 - 1/log10 S, 0.7)), or None when no log-likelihood was stored."""
    if "log_likelihood" not in posterior.children:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loo = az.loo(posterior, pointwise=True)
    messages = list(dict.fromkeys(str(w.message).strip() for w in caught))
    est = pd.DataFrame(
        {"estimate": [loo.elpd, loo.p], "SE": [loo.se, np.nan]}, index=["elpd_loo", "p_loo"]
    )
    k = np.asarray(loo.pareto_k).ravel()
    good = getattr(loo, "good_k", 0.7)
    counts = pd.DataFrame(
        {
            "count": [(k <= good).sum(), ((k > good) & (k <= 1)).sum(), (k > 1).sum()],
        },
        index=[f"k <= {html.fmt(good, 2)} (good)", f"{html.fmt(good, 2)} < k <= 1 (bad)", "k > 1 (very bad)"],
    )
    return est, counts, k, messages, float(good)


def rank_p_values(posterior, var_names) -> pd.Series:
    """p-value of the multi-chain rank-uniformity test per variable (the one arviz-plots prints
    on each rank plot; Säilynoja et al.); small: the chains do not mix."""
    with _quiet_constant_entries():
        ranks = posterior["posterior"].to_dataset()[list(var_names)].azstats.compute_ranks(
            dim=["chain", "draw"], relative=True)
        p, _, _ = ranks.azstats.mchain_uniformity_test(dim=["chain", "draw"])
    return pd.Series({v: float(np.min(p[v].to_numpy())) for v in p.data_vars}, name="rank p-value")


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


def sampler_failed(posterior, var_names) -> list[str]:
    """What makes a run's posterior untrustworthy (the CLI's exit status 5): divergent
    transitions and R-hat above 1.01 (or not computable). Plain sentences; empty when none."""
    s = summary(posterior, var_names)
    out = []
    div = int(divergences(posterior).sum())
    if div:
        out.append(f"{div} divergent transitions")
    if n_chains(posterior) < 2:
        out.append("R-hat not computed: it needs at least 2 chains")
    elif not s["r_hat"].max() <= RHAT_MAX:
        bad = s.index[~(s["r_hat"] <= RHAT_MAX)]
        out.append(f"R-hat above {RHAT_MAX} for {', '.join(map(str, bad))} (max {html.fmt(s['r_hat'].max())})")
    return out


def problems(posterior, var_names, loo=None) -> list[str]:
    """Every problem the diagnostics section shows, as plain sentences (the banner lists them
    all): divergences, R-hat, bulk and tail ESS, E-BFMI, rank-plot uniformity, Pareto k."""
    out = sampler_failed(posterior, var_names)
    s = summary(posterior, var_names)
    for col, what in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = s.index[s[col] < ESS_MIN]
        if len(low):
            out.append(f"{what} ESS below {ESS_MIN} for {', '.join(map(str, low))} (min {html.fmt(s[col].min(), 3)})")
    bf = bfmi(posterior)
    if (bf < BFMI_MIN).any():
        out.append(f"E-BFMI below {BFMI_MIN} in chain(s) {', '.join(map(str, bf.index[bf < BFMI_MIN]))}")
    if n_chains(posterior) > 1:
        p = rank_p_values(posterior, var_names)
        low = p[p < RANK_P_MIN]
        if len(low):
            out.append("rank plots: chains do not mix for " + ", ".join(f"{v} (p = {html.fmt(q, 2)})"
                                                                         for v, q in low.items()))
    if loo is not None:
        k, good = loo[2], loo[4]
        n_bad = int((k > good).sum())
        if n_bad:
            _, dim = _loo_labels(posterior, len(k))
            unit = "risks" if dim is not None and dim in posterior["posterior"].dims else "rows"
            out.append(f"Pareto k above {html.fmt(good, 2)} for {n_bad} of {len(k)} {unit} (influential; LOO "
                       "unreliable there)")
    return out


def _plot(fn, posterior, size=None, **kwargs):
    import arviz_plots as azp

    if size is not None:  # room for the labels: one panel row per variable
        kwargs["figure_kwargs"] = {"figsize": size}
    with _quiet_constant_entries():
        pc = getattr(azp, fn)(posterior, backend="matplotlib", **kwargs)
    fig = pc.get_viz("figure")
    fig.set_layout_engine("constrained")  # labels of neighbouring panels must not overlap
    return fig


def ppc_figure(posterior, observed, group="posterior_predictive"):
    """Density of the replicated data sets against the observed one, pooled over rows or risks.
    Their dimensions are renamed first (``observation_0``, ...): arviz-plots 1 lays out one panel
    per pair of risks when the dimension carries some names, among them "a" (the name of the
    grouping column in the data: 144 panels for 12 risks, refused beyond 40), and fails on "b"."""
    parts = {}
    for name in (group, "observed_data"):
        if name in posterior.children and observed in posterior[name]:
            ds = posterior[name].to_dataset()[[observed]]
            ds = ds.drop_vars([c for c in ds.coords if c not in ("chain", "draw")])
            other = [d for d in ds[observed].dims if d not in ("chain", "draw")]
            parts[name] = ds.rename({d: f"observation_{i}" for i, d in enumerate(other)})
    return _plot("plot_ppc_dist", xr.DataTree.from_dict(parts), var_names=[observed], group=group)


def trace_figure(posterior, var_names):
    """Trace and marginal density per chain, one row of panels per variable."""
    return _plot("plot_trace_dist", posterior, size=(10, 2.1 * len(var_names) + 0.6), var_names=var_names,
                 compact=True)


def rank_figure(posterior, var_names):
    """Rank plots with the multi-chain uniformity test's p-value, tall enough for its labels."""
    return _plot("plot_rank", posterior, size=(10, 2.2 * ((len(var_names) + 2) // 3) + 0.6), var_names=var_names)


LOO_RISK = ("PSIS-LOO leaves out one observation at a time. In this model each observation of the "
            "log-likelihood is a whole risk ('{dim}': all its periods together), so LOO here asks how well "
            "the model predicts an unseen risk, and a high Pareto k flags an influential risk: one whose "
            "experience moves the posterior much more than the others'. With few risks, one or two high k "
            "are common and say that the hyperparameters rest on those risks.")
LOO_ROW = ("PSIS-LOO leaves out one observation at a time; here an observation is one row of the data "
           "(one period of one risk). A high Pareto k flags a row that moves the posterior much more than "
           "the others.")


def section_html(posterior, var_names, observed: str | None = None) -> str:
    """The report's diagnostics section: verdict listing every problem, tables, trace/rank and
    PPC plots, LOO with Pareto k explained at the level of risks."""
    parts = []
    s = summary(posterior, var_names)
    loo = loo_table(posterior)
    found = problems(posterior, var_names, loo)
    parts.append(banner(found))
    rhat = (f"max R-hat {html.fmt(s['r_hat'].max())} (rule <= {RHAT_MAX})" if n_chains(posterior) > 1
            else "R-hat not computed: it needs at least 2 chains")
    parts.append(html.note(f"divergences {int(divergences(posterior).sum())}, {rhat}, min bulk ESS "
                           f"{html.fmt(s['ess_bulk'].min(), 3)} (rule >= {ESS_MIN})", "ok" if not found else "warn"))
    table = s.copy()
    if n_chains(posterior) > 1:
        table["rank p-value"] = rank_p_values(posterior, var_names)
    parts.append(html.table(table, "Posterior summary (90% ETI, equal-tailed interval)"))
    div = divergences(posterior)
    bf = bfmi(posterior)
    per_chain = pd.concat([div, bf], axis=1)
    parts.append(html.table(per_chain, f"Per chain: divergences and E-BFMI (low if < {BFMI_MIN})"))
    if loo is not None:
        est, counts, k, messages, good = loo
        names, dim = _loo_labels(posterior, len(k))
        per_risk = dim is not None and dim in posterior["posterior"].dims
        parts.append(f"<p>{html.escape(LOO_RISK.format(dim=dim) if per_risk else LOO_ROW)}</p>")
        parts.append(html.table(est, "PSIS-LOO"))
        parts.append(html.table(counts, "Pareto k diagnostic (one k per " + ("risk)" if per_risk else "row)")))
        flagged = [(n, v) for n, v in zip(names, k) if v > good]
        if flagged:
            parts.append(html.note(("Influential risks" if per_risk else "Influential rows")
                                   + f" (Pareto k > {html.fmt(good, 2)}): "
                                   + ", ".join(f"{n} (k = {html.fmt(v, 2)})" for n, v in flagged)))
        for m in messages:
            parts.append(html.note("ArviZ warns: " + m))
    parts.append(html.figure(trace_figure(posterior, var_names), "Trace and marginal posterior per chain"))
    if n_chains(posterior) > 1:  # ranks compare chains
        parts.append(html.figure(rank_figure(posterior, var_names),
                                 "Rank plots (uniform ranks: chains mix; p is the uniformity test's p-value)"))
    if observed and "posterior_predictive" in posterior.children:
        parts.append(html.figure(ppc_figure(posterior, observed),
                                 "Posterior predictive check: observed vs replicated data"))
    if "prior_predictive" in posterior.children and observed in posterior["prior_predictive"]:
        parts.append(html.figure(ppc_figure(posterior, observed, "prior_predictive"), "Prior predictive check"))
    return "\n".join(parts)


def banner(found: list[str]):
    """One box naming every problem of :func:`problems` (the sampler's, then the LOO model check's),
    or saying there is none."""
    loo = [p for p in found if p.startswith("Pareto k")]
    sampler = [p for p in found if p not in loo]
    check = f" Model check: {'; '.join(loo)}." if loo else ""
    if sampler:
        return html.note("Sampler problems: " + "; ".join(sampler) + "." + check, "fail")
    if loo:
        return html.note("Sampler checks passed (no divergences, R-hat <= 1.01, ESS >= 400, chains mix)."
                         + check, "warn")
    return html.note("Sampler healthy: no divergences, R-hat <= 1.01, ESS >= 400, chains mix "
                     "(rank test), every Pareto k good.", "ok")


def _loo_labels(posterior, n: int) -> tuple[list[str], str | None]:
    """The label of each pointwise log-likelihood entry and the dimension it runs along."""
    ll = posterior["log_likelihood"]
    name = next(iter(ll.data_vars))
    dims = [d for d in ll[name].dims if d not in ("chain", "draw")]
    if len(dims) == 1 and dims[0] in ll[name].coords:
        return [str(v) for v in ll[name][dims[0]].to_numpy()], dims[0]
    return [str(i) for i in range(n)], None
