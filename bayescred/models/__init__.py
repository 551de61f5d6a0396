"""PyMC model factories, one per credibility model (names and variables: docs/formulas.md §0).

Each factory takes the same data arguments as the classical function of the same name in
``bc.credibility``, validates data and priors before building anything, and returns a
``pm.Model`` whose dims are named after the data's levels and whose deterministics speak the
actuary's language: ``collective``, ``between`` (VHM), ``within`` (EPV), ``k``, ``Z`` and
``premium`` (Hachemeister: ``A``; Poisson–gamma: ``lam``, ``alpha``). Run it with
``bc.sample``. The GLMM factories (``poisson_lognormal``, ``gamma_lognormal``,
``binomial_logitnormal``) have no closed-form marginal: they sample the normal effects
latent and non-centred; ``between`` is the variance of the link-scale effect.
"""

from .binomial_logitnormal import binomial_logitnormal
from .buhlmann import buhlmann
from .buhlmann_straub import buhlmann_straub
from .crossed import crossed
from .gamma_lognormal import gamma_lognormal
from .gamma_severity import gamma_severity

from .hachemeister import hachemeister
from .hierarchical import hierarchical
from .poisson_gamma import poisson_gamma
from .poisson_lognormal import poisson_lognormal

__all__ = ["buhlmann", "buhlmann_straub", "hierarchical", "hachemeister", "poisson_gamma", "crossed",
           "poisson_lognormal", "gamma_lognormal", "binomial_logitnormal",
           "gamma_severity"]
