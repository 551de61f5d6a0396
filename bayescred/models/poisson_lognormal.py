"""Poisson–lognormal claim-frequency credibility: the Poisson GLMM with an exposure offset
and a normal random intercept per risk on the log scale (glmer's
``claims ~ factors + offset(log(exposure)) + (1 | group)``, family Poisson; seed
002_112bee5238c97912.txt §2.4, seed 001_09ddcaa1e17cf6d2.txt "A Generalization of LME: GLMM")."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from scipy.special import gammaln

from ..errors import DataError
from ..portfolio import validate
from ._glmm import Family, as_keys, build, check_latent, cell_table
from ..likelihood.arrays import segsum


def _family(centre: float, claims: str) -> Family:
    return Family(
        name="poisson", link="log", observed=claims, observed_cell="claims", weight="e",
        loglik=lambda eta, d, extra: d["claims"] * eta - d["exposure"] * pt.exp(eta) + d["log_const"],
        simulate=lambda rng, mean, v, extra: rng.poisson(v["exposure"] * mean).astype(float),
        observed_total=lambda values, v, risk, J: segsum(np, values, risk, J),
        centre=centre,
    )


def poisson_lognormal(data, group: str, claims: str, exposure: str, fixed=None, covariates=None, base=None,
                      priors=None, likelihood: str = "latent"):
    """PyMC model of y_c ~ Poisson(e_c exp(eta_c + u_j)), eta_c = log_collective + x_c' fixef,
    u_j = between_sd z_j, z_j ~ N(0, 1) (non-centred), one row c per (risk j, rating cell).

    Same data arguments as ``bc.models.poisson_gamma``: ``claims`` counts and ``exposure``
    per row, ``fixed`` factors (treatment-coded with R's rule, as ``bc.glmm``: base = first
    sorted level, or ``base={"zone": 4}``), ``covariates`` (numeric, centred at their
    exposure-weighted mean inside the sampler). Dims: ``group``, ``coef`` (the fixed-effect
    columns, named as R names them: ``zone2``, ...).

    Variables: ``log_collective`` and ``collective`` (frequency per unit exposure at the base
    levels), ``intercept`` (R's intercept, with covariates uncentred), ``fixef``,
    ``between_sd``, ``between`` = Var(u) (the variance of the log-scale effect: glmer's
    ``vcov`` of ``(1 | group)``), ``u`` (the log relativity of each risk), ``relativity`` =
    exp(u), ``premium`` = the risk's expected claim frequency sum_c e_c exp(eta_c + u_j) /
    sum_c e_c, ``expected_claims`` m_j = sum_c e_c exp(eta_c), and Bühlmann's linear
    credibility of the model, ``k`` = exp(-s²/2)/(exp(s²) - 1), ``Z`` = m_j/(m_j + k)
    (s² = ``between``; with a gamma effect of variance lam this is the Poisson–gamma k = 1/lam).

    ``likelihood="latent"`` only: the normal effect has no closed-form marginal likelihood
    and u_j | y no known distribution, so there are no exact conditional draws; ``bc.sample``
    samples z_j with NUTS (target_accept 0.95).

    Default priors: ``log_collective`` ~ Normal(log(total claims / total exposure), 2.5);
    ``fixef`` ~ Normal(0, 2.5) for factors, Normal(0, 2.5/SD(x)) for covariates (relativities
    up to ~12); ``between_sd`` ~ HalfNormal(1) (an SD of 1 on the log scale puts 95 % of the
    risks' relativities within a factor 7 of each other; 0 is full pooling).
    """
    check_latent(likelihood, "poisson_lognormal")
    fixed, covariates = as_keys(group, fixed, covariates)
    frame = validate(data, groups=[group, *fixed], numeric=covariates, positive=exposure, counts=claims, min_groups=2)
    cells = cell_table(frame, [group, *fixed, *covariates], {
        "y": lambda r: r[claims].astype(float),
        "e": lambda r: r[exposure].astype(float),
        "const": lambda r: r[claims] * np.log(r[exposure].astype(float)) - gammaln(r[claims].astype(float) + 1.0),
    }, aggregate=True)
    total = cells["y"].sum()
    if total == 0:
        raise DataError("there are no claims at all: the frequency is not identified", column=claims)
    risk = cells.groupby(group, sort=True)
    stats = {"claims_total": risk["y"].sum().to_numpy(), "exposure_total": risk["e"].sum().to_numpy()}
    family = _family(float(np.log(total / cells["e"].sum())), claims)
    return build("poisson_lognormal", family, cells, {"claims": "y", "exposure": "e", "log_const": "const"},
                 group, fixed, covariates, base, priors, stats)
