"""The GLMM engine's families: bayescred.glm's (R's ``stats::family``), chosen as glmer users
name them. Gamma gets the log link here (severity models); pass a family object from
``bayescred.glm.families`` (``make_family(name, link)``) for another link."""

from __future__ import annotations

from ..errors import FormulaError
from ..glm.families import Family, make_family, negative_binomial

__all__ = ["Family", "get_family", "negative_binomial", "has_scale"]

_DEFAULT_LINK = {"poisson": "log", "binomial": "logit", "gamma": "log"}


def get_family(family) -> Family:
    """A family object from a name ('poisson', 'binomial', 'Gamma') or an instance."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str) and family.lower() in _DEFAULT_LINK:
        return make_family(family.lower(), _DEFAULT_LINK[family.lower()])
    raise FormulaError(f"family must be one of poisson, binomial, Gamma or negative_binomial, got {family!r}")


def has_scale(family: Family) -> bool:
    """lme4's useSc: a dispersion σ is estimated (not Poisson, binomial, negative binomial)."""
    return not family.scale_free
