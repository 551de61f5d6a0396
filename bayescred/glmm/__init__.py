"""Empirical Bayes for non-Gaussian responses: GLMMs at lme4 ``glmer`` parity (``bc.glmm``).

* :mod:`.family` the families (bayescred.glm's, with glmer's default links);
* :mod:`.pirls` penalised IRLS, the Laplace and adaptive Gauss–Hermite deviances;
* :mod:`.optimise` glmer's two optimisation stages;
* :mod:`.model` :func:`glmm` and :class:`GLMMFit`; :mod:`.uncertainty` prediction,
  the bootstrap MSE of the conditional modes and the summary text;
* :mod:`.negbin` the negative binomial with its shape estimated (``glmer.nb``).
"""

from .model import GLMMFit, glmm

__all__ = ["glmm", "GLMMFit"]
