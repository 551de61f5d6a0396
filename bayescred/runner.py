"""One reproducible run: classical + empirical Bayes + full Bayes + comparison + report.

``run_spec("models/hachemeister.toml", out="runs/hachemeister")`` does, in order:

1. load the spec and its data (bundled, from the shared folder for real datasets, or the
   user's own CSV, Parquet file or DuckDB query: see :func:`open_data`);
2. the classical fit;
3. the empirical-Bayes fit of the same model (for the Gaussian models ``bc.lmm`` on the mixed
   model that *is* the credibility model), with each risk's premium and its three
   uncertainty measures;
4. the posterior of the model's PyMC factory, sampled by ``bc.sample``;
5. the comparison tables, the check of the spec's published reference values;
6. everything saved under ``out`` (posterior NetCDF, tables CSV, the HTML report and a
   manifest) as one transaction (:mod:`bayescred.runfolder`).

The model's catalogue entry (:mod:`bayescred.catalogue`) says what each step fits: the runner
itself knows no model by name. The spec, the out folder, the data and the priors are all
checked before step 2.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


from . import catalogue, runfolder
from .sources import open_data, rows
from .catalogue import EBSummary
from .compare import Comparison, compare
from .errors import BayescredError, SamplerError
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


def _run(spec: Spec, out: Path | None, fast, data_dir, progress) -> Run:
    from .sampling import sample

    fast = os.environ.get("BAYESCRED_FAST") == "1" if fast is None else fast
    sampler = {**spec.sampler, **(FAST_SAMPLER if fast else {})}
    steps, timings = 6, {}

    def step(i, what):
        progress(f"[{i}/{steps}] {spec.name}: {what}")
        return time.perf_counter()

    entry = catalogue.get(spec.model)
    args = dict(spec.arguments)
    t = step(1, f"data '{spec.dataset}' and the Bayesian model")
    data = open_data(spec, data_dir)
    model = entry.bayes(data, args, priors=spec.priors)  # checks data and priors
    timings["data"] = time.perf_counter() - t

    t = step(2, f"classical credibility ({spec.model})")
    classical = entry.classical(data, args)
    timings["classical"] = time.perf_counter() - t

    t = step(3, f"empirical Bayes ({entry.eb_label(spec.eb_method)})")
    data = rows(data, entry.columns(args))
    eb = entry.eb(data, args, spec.eb_method)
    eb_summary = entry.eb_summary(eb, args, data)
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
    comparison = compare(eb_summary, posterior, classical=classical, arguments=args)
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
