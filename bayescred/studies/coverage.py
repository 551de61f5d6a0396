"""How often do nominal intervals for each risk's premium contain the true premium?

A simulation study with known truth (issue 6). For each model and number of risks J, each
replicate simulates a portfolio from fixed hyperparameters (``bayescred.datasets.simulate``),
fits it, and checks for every risk whether its interval contains the *true* risk premium
(collective + that risk's true effect, known from the simulator):

* EBLUP by REML / exact marginal ML, normal intervals premium ± z·SD (z = 1.645 at 90%) with
  the three SDs of docs/formulas.md §9: (i) conditional SD (variance parameters and fixed effects
  treated as known), (ii) PEV SD (adds the fixed effects), (iii) second-order MSE SD (adds
  the variance parameters; Prasad–Rao / Datta–Lahiri, Booth–Hobert for Poisson–gamma);
* the full-Bayes posterior of the premium, equal-tailed interval (ETI) of the same probability.

Coverage of a method at J is the mean over replicates of the replicate's share of risks
covered. Intervals within a replicate share the estimated variance parameters and collective,
so their hits are correlated; the Monte Carlo SE is therefore computed from the
replicate-level shares: sd(share) / sqrt(R).

The models studied are the catalogue's entries with a ``study`` (:mod:`bayescred.catalogue`):
the entry gives the simulator, the model's arguments on the simulated portfolio, the true
premium (e.g. Hachemeister: the next period's (1, T + 1)·β_j, fitted with an unstructured U so
that the time origin does not matter) and the EB fit and factory of all three arms.

The Bayesian arm builds one model per J (default priors scaled to a pilot portfolio simulated
from the same hyperparameters) and re-uses its compiled sampler for every replicate through
``pm.set_data``: compiling costs seconds, sampling these marginal models a fraction of one.

Random numbers: ``SeedSequence(seed, spawn_key=(model number, J)).spawn(R + 1)`` gives the
pilot's seed, then one per replicate, itself split into a simulation seed and a sampler
seed; so the same ``seed`` gives the same table, a result for one J does not depend on which
other J are asked for, and the first replicates not on how many follow.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .. import catalogue, errors
from ..compare import risk_labels
from ..datasets import simulate
from ..progress import track

__all__ = [
    "MODELS",
    "METHODS",
    "true_premium",
    "eblup_intervals",
    "bayes_model",
    "bayes_intervals",
    "coverage_replicates",
    "summarise_coverage",
    "coverage_study",
    "plot_coverage",
]

# the catalogue's models that define a study, in the order of their study numbers
MODELS = tuple(e.name for e in sorted((e for e in catalogue.entries() if e.study), key=lambda e: e.study.number))
EBLUP_METHODS = {
    "cond_sd": "EBLUP (i) conditional SD",
    "pev_sd": "EBLUP (ii) PEV SD",
    "mse_sd": "EBLUP (iii) MSE SD",
}
BAYES_METHOD = "Bayes posterior ETI"
METHODS = (*EBLUP_METHODS.values(), BAYES_METHOD)

# An arm turns one simulated portfolio into intervals: (sim, prob, random_seed) -> DataFrame
# indexed by risk with columns method, estimate, lower, upper (one row per risk and method).
Arm = Callable[[simulate.Simulation, float, int], pd.DataFrame]


# --------------------------------------------------------------------------- per model


def _study(model: str):
    _check_model(model)
    entry = catalogue.get(model)
    return entry, entry.study


def true_premium(model: str, sim: simulate.Simulation) -> pd.Series:
    """The true risk premium of every risk of a simulated portfolio (index: risk), as the
    model's catalogue entry defines it (e.g. Hachemeister: intercept_j + slope_j·(T + 1))."""
    _, study = _study(model)
    return study.truth(sim).rename("true_premium")


def eblup_intervals(model: str, sim: simulate.Simulation, prob: float = 0.9) -> pd.DataFrame:
    """Normal EBLUP intervals premium ± z·SD for every risk and each of the three SDs.

    Returns one row per risk and method (index: risk) with columns method, estimate, sd,
    lower, upper; ``attrs["boundary"]`` says whether the fit put a variance on its boundary
    (then the SDs that ignore the variance parameters are 0 or the interval undefined).
    """
    entry, study = _study(model)
    _check_prob(prob)
    fit = entry.eb(sim.data, study.arguments)
    boundary = bool(fit.boundary)
    risks = study.truth(sim).index
    pred = entry.premiums(fit, study.arguments, sim.data).reindex(risks)
    z = stats.norm.ppf(0.5 + prob / 2)
    parts = []
    for column, method in EBLUP_METHODS.items():
        sd = pred[column].to_numpy(float)
        est = pred["premium"].to_numpy(float)
        parts.append(
            pd.DataFrame(
                {"method": method, "estimate": est, "sd": sd, "lower": est - z * sd, "upper": est + z * sd},
                index=risks,
            )
        )
    out = pd.concat(parts)
    out.attrs["boundary"] = boundary
    return out


def bayes_model(model: str, data: pd.DataFrame, *, template=None):
    """The ``bc.models`` factory's model (default priors) for a simulated portfolio.

    With ``template`` (a model built by this function for a portfolio of the same risks) the
    template is returned with its data replaced by ``data`` (``pm.set_data``): its priors,
    scaled to the template's own data, stay, and ``bc.sample`` re-uses its compiled sampler
    instead of compiling again (compiling costs seconds, sampling these marginal models a
    fraction of a second).
    """
    entry, study = _study(model)
    fresh = entry.bayes(data, study.arguments)
    if template is None:
        return fresh
    import pymc as pm

    if {k: list(v) for k, v in fresh.coords.items()} != {k: list(v) for k, v in template.coords.items()}:
        raise ValueError("the template model has other risks (coords) than this portfolio")
    pm.set_data({var.name: fresh[var.name].get_value() for var in fresh.data_vars}, model=template)
    return template


def bayes_intervals(
    model: str,
    sim: simulate.Simulation,
    prob: float = 0.9,
    *,
    random_seed: int,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    template=None,
) -> pd.DataFrame:
    """Posterior mean, SD and equal-tailed interval of every risk's premium.

    The model is the ``bc.models`` factory of the same name with its default priors (see
    :func:`bayes_model` for ``template``), sampled by ``bc.sample``; the premium draws are
    its exact conditional draws of each risk's premium. Same columns as
    :func:`eblup_intervals`; ``attrs["divergences"]`` counts divergent transitions.
    """
    _check_model(model)
    _check_prob(prob)
    from ..sampling import sample

    posterior = sample(
        bayes_model(model, sim.data, template=template),
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=random_seed,
        log_likelihood=False,
        posterior_predictive=False,
    )
    values = _premium_draws(posterior, true_premium(model, sim))
    a = (1 - prob) / 2
    lower, upper = np.quantile(values, [a, 1 - a], axis=0)
    out = pd.DataFrame(
        {
            "method": BAYES_METHOD,
            "estimate": values.mean(axis=0),
            "sd": values.std(axis=0, ddof=1),
            "lower": lower,
            "upper": upper,
        },
        index=true_premium(model, sim).index,
    )
    stats_ = posterior["sample_stats"]
    out.attrs["divergences"] = int(stats_["diverging"].sum()) if "diverging" in stats_ else 0
    return out


def _premium_draws(posterior, truth: pd.Series) -> np.ndarray:
    """Draws (S, J) of each risk's premium, in the order of the risks of ``truth`` (a crossed
    or nested cell (a, b) is labelled "a:b" in the posterior)."""
    da = posterior["posterior"]["premium"]
    dim = next(d for d in da.dims if d not in ("chain", "draw"))
    da = da.stack(sample=("chain", "draw")).transpose("sample", dim)
    labels = pd.Index(da[dim].to_numpy())
    risks = risk_labels(truth.index)
    order = labels.get_indexer(risks)
    if (order < 0).any():
        order = pd.Index(labels.astype(str)).get_indexer(risks.astype(str))
    if (order < 0).any():
        raise errors.BayescredError(f"posterior 'premium' is not labelled by the simulated risks ({dim!r})")
    return da.to_numpy()[:, order]


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class _Settings:
    model: str
    n_risks: tuple[int, ...]
    replicates: int
    bayes_replicates: int
    prob: float
    draws: int
    tune: int
    chains: int
    truth: dict


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def _check_prob(prob: float) -> None:
    if not isinstance(prob, (int, float)) or not 0 < prob < 1:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob!r}")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _settings(model, n_risks, replicates, bayes, bayes_replicates, prob, draws, tune, chains, truth) -> _Settings:
    _check_model(model)
    _check_prob(prob)
    if isinstance(n_risks, (int, np.integer)):
        n_risks = (n_risks,)
    if not isinstance(n_risks, Iterable):
        raise ValueError(f"n_risks must be an integer or a sequence of integers, got {n_risks!r}")
    sizes = tuple(_positive_int("every n_risks", j, 3) for j in n_risks)
    if not sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"n_risks must be a non-empty sequence of distinct integers, got {n_risks!r}")
    replicates = _positive_int("replicates", replicates, 2)
    if not bayes:
        bayes_replicates = 0
    elif bayes_replicates is None:
        bayes_replicates = replicates
    else:
        bayes_replicates = _positive_int("bayes_replicates", bayes_replicates, 2)
        if bayes_replicates > replicates:
            raise ValueError(f"bayes_replicates ({bayes_replicates}) cannot exceed replicates ({replicates})")
    study = catalogue.get(model).study
    simulator = getattr(simulate, study.simulator)
    allowed = {
        name
        for name, p in inspect.signature(simulator).parameters.items()
        if name not in ("n_risks", "seed") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    unknown = set(truth) - allowed
    if unknown:
        raise ValueError(f"unknown simulation settings for {model}: {sorted(unknown)}; allowed: {sorted(allowed)}")
    if truth.get("factors"):
        raise ValueError(f"the coverage study fits the {model} model with the study's arguments, "
                         "which read no rating factors: leave factors unset")
    return _Settings(
        model,
        sizes,
        replicates,
        bayes_replicates,
        float(prob),
        _positive_int("draws", draws),
        _positive_int("tune", tune),
        _positive_int("chains", chains),
        dict(truth),
    )


def _replicate_seeds(seed, model: str, n_risks: int, replicates: int):
    """Seeds spawned from (seed, model, J): the pilot portfolio's, then (simulation seed,
    sampler seed) per replicate (prefix-stable: more replicates leave the first ones alone)."""
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"pass an explicit non-negative integer seed, got {seed!r}")
    base = np.random.SeedSequence(int(seed), spawn_key=(catalogue.get(model).study.number, n_risks))
    pilot, *children = base.spawn(replicates + 1)
    out = []
    for child in children:
        sim_seed, sampler = child.spawn(2)
        out.append((sim_seed, int(sampler.generate_state(1)[0])))
    return pilot, out


def _default_arms(s: _Settings, pilot: Callable[[], simulate.Simulation]) -> dict[str, Arm]:
    """EBLUP arm and, when asked for, the Bayesian arm with one compiled model per J whose
    default priors are scaled to a pilot portfolio from the same hyperparameters."""
    arms = {"eblup": lambda sim, p, _: eblup_intervals(s.model, sim, p)}
    if s.bayes_replicates:
        template = bayes_model(s.model, pilot().data)
        arms["bayes"] = lambda sim, p, rs: bayes_intervals(
            s.model, sim, p, random_seed=rs, draws=s.draws, tune=s.tune, chains=s.chains, template=template
        )
    return arms


def _score(intervals: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    """Per method: share of risks covered, mean width, share of undefined intervals."""
    t = truth.reindex(intervals.index).to_numpy(float)
    lower, upper = intervals["lower"].to_numpy(float), intervals["upper"].to_numpy(float)
    defined = np.isfinite(lower) & np.isfinite(upper)
    hit = defined & (lower <= t) & (t <= upper)  # an undefined interval covers nothing
    codes, methods = pd.factorize(intervals["method"])
    count = np.bincount(codes)
    n_defined = np.bincount(codes, defined)
    width = np.bincount(codes, np.where(defined, upper - lower, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "coverage": np.bincount(codes, hit) / count,
                "coverage_defined": np.bincount(codes, hit) / n_defined,  # among defined intervals
                "width": width / n_defined,  # NaN when no interval of the method is defined
                "undefined": 1 - n_defined / count,
            },
            index=pd.Index(methods, name="method"),
        )


def coverage_replicates(
    model: str,
    n_risks: int | Iterable[int] = (5, 10, 30, 100),
    replicates: int = 200,
    *,
    prob: float = 0.9,
    bayes: bool = True,
    bayes_replicates: int | None = None,
    seed: int,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    arms: Mapping[str, Arm] | None = None,
    progress: Callable[[str], None] | None = None,
    **truth,
) -> pd.DataFrame:
    """Replicate-level results: one row per (n_risks, replicate, method).

    Columns: model, n_risks, replicate, method, coverage (share of the replicate's risks
    whose interval holds the true premium), width (mean interval width), undefined (share of
    intervals that could not be formed, counted as not covering), divergences (sampler),
    boundary (the EB fit put a variance on its boundary). The Bayesian arm runs on the first
    ``bayes_replicates`` replicates (the same simulated portfolios as the EB arm), with the
    factory's default priors scaled to one pilot portfolio per J simulated from the same
    hyperparameters, so that one compiled model serves every replicate (:func:`bayes_model`;
    compiling per replicate would cost about 50 times the sampling). ``arms`` replaces the default
    arms (EBLUP and, with ``bayes``, the posterior) by your own functions
    ``(sim, prob, random_seed) -> intervals`` (columns method, estimate, lower, upper, index
    risk), e.g. to check the harness with known-variance intervals. ``truth`` overrides the
    simulator's hyperparameters (see ``bayescred.datasets.simulate``). ``progress``: a
    callback given one message per replicate; by default a progress bar on a terminal
    (:mod:`bayescred.progress`).
    """
    s = _settings(model, n_risks, replicates, bayes, bayes_replicates, prob, draws, tune, chains, truth)
    simulator = getattr(simulate, catalogue.get(s.model).study.simulator)
    rows = []
    for J in s.n_risks:
        pilot_seed, seeds = _replicate_seeds(seed, s.model, J, s.replicates)
        arms_j = arms or _default_arms(s, lambda: simulator(J, seed=np.random.default_rng(pilot_seed), **s.truth))
        replicates_j = enumerate(seeds)
        if progress is None:  # the default: a progress bar on a terminal, silence elsewhere
            replicates_j = track(replicates_j, f"coverage {s.model} J={J}", total=len(seeds))
        for r, (sim_seed, sampler_seed) in replicates_j:
            sim = simulator(J, seed=np.random.default_rng(sim_seed), **s.truth)
            truth_j = true_premium(s.model, sim)
            scores, boundary = [], False
            for name, arm in arms_j.items():
                if name == "bayes" and r >= s.bayes_replicates:
                    continue
                with warnings.catch_warnings():  # counted below, not shouted about
                    warnings.simplefilter("ignore", errors.BoundaryWarning)
                    warnings.simplefilter("ignore", errors.ConvergenceWarning)
                    intervals = arm(sim, s.prob, sampler_seed)
                boundary |= bool(intervals.attrs.get("boundary", False))
                scores.append(_score(intervals, truth_j).assign(divergences=intervals.attrs.get("divergences", 0)))
            for method, row in pd.concat(scores).iterrows():
                rows.append(
                    {"model": s.model, "n_risks": J, "replicate": r, "method": method, **row.to_dict(), "boundary": boundary}
                )
            if progress is not None:
                progress(f"{s.model} J={J} replicate {r + 1}/{s.replicates}")
    return pd.DataFrame(rows)


def summarise_coverage(replicates: pd.DataFrame, prob: float = 0.9) -> pd.DataFrame:
    """Coverage per (model, n_risks, method) with its Monte Carlo SE from replicate-level shares.

    Columns: model, n_risks, method, nominal, coverage, mc_se (= sd over replicates of the
    share covered / sqrt(R)), width (mean interval width), width_mc_se, replicates,
    boundary (share of replicates whose EB fit was on the boundary), undefined (share of
    intervals not defined, e.g. the Poisson–gamma MSE at Var u = 0; they count as misses in
    ``coverage``), coverage_defined (mean over replicates of the share covered among the
    defined intervals, replicates without any left out), divergences (mean per replicate).
    """
    _check_prob(prob)
    needed = {"model", "n_risks", "replicate", "method", "coverage", "coverage_defined", "width", "undefined", "boundary",
              "divergences"}
    missing = needed - set(replicates.columns)
    if missing:
        raise ValueError(f"replicate table lacks columns {sorted(missing)} (use coverage_replicates)")
    g = replicates.groupby(["model", "n_risks", "method"], sort=False)
    out = g.agg(
        coverage=("coverage", "mean"),
        sd=("coverage", "std"),
        coverage_defined=("coverage_defined", "mean"),
        width=("width", "mean"),
        width_sd=("width", "std"),
        replicates=("replicate", "count"),
        boundary=("boundary", "mean"),
        undefined=("undefined", "mean"),
        divergences=("divergences", "mean"),
    ).reset_index()
    root = np.sqrt(out["replicates"])
    out["mc_se"] = out.pop("sd") / root
    out["width_mc_se"] = out.pop("width_sd") / root
    out.insert(3, "nominal", prob)
    order = {m: i for i, m in enumerate(METHODS)}
    out = out.sort_values(["model", "n_risks", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    cols = ["model", "n_risks", "method", "nominal", "coverage", "mc_se", "width", "width_mc_se", "replicates",
            "boundary", "undefined", "coverage_defined", "divergences"]
    return out[cols].reset_index(drop=True)


def coverage_study(
    model: str,
    n_risks: int | Iterable[int] = (5, 10, 30, 100),
    replicates: int = 200,
    *,
    prob: float = 0.9,
    bayes: bool = True,
    bayes_replicates: int | None = None,
    seed: int,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    arms: Mapping[str, Arm] | None = None,
    progress: Callable[[str], None] | None = None,
    **truth,
) -> pd.DataFrame:
    """Actual coverage of nominal ``prob`` intervals for each risk's premium (tidy table).

    Runs :func:`coverage_replicates` and summarises it with :func:`summarise_coverage`:
    one row per (model, n_risks, method) with coverage, its Monte Carlo SE, the mean
    interval width and the number of replicates. Example::

        table = coverage_study("buhlmann_straub", (5, 10, 30, 100), replicates=200, seed=1)
    """
    reps = coverage_replicates(
        model,
        n_risks,
        replicates,
        prob=prob,
        bayes=bayes,
        bayes_replicates=bayes_replicates,
        seed=seed,
        draws=draws,
        tune=tune,
        chains=chains,
        arms=arms,
        progress=progress,
        **truth,
    )
    return summarise_coverage(reps, prob)


# --------------------------------------------------------------------------- plot

_STYLE = {
    EBLUP_METHODS["cond_sd"]: ("tab:red", "o"),
    EBLUP_METHODS["pev_sd"]: ("tab:orange", "s"),
    EBLUP_METHODS["mse_sd"]: ("tab:green", "^"),
    BAYES_METHOD: ("tab:blue", "D"),
}


def plot_coverage(table: pd.DataFrame, *, title: str | None = None):
    """Coverage against the number of risks, one panel per model, ±2 Monte Carlo SE bars.

    ``table`` is the output of :func:`coverage_study` (or several concatenated). The dashed
    line is the nominal probability. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    needed = {"model", "n_risks", "method", "coverage", "mc_se", "nominal"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"coverage table lacks columns {sorted(missing)} (use coverage_study)")
    if table.empty:
        raise ValueError("the coverage table is empty")
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.0), sharey=True, squeeze=False)
    methods = [m for m in METHODS if m in set(table["method"])] + sorted(set(table["method"]) - set(METHODS))
    for ax, model in zip(axes[0], models):
        sub = table[table["model"] == model]
        sizes = sorted(sub["n_risks"].unique())
        offsets = np.linspace(-0.06, 0.06, max(len(methods), 1))
        for k, method in enumerate(methods):
            rows = sub[sub["method"] == method].sort_values("n_risks")
            if rows.empty:
                continue
            colour, marker = _STYLE.get(method, (None, "x"))
            x = rows["n_risks"].to_numpy(float) * math.exp(offsets[k])  # dodge on the log axis
            ax.errorbar(
                x, rows["coverage"], yerr=2 * rows["mc_se"], color=colour, marker=marker, capsize=3, lw=1.2,
                label=method,
            )
        nominal = float(sub["nominal"].iloc[0])
        ax.axhline(nominal, color="k", ls="--", lw=1, label=f"nominal {nominal:.0%}")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(j) for j in sizes])
        ax.minorticks_off()
        ax.set_xlabel("number of risks J")
        ax.set_title(catalogue.get(model).study.label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"actual coverage of nominal {nominal:.0%} intervals")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "Coverage of each risk's premium (±2 Monte Carlo SE)")
    fig.tight_layout()
    return fig
