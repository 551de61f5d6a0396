"""Binomial rates with a normal random intercept per risk on the logit scale (glmer's
``cbind(successes, trials - successes) ~ factors + (1 | group)``, family binomial; seed
002_112bee5238c97912.txt §2.4)."""

from __future__ import annotations

import narwhals.stable.v2 as nw
import numpy as np
import pytensor.tensor as pt
from scipy.special import gammaln

from ..errors import DataError
from ..portfolio import offending_rows, validate
from ._glmm import Family, as_keys, build, check_latent, cell_table
from ..likelihood.arrays import segsum


def _family(centre: float, successes: str) -> Family:
    return Family(
        name="binomial", link="logit", observed=successes, observed_cell="successes", weight="n",
        loglik=lambda eta, d, extra: d["successes"] * eta - d["trials"] * pt.softplus(eta) + d["log_const"],
        simulate=lambda rng, p, v, extra: rng.binomial(v["trials"].astype(np.int64), p).astype(float),
        observed_total=lambda values, v, risk, J: segsum(np, values, risk, J),
        centre=centre,
    )


def binomial_logitnormal(data, group: str, successes: str, trials: str, fixed=None, covariates=None, base=None,
                         priors=None, likelihood: str = "latent"):
    """PyMC model of y_c ~ Binomial(n_c, expit(eta_c + u_j)), eta_c = logit_collective +
    x_c' fixef, u_j = between_sd z_j, z_j ~ N(0, 1) (non-centred), one row c per (risk j,
    rating cell); ``successes`` and ``trials`` are counts per row (0 <= y <= n, n > 0).

    Variables: ``logit_collective`` / ``collective`` (the rate at the base levels),
    ``intercept`` (R's), ``fixef``, ``between_sd``, ``between`` = Var(u) (variance of the
    logit-scale effect), ``u``, ``relativity`` = exp(u) (the risk's odds ratio),
    ``premium`` = the risk's expected rate sum_c n_c p_c / sum_c n_c. No ``Z`` or ``k``: the
    logit-normal has no closed-form moments, so Bühlmann's linear credibility has no
    closed form either.

    ``likelihood="latent"`` only (no closed-form marginal, no exact conditional draws).

    Default priors: ``logit_collective`` ~ Normal(logit(total successes / total trials), 2.5);
    ``fixef`` ~ Normal(0, 2.5) (odds ratios up to ~12), Normal(0, 2.5/SD(x)) for covariates;
    ``between_sd`` ~ HalfNormal(1).
    """
    check_latent(likelihood, "binomial_logitnormal")
    fixed, covariates = as_keys(group, fixed, covariates)
    frame = validate(data, groups=[group, *fixed], numeric=covariates, counts=[successes, trials], min_groups=2)
    bad = offending_rows(frame, (nw.col(successes) > nw.col(trials)) | (nw.col(trials) == 0))
    if bad:
        raise DataError(f"successes must lie between 0 and {trials!r}, which must be positive", column=successes,
                        rows=bad)
    cells = cell_table(frame, [group, *fixed, *covariates], {
        "y": lambda r: r[successes].astype(float), "n": lambda r: r[trials].astype(float),
        "const": lambda r: (gammaln(r[trials] + 1.0) - gammaln(r[successes] + 1.0)
                            - gammaln(r[trials] - r[successes] + 1.0)),
    }, aggregate=True)
    N = cells["n"].sum()
    rate = float(np.clip(cells["y"].sum() / N, 0.5 / N, 1 - 0.5 / N))
    risk = cells.groupby(group, sort=True)
    stats = {"successes_total": risk["y"].sum().to_numpy(), "trials_total": risk["n"].sum().to_numpy()}
    return build("binomial_logitnormal", _family(float(np.log(rate / (1 - rate))), successes), cells,
                 {"successes": "y", "trials": "n", "log_const": "const"}, group, fixed, covariates, base, priors,
                 stats)
