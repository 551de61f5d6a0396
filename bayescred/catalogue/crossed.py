"""Crossed classification (credit insurance): y_ijt = m + a_i + b_j + c_ij + ε_ijt
(Dannenburg, Kaas & Goovaerts 1996; docs/formulas.md §6).
As a mixed model: ``y ~ 1 + (1 | a) + (1 | b) + (1 | a:b)``; from cell summaries with the pooled
within-cell sum of squares."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from ._gaussian import GaussianEntry
from ._types import Count, Likelihood, Name, NonNegative, Positive, Strict


class Arguments(Strict):
    factors: Annotated[list[Name], Field(min_length=2, max_length=2)]
    response: Name
    weight: Name | None = None
    interaction: StrictBool = True
    within_ss: Positive | None = None
    within_df: Count | None = None
    method: Literal["reml", "moments"] = "reml"
    between: dict[str, NonNegative] | None = None
    within: NonNegative | None = None
    likelihood: Likelihood = "marginal"


class Crossed(GaussianEntry):
    name = "crossed"
    title = "Crossed classification"
    text = ("y<sub>ijt</sub> = m + a<sub>i</sub> + b<sub>j</sub> + c<sub>ij</sub> + ε<sub>ijt</sub> "
            "(Dannenburg, Kaas &amp; Goovaerts 1996; seed 002_112bee5238c97912.txt eqs 61–62; docs/formulas.md §6). "
            "As an LMM: y ~ 1 + (1 | a) + (1 | b) + (1 | a:b).")
    Arguments = Arguments
    classical_function = "bayescred.credibility:crossed"
    factory_function = "bayescred.models:crossed"
    reads = {
        "classical": ("factors", "response", "weight", "interaction", "within_ss", "within_df", "method",
                      "between", "within"),
        "eb": ("factors", "response", "weight", "interaction", "within_ss", "within_df"),
        "bayes": ("factors", "response", "weight", "interaction", "within_ss", "within_df", "likelihood"),
    }
    column_keys = ("factors", "response", "weight")

    def risks(self, args):
        return list(args["factors"])

    def terms(self, args) -> list[str]:
        a, b = args["factors"]
        return [a, b, f"{a}:{b}"] if args.get("interaction", True) else [a, b]

    def example(self, seed=1):
        from ..datasets import simulate

        data = simulate.crossed((4, 3), (8, 15), seed=seed).data
        return data, {"factors": ["status", "experience"], "response": "payment"}

    def formula(self, args):
        return f"{args['response']} ~ 1 + " + " + ".join(f"(1 | {t})" for t in self.terms(args))

    def components(self, args):
        units = {"within": "variance of one observation of unit weight (response units squared)"}
        for term in self.terms(args):
            units[f"between[{term}]"] = f"variance of the {term} effect (response units squared)"
        return units


ENTRY = Crossed()
