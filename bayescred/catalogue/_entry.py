"""What a catalogue entry is: the one definition of a credibility model that every arm, the
spec, the report, the comparison and the studies read (docs/index.md, "One model, defined once").

An entry says, for one model:

* its arguments (the spec's ``[arguments]`` schema) and which arm reads which;
* the columns that name a risk;
* the classical estimator and the PyMC factory (by dotted name, loaded on first use);
* the empirical-Bayes fit of the same model and its summary per risk (:class:`EBSummary`);
* the variance components, by name and unit, that all three arms report;
* the covariance structure of the risk effects, stated in words for the report;
* optionally, the simulation study that knows the true premium (:class:`Study`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

ARMS = ("classical", "eb", "bayes")


@dataclass
class EBSummary:
    """What the comparison needs from an empirical-Bayes fit.

    ``premiums``: one row per risk with columns premium, cond_sd, pev_sd, mse_sd and
    (where defined) Z. ``components``: one row per variance component (between, within, ...)
    with columns estimate, lower, upper (profile-likelihood interval at ``prob``) and unit.
    """

    premiums: pd.DataFrame
    components: pd.DataFrame
    method: str = "REML"
    prob: float = 0.9
    singular: bool = False
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A simulation study of the model with known truth (the coverage study reads it).

    ``number`` keys the study's random streams (fixed once chosen: results stay reproducible);
    ``simulator`` names the function of :mod:`bayescred.datasets.simulate`; ``arguments`` are
    the model's arguments on a simulated portfolio (columns risk, period, ...);
    ``truth(sim)`` the true premium of every risk (the premium the three arms estimate).
    """

    number: int
    label: str
    simulator: str
    arguments: dict
    truth: Callable


def _load(path: str):
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


class Entry:
    """One catalogue model. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    title: ClassVar[str]
    text: ClassVar[str]  # the model in formulas, HTML, for the report
    Arguments: ClassVar[type[BaseModel]]
    classical_function: ClassVar[str]  # "module:function"
    factory_function: ClassVar[str]
    eb_fit: ClassVar[str]  # "module:Class" of what :meth:`eb` returns
    reads: ClassVar[dict[str, tuple[str, ...]]]  # arm -> the argument names it reads
    study: ClassVar[Study | None] = None
    studied_as: ClassVar[str] = "buhlmann_straub"  # the studied model whose coverage the report quotes

    # ------------------------------------------------------------------ arguments
    def arguments_for(self, arm: str, args: dict) -> dict:
        """The arguments of ``args`` that ``arm`` ("classical", "eb" or "bayes") reads."""
        return {k: v for k, v in args.items() if k in self.reads[arm]}

    def risks(self, args: dict) -> list[str]:
        """The columns whose values name a risk (a cell for crossed and nested models)."""
        return [args["group"]]

    def columns(self, args: dict) -> list[str]:
        """Every column of the data the model reads (the arguments named in ``column_keys``)."""
        cols = []
        for key in self.column_keys:
            value = args.get(key)
            cols.extend([value] if isinstance(value, str) else (value or []))
        return list(dict.fromkeys(cols))

    column_keys: ClassVar[tuple[str, ...]] = ("group", "response", "weight")

    # ------------------------------------------------------------------ the three arms
    def classical(self, data, args: dict):
        """The classical (moment) fit."""
        return _load(self.classical_function)(data, **self.arguments_for("classical", args))

    def bayes(self, data, args: dict, priors=None):
        """The PyMC model (the factory checks the data and the priors)."""
        return _load(self.factory_function)(data, priors=priors, **self.arguments_for("bayes", args))

    def eb(self, data, args: dict, method: str = "REML"):
        """The empirical-Bayes fit of the same model."""
        raise NotImplementedError

    def is_eb_fit(self, fit) -> bool:
        """Whether ``fit`` is this model's empirical-Bayes fit (what :meth:`eb` returns)."""
        return isinstance(fit, _load(self.eb_fit))

    def eb_label(self, method: str) -> str:
        """How the report and the progress lines name the EB fit."""
        return method

    def premiums(self, fit, args: dict, data=None) -> pd.DataFrame:
        """The EB premium per risk with its three uncertainty measures (cond_sd, pev_sd,
        mse_sd), indexed by the risk; ``data``: the rows fitted, where the fit does not keep them."""
        raise NotImplementedError

    def eb_summary(self, fit, args: dict, data=None, prob: float = 0.9) -> EBSummary:
        """Premium, Z and the three uncertainty measures per risk; components by name and unit.
        ``data``: the rows fitted, where the fit does not keep them."""
        raise NotImplementedError

    # ------------------------------------------------------------------ naming
    def components(self, args: dict) -> dict[str, str]:
        """The variance components every arm reports: name -> unit."""
        raise NotImplementedError

    def classical_components(self, fit, args: dict) -> dict[str, float]:
        """The classical fit's variance components under the names of :meth:`components`."""
        out = {}
        for name in self.components(args):
            value = _component(fit.structure, name)
            if value is not None:
                out[name] = value
        return out

    def posterior_names(self, args: dict) -> dict[str, str]:
        """Posterior component names that differ from :meth:`components`' (old -> new)."""
        return {}

    def structure(self, args: dict) -> str:
        """The covariance structure of the risk effects, one sentence, the same for every arm."""
        return "one variance per random term (independent risk effects)"

    # ------------------------------------------------------------------ simulated data
    def example(self, seed: int = 1) -> tuple[pd.DataFrame, dict]:
        """A simulated portfolio of this model (``bayescred.datasets.simulate``, default settings)
        and the arguments that read it: the data of the catalogue's conformance tests."""
        from ..datasets import simulate

        return getattr(simulate, self.study.simulator)(seed=seed).data, dict(self.study.arguments)

    def __repr__(self) -> str:
        return f"<catalogue entry {self.name!r}: {self.title}>"


def _component(structure: dict, name: str):
    """``between``/``within``/``lam`` or ``between[term]`` read from a classical ``.structure``."""
    key, _, term = name.partition("[")
    value = structure.get(key)
    if value is None:
        return None
    if not term:
        return float(value) if np.ndim(value) == 0 else None
    term = term[:-1]
    if isinstance(value, dict):
        return float(value[term]) if term in value else None
    if isinstance(value, pd.DataFrame) and term in value.index:
        return float(value.loc[term, term])
    return None


def table(components: dict[str, tuple], units: dict[str, str]) -> pd.DataFrame:
    """A components frame (estimate, lower, upper, unit) from name -> (estimate, lower, upper)."""
    names = list(components)
    return pd.DataFrame(
        {
            "estimate": [float(components[n][0]) for n in names],
            "lower": [float(components[n][1]) for n in names],
            "upper": [float(components[n][2]) for n in names],
            "unit": [units[n] for n in names],
        },
        index=pd.Index(names, name="component"),
    )
