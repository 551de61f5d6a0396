"""Run specifications: one TOML file per model x dataset in the top-level ``models/`` folder.

A spec names the model (a function of the same name in ``bayescred.credibility`` and
``bayescred.models``), its data, the arguments both take, the sampler settings and the
published reference values the run must reproduce::

    name = "hachemeister"
    model = "hachemeister"
    dataset = "hachemeister"            # bc.datasets.load(...), or the user's own data:
    # [data]
    # file = "losses.parquet"           # .csv or .parquet, relative to this file; or
    # sql = "select * from read_parquet('losses.parquet')"   # run by DuckDB
    # columns = {loss_ratio = "LR"}     # optional: name used below = column in the data

    [arguments]                          # passed to the classical function and the factory
    group = "state"
    ...

    [sampler]
    draws = 1000
    tune = 1000
    chains = 4
    random_seed = 20261121

    [[reference]]
    quantity = "classical.premium"       # see ``runner.lookup`` for the paths
    risk = 1
    value = 2055.165
    tol = "abs 0.0005"
    source = "actuar cm(); docs/reference-values.md §5.1"

The whole file is checked against a typed schema (pydantic) before anything is fitted: every
key, every argument of the named model with its type, the sampler settings, each reference.
A mistake raises :class:`~bayescred.errors.SpecError` naming the file and the field, e.g.
``spec field sampler.chains: ...``.
"""

from __future__ import annotations

import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, Field, StrictInt, StrictStr

from . import catalogue, datasets
from .catalogue._types import Name, Number, Strict as _Strict
from .errors import SpecError

SAMPLER_DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 1}


def model_names() -> tuple[str, ...]:
    """The catalogue's models (the values a spec's ``model`` may take)."""
    return catalogue.names()


# ------------------------------------------------------------------- the rest of the file
class SamplerSettings(_Strict):
    draws: Annotated[StrictInt, Field(ge=1)] = SAMPLER_DEFAULTS["draws"]
    tune: Annotated[StrictInt, Field(ge=0)] = SAMPLER_DEFAULTS["tune"]
    chains: StrictInt = SAMPLER_DEFAULTS["chains"]
    random_seed: Annotated[StrictInt, Field(ge=0)] = SAMPLER_DEFAULTS["random_seed"]

    @pydantic.field_validator("chains")
    @classmethod
    def _two_chains(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"at least 2 chains are needed (got {value}): the report's R-hat compares chains")
        return value


class EmpiricalBayes(_Strict):
    method: Literal["REML", "ML"] = "REML"


def parse_tol(text: str) -> tuple[str, float]:
    """``"abs 0.005"`` or ``"rel 1e-9"`` -> (kind, amount); the amount positive and finite."""
    kind, _, amount = str(text).strip().partition(" ")
    try:
        value = float(amount)
    except ValueError:
        value = math.nan
    if kind not in ("abs", "rel") or not (math.isfinite(value) and value > 0):
        raise ValueError(f"tol must read 'abs X' or 'rel X' with X a positive number, got {text!r}")
    return kind, value


def _check_tol(text: str) -> str:
    parse_tol(text)
    return text


Risk = StrictInt | StrictStr | list[StrictInt | StrictStr]


class ReferenceEntry(_Strict):
    quantity: Name
    value: Number
    tol: Annotated[StrictStr, pydantic.AfterValidator(_check_tol)]
    source: Name
    risk: Risk | None = None


def _check_prior(value):
    """A prior from a TOML file: 'flat', or a fixed finite value (a number, vector or matrix)."""
    if value == "flat":
        return value
    flat = value if isinstance(value, list) else [value]
    flat = [x for row in flat for x in (row if isinstance(row, list) else [row])]
    if flat and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in flat):
        return value
    raise ValueError(f"a prior in a spec is 'flat' or a finite number (or list of numbers) that fixes it, got {value!r}")


Prior = Annotated[typing.Any, pydantic.AfterValidator(_check_prior)]


class DataSource(_Strict):
    """The user's own data: a CSV or Parquet file or a DuckDB SQL query, with an optional
    renaming ``columns = {name used in [arguments] = column in the data}``. Relative paths
    (the file, and those in the query) resolve against ``directory``, by default the spec's folder."""

    file: Name | None = None
    sql: Name | None = None
    columns: dict[Name, Name] = {}
    directory: Name | None = None

    @pydantic.field_validator("file")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ValueError(f"file must end in .csv or .parquet, got {value!r}")
        return value

    @pydantic.model_validator(mode="after")
    def _one_source(self):
        if (self.file is None) == (self.sql is None):
            raise ValueError("give exactly one of file = \"...\" (CSV or Parquet) and sql = \"...\" (DuckDB)")
        return self

    def label(self) -> str:
        """How the report names the data: the file name, or the query."""
        return self.file if self.file is not None else f"DuckDB query: {self.sql}"


class SpecFile(_Strict):
    """The TOML file as written (the ``[[reference]]`` array is spelt in the singular there)."""

    name: Name
    title: StrictStr | None = None
    description: StrictStr = ""
    model: Name
    dataset: Name | None = None
    data: DataSource | None = None
    filter: StrictStr | None = None
    arguments: dict[str, typing.Any]
    priors: dict[str, Prior] | None = None
    sampler: SamplerSettings = SamplerSettings()
    empirical_bayes: EmpiricalBayes = EmpiricalBayes()
    reference: list[ReferenceEntry] = []

    @pydantic.field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in catalogue.names():
            raise ValueError(f"unknown model {value!r}; the catalogue has {', '.join(catalogue.names())}")
        return value

    @pydantic.field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str | None) -> str | None:
        if value is not None and value not in datasets.names():
            raise ValueError(f"unknown dataset {value!r}; `bayescred datasets` lists {', '.join(datasets.names())}")
        return value

    @pydantic.model_validator(mode="after")
    def _one_dataset(self):
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give exactly one of dataset = \"name\" (the catalogue) and a [data] table "
                             "(your own file or SQL query)")
        return self


# ------------------------------------------------------------------- what the runner uses
@dataclass(frozen=True)
class Reference:
    """One published value the run must reproduce."""

    quantity: str
    value: float
    tol: str
    source: str
    risk: object = None

    def __post_init__(self):
        try:
            parse_tol(self.tol)
        except ValueError as exc:
            raise SpecError(f"reference {self.quantity!r}: {exc}") from None

    def tolerance(self) -> tuple[str, float]:
        return parse_tol(self.tol)

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
    source: DataSource | None = None  # the user's own data, when ``dataset`` only labels it
    raw: dict = field(default_factory=dict)  # the validated TOML table, to write into the run folder

    def data_directory(self) -> Path:
        """The folder a user data source's relative paths resolve against."""
        if self.source is not None and self.source.directory is not None:
            return Path(self.source.directory)
        return self.path.parent

    def to_toml(self) -> str:
        """The spec as TOML for the run folder; a user data source's folder is made absolute so
        that ``bayescred report`` reloads the data from anywhere."""
        import tomli_w

        raw = dict(self.raw)
        if self.source is not None:
            raw["data"] = {**raw["data"], "directory": str(self.data_directory().resolve())}
        return tomli_w.dumps(raw)


def _field(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed(schema: type[BaseModel], loc) -> list[str]:
    """The keys allowed where ``loc`` (the path of an unknown key) points."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = schema.model_fields[part].annotation
        inner = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return []
        schema = inner[0]
    return sorted(schema.model_fields)


def _validate(schema: type[BaseModel], raw, path: Path, prefix=()):
    try:
        return schema.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = (*prefix, *err["loc"])
            if err["type"] == "extra_forbidden":
                msg = f"unknown key; allowed: {', '.join(_allowed(schema, err['loc']))}"
            elif err["type"] == "missing":
                msg = "missing (required)"
            else:
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] != "value_error":  # our own messages name the value already
                    msg += f", got {err['input']!r}"
            problems.append(f"spec field {_field(loc) or '(top level)'}: {msg}")
        raise SpecError(f"{path}: " + "; ".join(problems)) from None


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file against the schema; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return spec_from_dict(raw, path)


def spec_from_dict(raw: dict, path: str | Path) -> Spec:
    """Check a spec given as a dict (as TOML reads it) against the schema; ``path`` names it in
    errors, and its folder is where a ``[data]`` table's relative paths resolve."""
    path = Path(path)
    spec = _validate(SpecFile, raw, path)
    arguments = _validate(catalogue.get(spec.model).Arguments, spec.arguments, path, prefix=("arguments",))
    return Spec(
        name=spec.name,
        title=spec.title or spec.name,
        model=spec.model,
        dataset=spec.dataset if spec.data is None else spec.data.label(),
        arguments=arguments.model_dump(exclude_unset=True),
        path=path,
        filter=spec.filter,
        priors=spec.priors,
        sampler=spec.sampler.model_dump(),
        eb_method=spec.empirical_bayes.method,
        references=tuple(Reference(r.quantity, r.value, r.tol, r.source, r.risk) for r in spec.reference),
        description=spec.description,
        source=spec.data,
        raw=spec.model_dump(mode="json", exclude_none=True, exclude_unset=True),
    )
