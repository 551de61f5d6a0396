"""Bühlmann–Straub: X_jt = m + Ξ_j + ε_jt, Var ε_jt = σ²/w_jt (docs/formulas.md §2).
As a mixed model: ``y ~ 1 + (1 | risk)`` with precision weights w."""

from __future__ import annotations

from typing import Literal

from ._types import Likelihood, Name, NonNegative, Number, Positive, Strict
from ._entry import Study
from ._gaussian import GaussianEntry, between_profile, one_factor_credibility

UNITS = {
    "between": "variance of the risk premium m + Ξ_j (response units squared)",
    "within": "variance of one observation of unit weight (response units squared)",
}


class Arguments(Strict):
    group: Name
    response: Name
    weight: Name
    between: NonNegative | None = None
    within: NonNegative | None = None
    collective: Number | None = None
    likelihood: Likelihood = "marginal"
    method: Literal["unbiased", "iterative"] = "unbiased"
    tol: Positive = 1e-13


def _next_premium(sim):
    return sim.effects["mean"]


class BuhlmannStraub(GaussianEntry):
    name = "buhlmann_straub"
    title = "Bühlmann–Straub"
    text = ("X<sub>jt</sub> = m + Ξ<sub>j</sub> + ε<sub>jt</sub>, Var ε<sub>jt</sub> = σ²/w<sub>jt</sub>; "
            "Z<sub>j</sub> = w<sub>j•</sub>/(w<sub>j•</sub> + k); premium = Z<sub>j</sub> X<sub>j</sub> + "
            "(1 − Z<sub>j</sub>) X<sub>Z</sub> (seed 004_07f8365c92996b9b.txt eqs 3.14–3.23; docs/formulas.md §2). "
            "As an LMM: y ~ 1 + (1 | risk), weights w.")
    Arguments = Arguments
    classical_function = "bayescred.credibility:buhlmann_straub"
    factory_function = "bayescred.models:buhlmann_straub"
    reads = {
        "classical": ("group", "response", "weight", "method", "tol", "between", "within", "collective"),
        "eb": ("group", "response", "weight"),
        "bayes": ("group", "response", "weight", "likelihood"),
    }
    study = Study(0, "Bühlmann–Straub", "buhlmann_straub",
                  {"group": "risk", "response": "loss", "weight": "weight"}, _next_premium)

    def formula(self, args):
        return f"{args['response']} ~ 1 + (1 | {args['group']})"

    def components(self, args):
        return dict(UNITS)

    def term_component(self, grp, var1, args):
        return "between"

    def add_credibility(self, fit, args, premiums, comps):
        one_factor_credibility(fit, args, premiums, comps)

    def extra(self, fit, args, comps):
        return between_profile(fit, comps)


ENTRY = BuhlmannStraub()
