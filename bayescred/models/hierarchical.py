"""Jewell's hierarchical credibility as a Bayesian model (docs/formulas.md §3)."""

from __future__ import annotations

from ..errors import DataError
from ._base import records_arguments
from ._gaussian import build


@records_arguments
def hierarchical(data, levels, response: str, weight: str | None = None, priors=None, likelihood: str = "marginal"):
    """PyMC model of X_sjt = m + u_s + u_sj + e_sjt for ``levels=[outer, ..., inner]``
    (any depth), Var u at level l = tau2_l, Var e = sigma2/w.

    Same data arguments as ``bc.credibility.hierarchical``. Dims: one per level (named after
    its column; labels joined as "outer:inner" when inner labels repeat across groups) and
    ``level``. Variables: ``collective``; ``between`` (dim level: the VHM of each level);
    ``within`` (EPV); ``k`` (dim level: tau2_{l+1}/tau2_l, and sigma2/tau2 for the risks);
    ``Z`` and ``premium`` per inner risk; ``Z_<level>`` and ``premium_<level>`` per group of
    each outer level: Z_s = Q_s/(Q_s + tau2/omega2), premium_s = Z_s B_s + (1 - Z_s) m and
    premium_sj = Z_sj X_sj + (1 - Z_sj) premium_s (Jewell).

    ``likelihood="marginal"`` integrates every level's effects out bottom up (each group
    collapses its children to a precision-weighted mean): O(risks) per gradient; exact draws
    of every level's effects are added by ``bc.sample``. ``likelihood="latent"``: explicit
    non-centred effects per level. Pointwise log-likelihood: per outermost group (marginal)
    or per inner risk (latent, conditional on the effects).

    Default priors as in :func:`buhlmann_straub`, with ``between_sd`` a vector over levels,
    each HalfNormal(2.5 s) (s = SD of the inner risks' means: no level's spread can much
    exceed the total spread).
    """
    levels = list(levels) if not isinstance(levels, str) else [levels]
    if len(levels) < 1 or len(set(levels)) != len(levels):
        raise DataError(f"levels must be distinct column names, outer first, got {levels!r}")
    return build("hierarchical", data, levels, response, weight, priors, likelihood)
