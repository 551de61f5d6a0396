"""Empirical Bayes for non-Gaussian responses: GLMMs at lme4 ``glmer`` parity (``bc.glmm``).

* :mod:`.family` the families (bayescred.glm's, with glmer's default links);
* :mod:`.pirls` penalised IRLS, the Laplace and adaptive Gauss–Hermite deviances;
* :mod:`.optimise` glmer's two optimisation stages;
* :mod:`.model` :func:`glmm` and :class:`GLMMFit`; :mod:`.uncertainty` prediction,
  the bootstrap MSE of the conditional modes and the summary text;
* :mod:`.negbin` the negative binomial with its shape estimated (``glmer.nb``);
* :mod:`.gamma_severity` gamma severity credibility by exact marginal ML (``gamma_severity_eb``).
"""

from .._callable import make_callable
from .gamma_severity import GammaSeverityFit, gamma_severity_eb
from .model import GLMMFit, glmm

__all__ = ["glmm", "GLMMFit", "gamma_severity_eb", "GammaSeverityFit"]


make_callable(__name__)  # bc.glmm(...) calls the function; the module stays importable
