"""Gamma claim-severity credibility with a normal random intercept per risk on the log scale
(glmer's ``severity ~ factors + (1 | group)``, family Gamma(link = "log"), prior weights =
claim counts; seed 002_112bee5238c97912.txt §2.4)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..portfolio import validate
from . import priors as P
from ._glmm import Family, as_keys, build, check_latent, cell_table
from ..likelihood.arrays import segsum


def _loglik(eta, d, extra):
    """log Gamma(y | shape a = w/phi, mean exp(eta)): the density of the average of w claims
    each Gamma(shape 1/phi, mean exp(eta))."""
    a = d["claims"] / extra["dispersion"]
    return a * pt.log(a) - a * eta - pt.gammaln(a) + (a - 1.0) * d["log_severity"] - a * d["severity"] * pt.exp(-eta)


def _simulate(rng, mean, v, extra):
    shape = v["claims"] / extra["dispersion"]
    return rng.gamma(shape, mean / shape)


def _claim_weighted_mean(values, v, risk, J):
    return segsum(np, values * v["claims"], risk, J) / segsum(np, v["claims"], risk, J)


def gamma_lognormal(data, group: str, severity: str, claims: str | None = None, fixed=None, covariates=None,
                    base=None, priors=None, likelihood: str = "latent"):
    """PyMC model of the average severity y_r of row r (``claims`` w_r claims; 1 when not
    given): y_r ~ Gamma(shape w_r/phi, mean exp(eta_r + u_j)), eta_r = log_collective +
    x_r' fixef, u_j = between_sd z_j, z_j ~ N(0, 1) (non-centred).

    ``phi`` (``dispersion``) is the squared coefficient of variation of a single claim, R's
    Gamma dispersion; the likelihood is the exact density of an average of w_r claims (R's
    glm/glmer weight the log density instead; the estimating equations for the fixed effects
    are the same). Rows without claims carry no severity and must be left out.

    Variables: ``log_collective`` / ``collective`` (mean severity at the base levels),
    ``intercept`` (R's), ``fixef``, ``dispersion``, ``between_sd``, ``between`` = Var(u)
    (variance of the log-scale effect), ``u``, ``relativity`` = exp(u), ``premium`` = the
    risk's expected severity per claim (claim-weighted over its rows), and Bühlmann's linear
    credibility of the severity ratio y/mu: ``k`` = phi exp(s²)/(exp(s²) - 1),
    ``Z`` = w_j/(w_j + k) with w_j the risk's claim count.

    ``likelihood="latent"`` only (no closed-form marginal, no exact conditional draws).

    Default priors: ``log_collective`` ~ Normal(log(claim-weighted mean severity), 2.5);
    ``fixef`` as ``poisson_lognormal``; ``between_sd`` ~ HalfNormal(1); ``dispersion`` ~
    HalfNormal(2.5 phi0), phi0 = sum w (y - m)² / m² / (n - 1), the dispersion of the
    severities around their overall mean m (an upper-side guess: it also holds the
    rating-factor and risk differences).
    """
    check_latent(likelihood, "gamma_lognormal")
    fixed, covariates = as_keys(group, fixed, covariates)
    frame = validate(data, groups=[group, *fixed], numeric=covariates, positive=[severity, *([claims] if claims else [])],
                     min_groups=2)
    weight = (lambda r: r[claims].astype(float)) if claims else (lambda r: np.ones(len(r)))
    cells = cell_table(frame, [group, *fixed, *covariates], {
        "y": lambda r: r[severity].astype(float), "w": weight, "logy": lambda r: np.log(r[severity].astype(float)),
    }, aggregate=False)
    y, w = cells["y"].to_numpy(), cells["w"].to_numpy()
    m = float(np.sum(w * y) / w.sum())
    phi0 = float(np.sum(w * (y - m) ** 2) / m**2 / max(len(y) - 1, 1))
    extra = (P.Param("dispersion", (), lambda: pm.HalfNormal.dist(sigma=P.from_data("dispersion_sigma", 2.5 * phi0)),
                     positive=True),)
    family = Family(name="gamma", link="log", observed=severity, observed_cell="severity", weight="w",
                    loglik=_loglik, simulate=_simulate, observed_total=_claim_weighted_mean, extra=extra,
                    centre=float(np.log(m)))
    stats = {"claims_total": cells.groupby(group, sort=True)["w"].sum().to_numpy()}
    return build("gamma_lognormal", family, cells, {"severity": "y", "claims": "w", "log_severity": "logy"},
                 group, fixed, covariates, base, priors, stats)
