"""Generalised linear models at R ``glm`` / ``MASS::glm.nb`` parity: ``bc.glm``.

Families: gaussian, poisson, quasipoisson, binomial, quasibinomial, Gamma,
inverse.gaussian, negative binomial (theta estimated), Tweedie (power given or profiled),
zero-truncated Poisson; a dispersion formula gives Smyth's double GLM.
"""

from .._callable import make_callable
from .fit import fit_arrays, glm
from .result import GLMFit

__all__ = ["glm", "fit_arrays", "GLMFit"]


make_callable(__name__)  # bc.glm(...) calls the function; the module stays importable
