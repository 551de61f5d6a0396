"""Classical credibility estimators (actuar-style), one module per model.

Each function takes a tidy long table plus column names and returns a fit with
``.structure`` (collective, between, within, k, ...), ``.table`` (one row per risk:
weight, mean = stand-alone estimate, Z, premium) and ``.boundary`` (a variance was
truncated at 0, with a BoundaryWarning).

Crosswalk to actuar's ``cm()``: collective = ``means$portfolio``; between = ``unbiased[1]``
/ ``iterative[1]`` (``a``; a matrix for regression); within = ``s2``; Z = ``cred``;
premium = ``predict(fit)``.
"""

from ._common import CredibilityFit
from .buhlmann import buhlmann
from .buhlmann_straub import buhlmann_straub
from .crossed import CrossedFit, crossed
from .gamma_severity import gamma_severity
from .hachemeister import HachemeisterFit, hachemeister
from .halliwell import credibility_given, mixed_estimation
from .hierarchical import HierarchicalFit, hierarchical
from .poisson_gamma import poisson_gamma

__all__ = [
    "buhlmann",
    "buhlmann_straub",
    "hierarchical",
    "hachemeister",
    "crossed",
    "poisson_gamma",
    "gamma_severity",
    "CredibilityFit",
    "HierarchicalFit",
    "HachemeisterFit",
    "CrossedFit",
]
__all__ += ["mixed_estimation", "credibility_given"]
