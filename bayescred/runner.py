"""One reproducible run: classical + empirical Bayes + full Bayes + comparison + report.

``run_spec("models/hachemeister.toml", out="runs/hachemeister")`` does, in order:

1. load the spec and its data (bundled, from the shared folder for real datasets, or the
   user's own CSV, Parquet file or DuckDB query: see :func:`open_data`);
2. the classical fit ``bc.credibility.<model>(data, **arguments)``;
3. the empirical-Bayes fit: the mixed model that *is* that credibility model
   (``bc.lmm`` with the formula of :func:`eb_formula`, or the exact Poisson–gamma
   marginal ML), with each risk's premium and its three uncertainty measures;
4. the posterior of ``bc.models.<model>(data, **arguments)`` sampled by ``bc.sample``;
5. the comparison tables, the check of the spec's published reference values;
6. everything saved under ``out`` (posterior NetCDF, tables CSV, the HTML report and a
   manifest) as one transaction (:mod:`bayescred.runfolder`).

The spec, the out folder, the data and the priors are all checked before step 2.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import narwhals.stable.v2 as nw

from . import datasets, filters, runfolder
from .compare import Comparison, EBSummary, compare
from .errors import BayescredError, DataSourceError, MissingColumnError, SamplerError
from .spec import Spec, load_spec

FAST_SAMPLER = {"draws": 300, "tune": 300, "chains": 2}


@dataclass
class Run:
    """Everything a run produced; ``out`` is where it was saved."""

    spec: Spec
    data: pd.DataFrame
    classical: object
    eb: object
    eb_summary: EBSummary
    posterior: object
    comparison: Comparison
    checks: pd.DataFrame
    timings: dict
    out: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks["ok"].all()) if len(self.checks) else True


# --------------------------------------------------------------------------- data
def load_data(spec: Spec, data_dir=None) -> pd.DataFrame:
    """The spec's data with its ``filter`` applied, as pandas rows (a lazy source: the model's
    columns only, see :func:`rows`)."""
    return rows(open_data(spec, data_dir), spec.arguments)


def open_data(spec: Spec, data_dir=None):
    """The spec's data with its ``filter`` applied: a catalogue dataset (bundled, or real from
    ``data_dir``) as pandas, or the user's ``[data]``: a CSV file (pandas), a Parquet file (a
    lazy polars scan) or a DuckDB query (a DuckDB relation), its columns renamed as mapped.
    Lazy inputs stay lazy: the filter and the per-risk sums run in the engine."""
    if spec.source is None:
        data = datasets.load(spec.dataset, data_dir=data_dir)
    else:
        data = _user_data(spec)
    if spec.filter:
        data = filters.apply(data, spec.filter)
    return data


def _user_data(spec: Spec):
    source, folder = spec.source, spec.data_directory()
    if source.file is not None:
        path = folder / source.file
        if not path.is_file():
            raise DataSourceError(f"spec field data.file: no such file {str(path)!r}")
        try:
            if path.suffix.lower() == ".csv":
                data = pd.read_csv(path)
            else:
                pl = _engine("polars", "reading a Parquet file")
                data = pl.scan_parquet(path)
                data.collect_schema()  # a damaged file fails here, not in the middle of a fit
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataSourceError(f"spec field data.file: cannot read {str(path)!r}: {_first_line(exc)}") from exc
        except Exception as exc:  # polars' own errors (ComputeError, ...) share no base class with these
            if type(exc).__module__.split(".")[0] != "polars":
                raise
            raise DataSourceError(f"spec field data.file: cannot read {str(path)!r}: {_first_line(exc)}") from exc
        where = source.file
    else:
        duckdb = _engine("duckdb", "an SQL query")
        con = duckdb.connect()
        con.execute("set file_search_path = ?", [str(folder)])  # relative paths in the query: the spec's folder
        try:
            data = con.sql(source.sql)
        except duckdb.Error as exc:
            raise DataSourceError(f"spec field data.sql: DuckDB refused the query: {_first_line(exc)}") from exc
        if data is None:
            raise DataSourceError("spec field data.sql: the query returns no table (write a select)")
        where = "the query"
    if source.columns:
        names = nw.from_native(data).collect_schema().names()
        for new, old in source.columns.items():
            if old not in names:
                raise MissingColumnError(f"spec field data.columns.{new}: column {old!r} is not in {where}; "
                                         f"it has {', '.join(map(str, names))}")
        data = nw.from_native(data).rename({old: new for new, old in source.columns.items()}).to_native()
    return data


def _engine(name: str, what: str):
    """The optional engine package ``name`` (``pip install bayescred[engines]``), imported on use."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise DataSourceError(f"spec field data: {what} needs the {name} package "
                              "(pip install 'bayescred[engines]')") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _model_columns(args: dict) -> list[str]:
    """The columns a model's arguments name (response, risks, weights, rating factors, ...)."""
    cols = []
    for key in ("group", "time", "response", "weight", "claims", "exposure"):
        if args.get(key):
            cols.append(args[key])
    for key in ("levels", "factors", "fixed", "covariates"):
        cols.extend(args.get(key) or [])
    return list(dict.fromkeys(cols))


def rows(data, args: dict) -> pd.DataFrame:
    """The model's columns of ``data`` as pandas rows, for the arms that need each row: the
    REML fit (``bc.lmm`` fits the observations, not cell statistics) and the report's data
    summary. A pandas frame is returned as is; a lazy one is collected with those columns only."""
    if isinstance(data, pd.DataFrame):
        return data
    frame = nw.from_native(data)
    cols = [c for c in _model_columns(args) if c in frame.collect_schema().names()]
    frame = frame.select(cols)
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    return frame.to_pandas()


# --------------------------------------------------------------------------- EB side
def _time_column(data: pd.DataFrame, args: dict) -> tuple[pd.DataFrame, str, float]:
    """Hachemeister: the (centred) time regressor the classical fit uses, and the future period."""
    group, time_col, weight = args["group"], args["time"], args.get("weight")
    w = data[weight] if weight else pd.Series(1.0, index=data.index)
    centering = args.get("centering", "origin")
    t = data[time_col].astype(float)
    if centering == "global":
        centre = pd.Series(np.average(t, weights=w), index=data.index)
    elif centering == "group":
        centre = (t * w).groupby(data[group]).transform("sum") / w.groupby(data[group]).transform("sum")
    else:
        centre = pd.Series(0.0, index=data.index)
    out = data.assign(time_c=t - centre, centre=centre)
    future = float(args.get("future", t.max() + 1))
    return out, "time_c", future


def eb_formula(model: str, args: dict) -> str:
    """The lme4 formula of the mixed model equivalent to a credibility model."""
    y = args.get("response")
    if model in ("buhlmann", "buhlmann_straub"):
        return f"{y} ~ 1 + (1 | {args['group']})"
    if model == "hierarchical":
        levels = args["levels"]
        terms = [":".join(levels[: i + 1]) for i in range(len(levels))]
        return f"{y} ~ 1 + " + " + ".join(f"(1 | {t})" for t in terms)
    if model == "hachemeister":
        return f"{y} ~ 1 + time_c + (1 + time_c || {args['group']})"
    if model == "crossed":
        a, b = args["factors"]
        inter = f" + (1 | {a}:{b})" if args.get("interaction", True) else ""
        return f"{y} ~ 1 + (1 | {a}) + (1 | {b}){inter}"
    raise ValueError(f"no Gaussian mixed model for {model!r}")


def _risk_columns(model: str, args: dict) -> list[str]:
    if model == "hierarchical":
        return list(args["levels"])
    if model == "crossed":
        return list(args["factors"])
    return [args["group"]]


def _index(frame: pd.DataFrame, cols: list[str]) -> pd.Index:
    if len(cols) == 1:
        return pd.Index(frame[cols[0]].to_numpy(), name=cols[0])
    return pd.MultiIndex.from_frame(frame[cols])


def fit_eb(model: str, data: pd.DataFrame, args: dict, method: str = "REML", prob: float = 0.9):
    """Fit the empirical-Bayes model and summarise it per risk (premium + three measures)."""
    from .lmm import lmm
    from .lmm.inference import profile_between

    if model == "poisson_gamma":
        from .lmm.poisson_gamma import poisson_gamma_eb

        keys = ("group", "claims", "exposure", "fixed", "base")
        fit = poisson_gamma_eb(data, **{k: args[k] for k in keys if k in args})
        ranef = fit.ranef()
        if args.get("fixed"):
            # premium = the company's frequency u_i mu_i+ / e_i+, as the factory's: the SDs of u_i
            # scaled by the fitted rating-factor frequency (whose own estimation error is not added)
            scale = ranef["expected"] / data.groupby(args["group"])[args["exposure"]].sum().reindex(ranef.index)
            prem = ranef[["u", "cond_sd", "pev_sd", "mse_sd"]].mul(scale, axis=0).rename(columns={"u": "premium"})
            prem["Z"] = ranef["Z"]
        else:  # premium = claim frequency per unit exposure, as the classical estimator
            levels = ranef.index
            newdata = pd.DataFrame({args["group"]: levels, args["exposure"]: 1.0})
            prem = fit.predict(newdata)[["premium", "cond_sd", "pev_sd", "mse_sd"]]
            prem.index = levels
            prem["Z"] = ranef["Z"].to_numpy()
        comps = pd.DataFrame({"estimate": [fit.lam]}, index=["lam"])  # Var(u): relative scale
        return fit, EBSummary(prem, comps, method="ML", prob=prob, singular=bool(getattr(fit, "boundary", False)))

    frame = data
    extra = {}
    if model == "hachemeister":
        frame, _, future = _time_column(data, args)
        extra["future"] = future
    formula = eb_formula(model, args)
    kwargs = {"weights": args.get("weight"), "method": method}
    if "within_ss" in args:
        kwargs.update(within_ss=args["within_ss"], within_df=args["within_df"])
    fit = lmm(formula, frame, **kwargs)
    cols = _risk_columns(model, args)
    newdata = frame[cols].drop_duplicates().sort_values(cols).reset_index(drop=True)
    if model == "hachemeister":
        centre = frame.groupby(args["group"])["centre"].first()
        newdata["time_c"] = extra["future"] - newdata[args["group"]].map(centre).to_numpy()
    pred = fit.predict(newdata)
    prem = pred[["premium", "cond_sd", "pev_sd", "mse_sd"]].copy()
    prem.index = _index(newdata, cols)
    vc = fit.varcorr
    comps = {"within": fit.sigma2}
    intervals = fit.confint(prob, parm="theta_")  # profile-likelihood intervals of the SDs; squared below
    lower, upper = {}, {}
    res = intervals[intervals["grp"] == "Residual"].iloc[0]
    lower["within"], upper["within"] = res["lower"] ** 2, res["upper"] ** 2
    if model in ("buhlmann", "buhlmann_straub"):
        tau2 = float(vc.loc[vc["grp"] == args["group"], "vcov"].iloc[0])
        comps["between"] = tau2
        row = intervals[intervals["grp"] == args["group"]].iloc[0]
        lower["between"], upper["between"] = row["lower"] ** 2, row["upper"] ** 2
        w = data.groupby(args["group"])[args["weight"]].sum() if args.get("weight") else data.groupby(args["group"]).size()
        prem["Z"] = (w * tau2 / (w * tau2 + fit.sigma2)).reindex(prem.index).to_numpy()
        extra["profile"] = profile_between(fit, np.sqrt(max(lower["between"], 1e-12 * tau2)) / 30,
                                           np.sqrt(max(upper["between"], tau2)) * 3)
    else:
        for (_, row), (_, ci) in zip(vc[vc["grp"] != "Residual"].iterrows(), intervals.iloc[:-1].iterrows()):
            name = f"between[{row['grp']}]" if row["var1"] == "(Intercept)" else f"between[{row['grp']}:{row['var1']}]"
            comps[name], lower[name], upper[name] = row["vcov"], ci["lower"] ** 2, ci["upper"] ** 2
    if model == "hachemeister":  # the REML U for the ellipse picture (diagonal: the || model)
        extra["between_matrix"] = np.diag(vc.loc[(vc["grp"] != "Residual") & vc["var2"].isna(), "vcov"].to_numpy(float))
    components = pd.DataFrame({"estimate": pd.Series(comps), "lower": pd.Series(lower), "upper": pd.Series(upper)})
    return fit, EBSummary(prem, components, method=method, prob=prob, singular=bool(fit.singular), extra=extra)


# --------------------------------------------------------------------------- references
def lookup(run_parts: dict, quantity: str, risk=None) -> float:
    """Value of a reference path: ``classical.structure.<key>[.<sub>]``,
    ``classical.<column>`` (with ``risk``), ``eb.premium`` / ``eb.<measure>`` (with ``risk``),
    ``eb.fixef.<name>``, ``eb.sigma2``, ``eb.criterion``, ``eb.varcorr.<grp>``, ``eb.lam``."""
    head, _, rest = quantity.partition(".")
    if head == "classical":
        fit = run_parts["classical"]
        if rest.startswith("structure."):
            value = fit.structure
            for key in rest.split(".")[1:]:
                value = value[key]
            return float(value)
        return float(fit.table.loc[_risk_key(fit.table.index, risk), rest])
    if head == "eb":
        fit, summary = run_parts["eb"], run_parts["eb_summary"]
        if rest in summary.premiums.columns:
            return float(summary.premiums.loc[_risk_key(summary.premiums.index, risk), rest])
        if rest.startswith("fixef."):
            return float(fit.fixef[rest.split(".", 1)[1]])
        if rest.startswith("varcorr."):
            grp = rest.split(".", 1)[1]
            vc = fit.varcorr
            return float(vc.loc[vc["grp"] == grp, "vcov"].iloc[0])
        return float(getattr(fit, rest))
    raise KeyError(f"unknown reference quantity {quantity!r}")


def _risk_key(index: pd.Index, risk):
    if isinstance(index, pd.MultiIndex):
        return tuple(risk)
    return type(index[0])(risk) if not isinstance(index[0], str) else str(risk)


def check_references(spec: Spec, parts: dict) -> pd.DataFrame:
    rows = []
    for ref in spec.references:
        try:
            got = lookup(parts, ref.quantity, ref.risk)
            ok = ref.holds(got)
        except (KeyError, IndexError, AttributeError, TypeError) as exc:
            got, ok = float("nan"), False
            ref_note = f"lookup failed: {exc}"
        else:
            ref_note = ""
        rows.append({"quantity": ref.quantity, "risk": ref.risk, "expected": ref.value, "got": got,
                     "tol": ref.tol, "ok": ok, "source": ref.source, "note": ref_note})
    return pd.DataFrame(rows, columns=["quantity", "risk", "expected", "got", "tol", "ok", "source", "note"])


# --------------------------------------------------------------------------- the run
def run_spec(spec_path, out=None, *, fast: bool | None = None, data_dir=None, progress=print) -> Run:
    """Run a spec (a TOML file, or a :class:`~bayescred.spec.Spec` built in memory as by
    ``bayescred fit --model ...``) end to end and (with ``out``) save it and write its report.

    Everything a user can get wrong is refused before the first fit: the spec against its
    schema, the out folder (writable, not locked by another run: the lock is held until the run
    is saved), the data and the priors (the Bayesian model is built first).
    """
    spec = spec_path if isinstance(spec_path, Spec) else load_spec(spec_path)
    if out is None:
        return _run(spec, None, fast, data_dir, progress)
    with runfolder.lock(out) as folder:
        return _run(spec, folder, fast, data_dir, progress)


def _accepted(fn, args: dict) -> dict:
    """The arguments ``fn`` takes (the spec's schema knows each key belongs to the classical
    function, the factory or the empirical-Bayes fit of its model)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in args.items() if k in params}


def _run(spec: Spec, out: Path | None, fast, data_dir, progress) -> Run:
    from . import credibility, models
    from .sampling import sample

    fast = os.environ.get("BAYESCRED_FAST") == "1" if fast is None else fast
    sampler = {**spec.sampler, **(FAST_SAMPLER if fast else {})}
    steps, timings = 6, {}

    def step(i, what):
        progress(f"[{i}/{steps}] {spec.name}: {what}")
        return time.perf_counter()

    t = step(1, f"data '{spec.dataset}' and the Bayesian model")
    data = open_data(spec, data_dir)
    args = dict(spec.arguments)
    factory = getattr(models, spec.model)
    model = factory(data, priors=spec.priors, **_accepted(factory, args))  # checks data and priors
    timings["data"] = time.perf_counter() - t

    t = step(2, f"classical credibility ({spec.model})")
    estimator = getattr(credibility, spec.model)
    classical = estimator(data, **_accepted(estimator, args))
    timings["classical"] = time.perf_counter() - t

    t = step(3, "empirical Bayes (" + ("exact marginal ML" if spec.model == "poisson_gamma" else spec.eb_method) + ")")
    data = rows(data, args)
    eb, eb_summary = fit_eb(spec.model, data, args, spec.eb_method)
    timings["empirical_bayes"] = time.perf_counter() - t

    t = step(4, f"full Bayes: {sampler['chains']} chains x {sampler['draws']} draws")
    try:
        posterior = sample(model, **sampler)
    except BayescredError:
        raise
    except Exception as exc:  # a sampler crash (e.g. a panic in its compiled code) is one sentence too
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SamplerError(f"the sampler stopped with {type(exc).__name__}: {first}") from exc
    timings["bayes"] = time.perf_counter() - t

    t = step(5, "comparison and reference values")
    comparison = compare(eb_summary, posterior, classical=classical)
    checks = check_references(spec, {"classical": classical, "eb": eb, "eb_summary": eb_summary})
    timings["compare"] = time.perf_counter() - t

    run = Run(spec, data, classical, eb, eb_summary, posterior, comparison, checks, timings)
    if out is not None:
        t = step(6, f"saving to {out} and writing the report")
        _save(run, out)
        timings["report"] = time.perf_counter() - t
    failed = checks[~checks["ok"]]
    for _, row in failed.iterrows():
        progress(f"REFERENCE MISSED: {row['quantity']} risk={row['risk']}: expected {row['expected']} "
                 f"({row['tol']}), got {row['got']} [{row['source']}] {row['note']}")
    if len(checks):
        progress(f"{spec.name}: {len(checks) - len(failed)}/{len(checks)} reference values reproduced")
    else:
        progress(f"{spec.name}: no reference values")
    return run


def save(run: Run, out) -> Path:
    """Save the run under ``out`` as one transaction (see :mod:`bayescred.runfolder`): its
    artefacts, HTML report and manifest appear together, or the previous run stays."""
    with runfolder.lock(out) as folder:
        return _save(run, folder)


def _save(run: Run, out: Path) -> Path:
    from .report import write_report

    def fill(folder: Path) -> None:
        if run.spec.source is None:
            (folder / "spec.toml").write_bytes(run.spec.path.read_bytes())
        else:  # the user's data: its folder made absolute, so `bayescred report` reloads it
            (folder / "spec.toml").write_text(run.spec.to_toml(), encoding="utf-8")
        run.posterior.to_netcdf(folder / "posterior.nc", engine="h5netcdf")
        run.classical.table.to_csv(folder / "classical_table.csv")
        run.eb_summary.premiums.to_csv(folder / "eb_premiums.csv")
        run.eb_summary.components.to_csv(folder / "eb_components.csv")
        run.comparison.premiums.to_csv(folder / "compare_premiums.csv")
        run.comparison.variance_components.to_csv(folder / "compare_variance_components.csv")
        run.comparison.credibility.to_csv(folder / "compare_credibility.csv")
        run.checks.to_csv(folder / "reference_checks.csv", index=False)
        (folder / "eb.json").write_text(json.dumps(_eb_dict(run.eb), indent=1, default=str))
        (folder / "timings.json").write_text(json.dumps(run.timings, indent=1))
        write_report(run, folder / "report.html")

    runfolder.commit(out, fill)
    run.out = out
    return out


def _eb_dict(eb) -> dict:
    try:
        return eb.to_dict()
    except Exception as exc:  # a report must not fail on a summary
        return {"error": str(exc)}
