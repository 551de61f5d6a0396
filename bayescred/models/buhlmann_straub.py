"""Bühlmann–Straub credibility as a Bayesian model (docs/formulas.md §2; seed
004_07f8365c92996b9b.txt eqs 3.14-3.23)."""

from __future__ import annotations

from ._base import records_arguments
from ._gaussian import build


@records_arguments
def buhlmann_straub(data, group: str, response: str, weight: str, priors=None, likelihood: str = "marginal"):
    """PyMC model of X_jt = m + u_j + e_jt, u_j ~ N(0, tau2), e_jt ~ N(0, sigma2/w_jt).

    Same data arguments as ``bc.credibility.buhlmann_straub``. Returns a ``pm.Model`` with
    dim ``group`` (the risks' labels) and, in the actuary's words:
    ``collective`` (m), ``between`` (VHM tau2), ``within`` (EPV sigma2), ``k`` = sigma2/tau2,
    ``Z`` = w_j/(w_j + k) and ``premium`` per risk.

    ``likelihood="marginal"`` (default) integrates u_j out: each risk contributes
    N(X_j | m, tau2 + sigma2/w_j) times the density of its rows around X_j (within SS), so a
    gradient costs O(risks) whatever the number of rows. Its ``premium`` deterministic is the
    credibility premium Z_j X_j + (1 - Z_j) m at each draw's hyperparameters (the conditional
    mean); ``bc.sample`` computes it (as ``premium_conditional_mean``) and ``Z`` from the draws
    after sampling, vectorised, and adds exact draws of each risk's mean (``premium``) and
    effect (``u``) from N(premium_conditional_mean, tau2 (1 - Z_j)).
    ``likelihood="latent"`` samples non-centred effects u_j = tau z_j explicitly.

    Default priors, scaled to the data (s = SD of the risk means, sigma_hat = sqrt(pooled
    within SS / (N - J))):

    * ``collective`` ~ Normal(weighted mean of the data, 10 s): wide relative to the spread
      of risk means, so the data decide;
    * ``between_sd`` (tau) ~ HalfNormal(2.5 s): the spread of true risk means cannot much
      exceed the observed spread of risk means; mode at 0 allows full pooling;
    * ``within_sd`` (sigma) ~ HalfNormal(2.5 sigma_hat): the pooled within SD sets the scale.

    These data-derived prior parameters are PyTensor shared variables (``prior_collective_mu``,
    ``prior_collective_sigma``, ``prior_between_sd_sigma``, ``prior_within_sd_sigma``), so the
    compiled sampler code is the same for every portfolio and comes from the disk cache.

    Override any of them through ``priors={"between_sd": pm.HalfStudentT.dist(nu=3, sigma=10)}``,
    fix one at a value (``priors={"between_sd": 91.86}``), or use ``"flat"``.
    """
    return build("buhlmann_straub", data, [group], response, weight, priors, likelihood)
