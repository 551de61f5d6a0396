"""The run report: one self-contained HTML file (images embedded) per run.

Sections: summary and reference checks, data, the model in formulas, classical vs REML vs
Bayes tables, comparison plots, sampler diagnostics (R-hat, ESS, divergences, BFMI, trace and
rank plots, predictive checks, PSIS-LOO with Pareto k).

``bc.report(run)`` takes a :class:`bayescred.runner.Run` or the folder a run was saved to
(``bayescred fit SPEC --out DIR``) and returns the path of the HTML file.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from markupsafe import Markup

from .._callable import make_callable
from .. import catalogue, runfolder
from ..compare import by_risk
from ..errors import BayescredError, RunFolderError
from . import coverage, html

__all__ = ["report", "sampler_problems", "write_report"]

MEASURE_WORDS = {"cond_sd": "conditional SD (at the estimated variances, as lme4's condVar)",
                 "pev_sd": "prediction-error SD (also counts the fixed effects)",
                 "mse_sd": "second-order MSE SD (also counts the estimated variances)"}
# table headers in words (the CSV files keep the column names)
HEADERS = {"classical": "classical", "eblup": "EBLUP", "cond_sd": "conditional SD", "pev_sd": "PEV SD",
           "mse_sd": "MSE SD", "post_mean": "posterior mean", "post_sd": "posterior SD",
           "post_median": "posterior median", "post_lower": "posterior lower", "post_upper": "posterior upper",
           "sd_ratio_cond_sd": "posterior SD / conditional SD", "sd_ratio_pev_sd": "posterior SD / PEV SD",
           "sd_ratio_mse_sd": "posterior SD / MSE SD", "eblup_lower": "EBLUP lower (MSE SD)",
           "eblup_upper": "EBLUP upper (MSE SD)"}
REBUILT = frozenset({"report.html"})  # what `bayescred report RUN` rewrites in the folder
HYPER = ("collective", "between", "within", "k", "lam", "alpha")


def _suffixed(headers: dict, columns) -> dict:
    """Headers of per-coefficient columns such as ``reml_slope``: the header of ``reml``,
    then the coefficient."""
    out = {}
    for column in columns:
        for key in sorted(headers, key=len, reverse=True):
            if column.startswith(key + "_"):
                out[column] = f"{headers[key]} ({column[len(key) + 1:]})"
                break
    return out


def _observed_name(posterior) -> str | None:
    if "observed_data" in posterior.children:
        names = list(posterior["observed_data"].data_vars)
        return names[0] if names else None
    return None


def hyper_names(posterior) -> list[str]:
    """The hyperparameters the diagnostics look at (collective, variances, k, ...)."""
    post = posterior["posterior"]
    return [v for v in post.data_vars if v in HYPER or v.startswith("between")
            and post[v].ndim == 2] or [v for v in list(post.data_vars)[:3]]


def understatement_sentence(run) -> str:
    """The first screen's plain-words sentence: how much narrower the plug-in intervals are than
    the posterior's in this run, and the coverage the coverage study measured for about this
    many risks (:mod:`bayescred.report.coverage`)."""
    cmp = run.comparison
    tab = cmp.premiums
    z = _normal_quantile(cmp.prob)
    ratio = (2 * z * tab["cond_sd"]) / (tab["post_upper"] - tab["post_lower"])
    share = float((1 - ratio).median())
    n = len(tab)
    found = coverage.nearest(run.spec.model, n)
    how = (f"on median {html.fmt(share, percent=True)} narrower than" if share > 0
           else f"on median {html.fmt(-share, percent=True)} wider than")
    pct = html.fmt(cmp.prob, percent=True)
    text = (f"The plug-in EBLUP intervals (EBLUP ± {html.fmt(z, 3)} × conditional SD, nominal {pct}) "
            f"of these {n} risks are {how} the posterior's {pct} equal-tailed intervals. ")
    studied = (f"{found.study_name} portfolios" + (", the studied model closest to this one" if found.analogue else "")
               + f", {found.n_risks} risks" + ("" if found.n_risks == n else f", the studied number nearest to {n}"))
    if abs(cmp.prob - coverage.NOMINAL) < 1e-9:
        text += (f"With {found.n_risks} risks, nominal 90% plug-in intervals covered the true {cmp.quantity} "
                 f"{html.fmt(found.coverage['cond_sd'], percent=True)} of the time in our coverage study "
                 f"({studied}), the posterior intervals {html.fmt(found.coverage['bayes'], percent=True)}.")
    else:
        text += (f"In our coverage study ({studied}), nominal 90% plug-in intervals covered "
                 f"{html.fmt(found.coverage['cond_sd'], percent=True)}, the posterior's "
                 f"{html.fmt(found.coverage['bayes'], percent=True)}.")
    return text


def _normal_quantile(prob: float) -> float:
    """The normal quantile of a two-sided interval of probability ``prob``."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + prob / 2)


def _model_text(spec) -> Markup:
    """The model in formulas (the catalogue entry's text), its mixed-model formula and the
    covariance structure of the risk effects that all three arms fit. A model outside the
    catalogue (a GLMM factory's comparison written by :func:`write_report`) is named."""
    if spec.model not in catalogue.names():
        return Markup("{}").format(spec.model)
    entry = catalogue.get(spec.model)
    text = Markup(entry.text)
    if hasattr(entry, "formula"):
        text += Markup(" Empirical Bayes fits the mixed model <code>{}</code>.").format(entry.formula(spec.arguments))
    return text + Markup(" Risk effects, in all three arms: {}.").format(entry.structure(spec.arguments))


def _provenance(run) -> Markup:
    """Model, priors (read from the PyMC model), sampler settings, package versions and a data
    fingerprint: what a reviewer needs to reproduce the run."""
    from importlib.metadata import PackageNotFoundError, version

    spec, posterior, data = run.spec, run.posterior, run.data
    parts = [Markup("<h3>Model</h3><p>{}</p>").format(_model_text(spec)),
             Markup("<p>Arguments: <code>{}</code></p>").format(json.dumps(spec.arguments))]
    parts.append(Markup("<h3>Priors</h3>") + _priors_html(run))
    settings = _sampler_settings(posterior)
    parts.append(Markup("<h3>Sampler</h3>") + html.table(pd.DataFrame({"value": settings}).rename_axis("setting")))
    versions = {}
    for pkg in ("bayescred", "pymc", "arviz", "numpy", "pandas", "nutpie"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    parts.append(Markup("<h3>Versions</h3>") + html.table(pd.DataFrame({"version": versions}).rename_axis("package")))
    if len(data):
        import hashlib

        group = spec.arguments.get("group")
        digest = hashlib.sha256(data.to_csv(index=False).encode()).hexdigest()
        rows = {"source": spec.dataset, "rows": str(len(data)),
                "risks": str(data[group].nunique()) if isinstance(group, str) and group in data else "",
                "SHA-256 of the data table (as CSV, no index)": digest}
        parts.append(Markup("<h3>Data fingerprint</h3>") + html.table(pd.DataFrame({"value": rows}).rename_axis("")))
    else:
        parts.append(html.note("Data fingerprint not available: the data could not be read when this report "
                               "was rebuilt."))
    return Markup("").join(parts)


def _priors_html(run) -> Markup:
    """The prior of each free parameter as PyMC prints it, from the model rebuilt on the data
    (the spec's [priors] override the package defaults, which are scaled to the data)."""
    import inspect

    from .. import models

    priors = getattr(run.spec, "priors", None)
    given = Markup("<p>Priors in the spec: <code>{}</code></p>").format(json.dumps(priors or {}))
    factory = getattr(models, run.spec.model, None)
    if factory is None or not len(run.data):
        return given + html.note("The model could not be rebuilt (no data): priors not shown.")
    params = inspect.signature(factory).parameters
    try:
        model = factory(run.data, priors=priors, **{k: v for k, v in run.spec.arguments.items() if k in params})
    except (BayescredError, TypeError, ValueError) as exc:  # e.g. a run record without the model's arguments
        return given + html.note(f"The model could not be rebuilt: {exc}")
    free = {rv.name for rv in model.free_RVs}
    lines = [line.strip() for line in model.str_repr().splitlines() if line.split("~")[0].strip() in free]
    return given + Markup("<pre>{}</pre>").format("\n".join(lines))


def _sampler_settings(posterior) -> dict:
    """Draws, tuning steps, chains, seed and the sampler as recorded in the posterior file."""
    stats = posterior["sample_stats"] if "sample_stats" in posterior.children else None
    post = posterior["posterior"]
    out = {"chains": str(post.sizes["chain"]), "draws per chain": str(post.sizes["draw"])}
    if stats is not None:
        attrs = stats.attrs
        if "inference_library" in attrs:
            out["sampler"] = f"{attrs['inference_library']} {attrs.get('inference_library_version', '')}".strip()
        try:
            settings = json.loads(attrs.get("inference_library_settings", "{}"))
        except (TypeError, ValueError):
            settings = {}
        inner = settings.get("settings", {})
        for key, label in (("num_tune", "tuning steps per chain"), ("maxdepth", "max tree depth"),
                           ("seed", "seed")):
            if key in inner:
                out[label] = str(inner[key])
        step = inner.get("adapt_options", {}).get("step_size_settings", {})
        if "target_accept" in step:
            out["target acceptance"] = str(step["target_accept"])
        if "tuning_steps" in attrs:
            out.setdefault("tuning steps per chain", str(attrs["tuning_steps"]))
    return out


def sampler_problems(posterior) -> list[str]:
    """Divergences and R-hat above 1.01 of a run's hyperparameters (the CLI's exit status 5)."""
    from . import diagnostics

    return diagnostics.sampler_failed(posterior, hyper_names(posterior))


def write_report(run, path) -> Path:
    """Write the HTML report of ``run`` (a Run, or what :func:`_load_run` rebuilds) to ``path``
    (a new file renamed into place: a symbolic link there is replaced, never written through)."""
    import matplotlib.pyplot as plt

    # labels come from the user's data: "$...$" in a risk name is text, not mathtext or TeX
    with plt.rc_context({"text.parse_math": False, "text.usetex": False}):
        return runfolder.write_text(path, _page(run))


def _page(run) -> str:
    from . import diagnostics, plots  # ArviZ and the plotting stack load only to write a report

    spec, cmp, posterior = run.spec, run.comparison, run.posterior
    prob = cmp.prob
    sections = []

    checks = run.checks
    n_ok = int(checks["ok"].sum()) if len(checks) else 0
    verdict = (
        html.note(f"All {len(checks)} published reference values reproduced.", "ok")
        if n_ok == len(checks)
        else html.note(f"{len(checks) - n_ok} of {len(checks)} reference values MISSED (see the last section).",
                       "fail")
    )
    hyper = hyper_names(posterior)
    found = diagnostics.problems(posterior, hyper, diagnostics.loo_table(posterior))
    pct = html.fmt(prob, percent=True)
    first = (html.figure(plots.plugin_vs_posterior(cmp), f"Per risk: plug-in EBLUP ± z·conditional SD "
                         f"({pct} normal) vs posterior {pct} equal-tailed interval", id="understatement")
             + Markup('<p class="lead" id="understatement-sentence">{}</p>').format(understatement_sentence(run))
             + diagnostics.banner(found) + verdict)
    if spec.description or spec.title:
        first += Markup("<p>{}</p>").format(spec.description or spec.title)

    understate = cmp.understatement()
    lines = Markup("").join(Markup("<li>{}: median over risks <b>{}</b></li>").format(
        MEASURE_WORDS[k.replace("sd_ratio_", "")], html.fmt(v, 3)) for k, v in understate.items())
    sections.append(("summary", "Posterior SD relative to the plug-in SDs",
                     Markup("<p>Posterior SD of a risk's {} divided by each plug-in EBLUP standard deviation "
                            "(above 1: the plug-in understates the uncertainty):</p><ul>{}</ul>").format(
                                cmp.quantity, lines)))
    sections.append(("model", "Model, priors, sampler, versions and data", _provenance(run)))

    data = run.data
    summary_rows = [("rows", len(data)), ("columns", ", ".join(map(str, data.columns)))]
    sections.append(("data", "Data", html.table(pd.DataFrame(summary_rows, columns=["", "value"]).set_index(""),
                                                 f"dataset '{spec.dataset}'")
                     + html.table(data.describe().T, "Column summary")))


    vc = cmp.variance_components
    method = run.eb_summary.method  # the empirical-Bayes columns are called reml in the CSV files
    headers = {**HEADERS, "reml": method, "reml_lower": f"{method} lower", "reml_upper": f"{method} upper"}
    tables = html.table(vc.rename(columns=headers),
                        f"Variance components: classical, {method} (interval where computed) and "
                        f"posterior (mean, SD, {pct} ETI)")
    tables += html.table(cmp.premiums.rename(columns=headers),
                         f"Premiums per risk: classical, EBLUP with its three SDs, posterior mean/SD/{pct} ETI, "
                         f"and posterior SD / EBLUP SD; EBLUP interval = {pct} normal with the second-order SD")
    if len(cmp.credibility.columns) and "A" in posterior["posterior"]:
        tables += html.table(cmp.credibility.rename(columns=_suffixed(headers, cmp.credibility.columns)),
                             f"Diagonal of each risk's credibility matrix A, per coefficient: classical, {method} "
                             f"plug-in, posterior median and {pct} ETI")
    elif len(cmp.credibility.columns):
        tables += html.table(cmp.credibility.rename(columns=headers),
                             f"Credibility factor Z: classical, {method} plug-in, posterior median and {pct} ETI")
    if run.eb_summary.singular:
        tables = html.note("The empirical-Bayes fit is singular (a variance component at 0 or a correlation "
                           "at ±1): its plug-in intervals are especially unreliable.") + tables
    sections.append(("tables", "Classical vs REML vs Bayes", tables))

    figs = []
    table = getattr(run.classical, "table", None)
    if table is not None and {"mean", "weight"} <= set(table.columns):
        t = by_risk(table, cmp.premiums.index)
        figs.append(html.figure(plots.shrinkage(cmp, t["mean"], t["weight"]), "Shrinkage"))
    figs.append(html.figure(plots.forest(cmp), "Premium intervals"))
    if "between" in posterior["posterior"] and posterior["posterior"]["between"].ndim == 2:
        figs.append(html.figure(plots.between_vs_profile(cmp, run.eb_summary.extra.get("profile")),
                                "Between-variance"))
    if "Z" in posterior["posterior"]:
        figs.append(html.figure(plots.credibility_factors(cmp), "Credibility factors"))
    if "A" in posterior["posterior"]:
        classical_A = getattr(run.classical, "A", None)
        figs.append(html.figure(plots.credibility_matrices(posterior, classical_A), "Credibility matrices"))
        figs.append(html.figure(plots.random_effect_ellipses(posterior, run.eb_summary.extra.get("between_matrix")),
                                "Random-effect ellipses"))
    sections.append(("plots", "Comparison plots", "\n".join(figs)))

    sections.append(("diagnostics", "Sampler diagnostics",
                     diagnostics.section_html(posterior, hyper, observed=_observed_name(posterior))))

    sections.append(("references", "Published reference values", html.table(checks, "Checked values", index=False)
                     if len(checks) else "<p>No reference values in this spec.</p>"))
    return html.page(f"bayescred run: {spec.title}", first, sections)


def _load_run(folder: Path, regenerate: frozenset[str] = frozenset()):
    """Rebuild what the report needs from a saved run folder, verified against its manifest
    first (files in ``regenerate`` are about to be rewritten and are not checked)."""
    import xarray as xr

    from ..catalogue import EBSummary
    from ..compare import Comparison
    from ..sources import load_data
    from ..spec import load_spec

    manifest = runfolder.verify(folder, regenerate=regenerate)
    spec = load_spec(folder / "spec.toml")
    posterior = xr.load_datatree(folder / "posterior.nc", engine="h5netcdf")  # read whole: no file left open

    def csv(name):
        frame = pd.read_csv(folder / name)
        return frame.set_index(frame.columns[0])

    premiums = csv("compare_premiums.csv")
    cmp = Comparison(csv("compare_variance_components.csv"), premiums, csv("compare_credibility.csv"),
                     prob=0.9, posterior=posterior)
    eb = EBSummary(csv("eb_premiums.csv"), csv("eb_components.csv"),
                   singular=bool(json.loads((folder / "eb.json").read_text()).get("singular", False)))
    checks = pd.read_csv(folder / "reference_checks.csv")
    try:
        data = load_data(spec)
    except BayescredError:  # the report can be rebuilt without the data folder
        data = pd.DataFrame()
    classical = SimpleNamespace(table=csv("classical_table.csv"))
    return SimpleNamespace(spec=spec, data=data, comparison=cmp, posterior=posterior, checks=checks,
                           eb_summary=eb, classical=classical, manifest=manifest)


def report(run, out=None) -> Path:
    """Write the HTML report of a Run (or of a saved run folder); return its path.

    A run folder is verified against its manifest first (a damaged or incomplete one raises
    :class:`~bayescred.errors.RunFolderError`). Without ``out`` the report goes into the run's
    folder: its ``report.html`` and manifest are replaced in one transaction, under the lock.
    """
    folder, loaded = (Path(run), None) if isinstance(run, (str, Path)) else (run.out, run)
    if folder is None and out is None:
        raise ValueError("give out= (an HTML path) for a run that was not saved")
    if folder is not None and out is not None and Path(out).resolve().parent == folder.resolve():
        if Path(out).name not in REBUILT:
            raise RunFolderError(f"write the report outside the run folder {folder}, or as its report.html")
        out = None
    if out is not None:
        return write_report(loaded or _load_run(folder), Path(out))
    if not Path(folder).is_dir():  # refused here: the lock would create the folder's parents
        runfolder.verify(folder)
    with runfolder.lock(folder) as locked:
        if loaded is None:
            loaded = _load_run(locked, regenerate=REBUILT)
            files = loaded.manifest
        else:
            files = runfolder.verify(locked, regenerate=REBUILT)
        kept = {k: v for k, v in files.items() if k not in REBUILT}
        runfolder.commit(locked, lambda new: write_report(loaded, new / "report.html"), keep=kept)
    return locked / "report.html"


make_callable(__name__)  # bc.report(...) calls the function; the module stays importable
