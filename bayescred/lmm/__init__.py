"""Empirical Bayes: linear mixed models by REML/ML at lme4 parity (``bc.lmm``).

* :mod:`.formula` parses lme4 formulas into X and random-effect terms;
* :mod:`.fit` evaluates and optimises the profiled criterion of Bates et al. (2015);
* :mod:`.model` holds :func:`lmm` and :class:`LMMFit`;
* :mod:`.uncertainty` gives the three uncertainty measures of the EBLUPs and the
  parametric bootstrap; :mod:`.inference` profile intervals and boundary LRTs;
* :mod:`.poisson_gamma` the Poisson–gamma empirical Bayes (exact negative-binomial ML).

Sparse Cholesky: CHOLMOD (scikit-sparse 0.5.0) is an sdist only and needs the SuiteSparse
headers and libraries, which this environment lacks. The engine instead eliminates the
block of the grouping factor with the most levels in closed form (it is block-diagonal,
one k×k block per level) and factors the Schur complement of the remaining factors
densely: for the crossed and nested designs of credibility (a large risk factor crossed
with or nested in a few hundred levels of another) this is the exact sparse Cholesky with
the optimal ordering and costs O(n + J k³ + q₂³) per evaluation. The analytic gradient
and the uncertainty measures use the same two-block structure (:mod:`.blockmatrix`).
"""

from .._callable import make_callable
from .inference import lrt
from .model import LMMFit, lmm
from .poisson_gamma import PoissonGammaFit, poisson_gamma_eb

__all__ = ["lmm", "LMMFit", "lrt", "poisson_gamma_eb", "PoissonGammaFit"]


make_callable(__name__)  # bc.lmm(...) calls the function; the module stays importable
