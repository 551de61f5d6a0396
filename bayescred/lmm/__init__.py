"""Empirical Bayes: linear mixed models by REML/ML at lme4 parity (``bc.lmm``).

* :mod:`.formula` parses lme4 formulas into X and random-effect terms;
* :mod:`.fit` evaluates and optimises the profiled criterion of Bates et al. (2015);
* :mod:`.model` holds :func:`lmm` and :class:`LMMFit`;
* :mod:`.uncertainty` gives the three uncertainty measures of the EBLUPs and the
  parametric bootstrap; :mod:`.inference` profile intervals and boundary LRTs;
* :mod:`.poisson_gamma` the Poisson–gamma empirical Bayes (exact negative-binomial ML).

Sparse Cholesky: CHOLMOD (scikit-sparse) needs the SuiteSparse headers, which this
environment lacks (only an sdist on PyPI). The engine instead eliminates the block of
the grouping factor with the most levels in closed form (it is block-diagonal, one
k×k block per level) and factors the Schur complement of the remaining factors densely:
for the crossed designs of credibility (a large risk factor crossed with a few hundred
levels of another) this is the exact sparse Cholesky with the optimal ordering and
costs O(n + J k³ + q₂³) per evaluation.
"""

from .inference import lrt
from .model import LMMFit, lmm
from .poisson_gamma import PoissonGammaFit, poisson_gamma_eb

__all__ = ["lmm", "LMMFit", "lrt", "poisson_gamma_eb", "PoissonGammaFit"]
