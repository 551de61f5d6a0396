"""Run specifications: one TOML file per model x dataset in the top-level ``models/`` folder.

A spec names the model (a function of the same name in ``bayescred.credibility`` and
``bayescred.models``), its data, the arguments both take, the sampler settings and the
published reference values the run must reproduce::

    name = "hachemeister"
    model = "hachemeister"
    dataset = "hachemeister"            # bc.datasets.load(...)

    [arguments]                          # passed to the classical function and the factory
    group = "state"
    ...

    [sampler]
    draws = 1000
    tune = 1000
    chains = 4
    random_seed = 20261121

    [[reference]]
    quantity = "classical.premium"       # see ``lookup`` for the paths
    risk = 1
    value = 2055.165
    tol = "abs 0.0005"
    source = "actuar cm(); REFERENCE-VALUES.md §5.1"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError

MODELS = ("buhlmann", "buhlmann_straub", "hierarchical", "hachemeister", "crossed", "poisson_gamma")
SAMPLER_DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1}


@dataclass(frozen=True)
class Reference:
    """One published value the run must reproduce."""

    quantity: str
    value: float
    tol: str
    source: str
    risk: object = None

    def tolerance(self) -> tuple[str, float]:
        kind, _, amount = self.tol.partition(" ")
        if kind not in ("abs", "rel") or not amount:
            raise SpecError(f"reference {self.quantity!r}: tol must read 'abs X' or 'rel X', got {self.tol!r}")
        return kind, float(amount)

    def holds(self, got: float) -> bool:
        kind, amount = self.tolerance()
        if not math.isfinite(got):
            return False
        scale = abs(self.value) if kind == "rel" else 1.0
        return abs(got - self.value) <= amount * scale + 1e-12


@dataclass(frozen=True)
class Spec:
    """A parsed, validated run specification."""

    name: str
    title: str
    model: str
    dataset: str
    arguments: dict
    path: Path
    filter: str | None = None
    priors: dict | None = None
    sampler: dict = field(default_factory=lambda: dict(SAMPLER_DEFAULTS))
    eb_method: str = "REML"
    references: tuple[Reference, ...] = ()
    description: str = ""


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    known = {"name", "title", "model", "dataset", "arguments", "filter", "priors", "sampler",
             "empirical_bayes", "reference", "description"}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    for key in ("name", "model", "dataset", "arguments"):
        if key not in raw:
            raise SpecError(f"{path}: missing required key {key!r}")
    if raw["model"] not in MODELS:
        raise SpecError(f"{path}: model {raw['model']!r} is not one of {', '.join(MODELS)}")
    sampler = dict(SAMPLER_DEFAULTS)
    extra = set(raw.get("sampler", {})) - set(SAMPLER_DEFAULTS)
    if extra:
        raise SpecError(f"{path}: unknown sampler settings {sorted(extra)}")
    sampler.update(raw.get("sampler", {}))
    refs = []
    for i, r in enumerate(raw.get("reference", [])):
        missing = {"quantity", "value", "tol", "source"} - set(r)
        if missing:
            raise SpecError(f"{path}: reference #{i + 1} lacks {sorted(missing)}")
        ref = Reference(r["quantity"], float(r["value"]), r["tol"], r["source"], r.get("risk"))
        ref.tolerance()
        refs.append(ref)
    method = raw.get("empirical_bayes", {}).get("method", "REML")
    if method not in ("REML", "ML"):
        raise SpecError(f"{path}: empirical_bayes.method must be REML or ML, got {method!r}")
    return Spec(
        name=raw["name"],
        title=raw.get("title", raw["name"]),
        model=raw["model"],
        dataset=raw["dataset"],
        arguments=dict(raw["arguments"]),
        path=path,
        filter=raw.get("filter"),
        priors=raw.get("priors"),
        sampler=sampler,
        eb_method=method,
        references=tuple(refs),
        description=raw.get("description", ""),
    )
