"""Bühlmann: X_jt = m + Ξ_j + ε_jt with equal weights (docs/formulas.md §1).
As a mixed model: ``y ~ 1 + (1 | risk)``."""

from __future__ import annotations

from ._types import Likelihood, Name, NonNegative, Number, Strict
from .buhlmann_straub import UNITS, BuhlmannStraub


class Arguments(Strict):
    group: Name
    response: Name
    between: NonNegative | None = None
    within: NonNegative | None = None
    collective: Number | None = None
    likelihood: Likelihood = "marginal"


class Buhlmann(BuhlmannStraub):
    name = "buhlmann"
    title = "Bühlmann"
    text = ("X<sub>jt</sub> = m + Ξ<sub>j</sub> + ε<sub>jt</sub>, Var Ξ = τ² (VHM, <i>between</i>), "
            "Var ε = σ² (EPV, <i>within</i>); Z = T/(T + k), k = σ²/τ²; premium = Z X̄<sub>j</sub> + (1 − Z) X̄ "
            "(seed 004_07f8365c92996b9b.txt §3.1; docs/formulas.md §1). As an LMM: y ~ 1 + (1 | risk).")
    Arguments = Arguments
    classical_function = "bayescred.credibility:buhlmann"
    factory_function = "bayescred.models:buhlmann"
    reads = {
        "classical": ("group", "response", "between", "within", "collective"),
        "eb": ("group", "response"),
        "bayes": ("group", "response", "likelihood"),
    }
    column_keys = ("group", "response")
    study = None

    def example(self, seed=1):
        from ..datasets import simulate

        data = simulate.buhlmann_straub(10, 6, weights=(1.0, 1.0), seed=seed).data
        return data, {"group": "risk", "response": "loss"}

    def components(self, args):
        return {"between": UNITS["between"], "within": "variance of one observation (response units squared)"}


ENTRY = Buhlmann()
