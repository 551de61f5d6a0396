"""Measured coverage of nominal 90% premium intervals, from the project's coverage study.

Provenance: benchmarks/RESULTS.md, section "Coverage of nominal 90% premium intervals (issue 6)",
measured 2026-11-21 09:15 UTC with ``benchmarks/coverage_study.py`` (seed 20260006, 400 simulated
portfolios per J for the EBLUP, 200 for the Bayes fits; simulator defaults as stated there).
Values are the mean share of risks whose interval covered the true premium.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = ("coverage study, benchmarks/RESULTS.md (benchmarks/coverage_study.py, seed 20260006, "
          "measured 2026-11-21)")
NOMINAL = 0.9

# model -> J -> (EBLUP conditional SD, EBLUP PEV SD, EBLUP second-order MSE SD, Bayes ETI)
_COLUMNS = ("cond_sd", "pev_sd", "mse_sd", "bayes")
_TABLE = {
    "buhlmann_straub": {5: (0.740, 0.811, 0.914, 0.893), 10: (0.829, 0.847, 0.891, 0.891),
                        30: (0.882, 0.885, 0.896, 0.893), 100: (0.896, 0.897, 0.899, 0.897)},
    "hachemeister": {5: (0.814, 0.837, 0.915, 0.894), 10: (0.877, 0.882, 0.907, 0.905),
                     30: (0.894, 0.895, 0.901, 0.899), 100: (0.897, 0.897, 0.899, 0.897)},
    "poisson_gamma": {5: (0.760, 0.818, 0.832, 0.888), 10: (0.863, 0.873, 0.896, 0.901),
                      30: (0.902, 0.903, 0.909, 0.900), 100: (0.907, 0.907, 0.909, 0.896)},
}
COVERAGE = {model: {j: dict(zip(_COLUMNS, row)) for j, row in rows.items()} for model, rows in _TABLE.items()}
STUDY_NAMES = {"buhlmann_straub": "Bühlmann–Straub", "hachemeister": "Hachemeister regression",
               "poisson_gamma": "Poisson–gamma"}
@dataclass(frozen=True)
class Measured:
    """The study's coverage nearest to a run: which model and J it comes from."""

    model: str          # the studied model the figures come from
    n_risks: int        # the study's J nearest to the run's number of risks
    coverage: dict      # measure -> coverage (cond_sd, pev_sd, mse_sd, bayes)
    analogue: bool      # True when the run's model was not studied itself

    @property
    def study_name(self) -> str:
        return STUDY_NAMES[self.model]


GLMM_STUDIED_AS = {"poisson_lognormal": "poisson_gamma"}  # the studied model closest to a GLMM factory


def nearest(model: str, n_risks: int) -> Measured:
    """Coverage measured for ``model`` (or the studied model its catalogue entry names as closest) at the studied number
    of risks nearest to ``n_risks`` (distance on the log scale: 7 risks is nearer 5 than 10)."""
    import math

    from .. import catalogue

    if model in COVERAGE:
        studied = model
    elif model in catalogue.names():
        studied = catalogue.get(model).studied_as
    else:  # a GLMM factory (bc.models.poisson_lognormal, ...): not a catalogue model
        studied = GLMM_STUDIED_AS.get(model, "buhlmann_straub")
    rows = COVERAGE[studied]
    j = min(rows, key=lambda k: (abs(math.log(k) - math.log(max(n_risks, 1))), k))
    return Measured(studied, j, rows[j], studied != model)
