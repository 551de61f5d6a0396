"""Hierarchical (Jewell) credibility: X_sjt = m + Ξ_s + Ξ_sj + ε_sjt (docs/formulas.md §3).
As a mixed model: ``y ~ 1 + (1 | sector) + (1 | sector:risk)`` with precision weights w."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ._gaussian import GaussianEntry
from ._types import Count, Likelihood, Name, NonNegative, Positive, Strict


class Arguments(Strict):
    levels: Annotated[list[Name], Field(min_length=2)]
    response: Name
    weight: Name | None = None
    method: Literal["Buhlmann-Gisler", "Ohlsson", "iterative"] = "Buhlmann-Gisler"
    between: dict[str, NonNegative] | None = None
    within: NonNegative | None = None
    tol: Positive = 1e-13
    maxit: Count = 10000
    likelihood: Likelihood = "marginal"


class Hierarchical(GaussianEntry):
    name = "hierarchical"
    title = "Hierarchical (Jewell)"
    text = ("X<sub>sjt</sub> = m + Ξ<sub>s</sub> + Ξ<sub>sj</sub> + ε<sub>sjt</sub> (Jewell; docs/formulas.md §3). "
            "As an LMM: y ~ 1 + (1 | sector) + (1 | sector:risk), weights w.")
    Arguments = Arguments
    classical_function = "bayescred.credibility:hierarchical"
    factory_function = "bayescred.models:hierarchical"
    reads = {
        "classical": ("levels", "response", "weight", "method", "between", "within", "tol", "maxit"),
        "eb": ("levels", "response", "weight"),
        "bayes": ("levels", "response", "weight", "likelihood"),
    }
    column_keys = ("levels", "response", "weight")

    def risks(self, args):
        return list(args["levels"])

    def example(self, seed=1):
        from ..datasets import simulate

        data = simulate.hierarchical((6, 5), 4, seed=seed).data
        return data, {"levels": ["sector", "risk"], "response": "loss", "weight": "weight"}

    def formula(self, args):
        levels = args["levels"]
        terms = [":".join(levels[: i + 1]) for i in range(len(levels))]
        return f"{args['response']} ~ 1 + " + " + ".join(f"(1 | {t})" for t in terms)

    def components(self, args):
        units = {"within": "variance of one observation of unit weight (response units squared)"}
        for level in args["levels"]:
            units[f"between[{level}]"] = f"variance of the {level} effect (response units squared)"
        return units

    def term_component(self, grp, var1, args):
        return f"between[{grp.split(':')[-1]}]"


ENTRY = Hierarchical()
