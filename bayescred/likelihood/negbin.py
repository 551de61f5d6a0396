"""The Poisson–gamma (negative-binomial) marginal likelihood, written once for numpy and
pytensor (docs/formulas.md §7; docs/reference-values.md §11.6).

Model: y_ik | u_i ~ Poisson(mu_ik u_i), mu_ik = exposure_ik exp(eta_ik), u_i ~ Gamma(alpha,
alpha) (mean 1, variance lam = 1/alpha). Integrating u_i out leaves, per company, a negative
multinomial; given alpha and eta, u_i | y ~ Gamma(alpha + y_i+, alpha + mu_i+).
"""

from __future__ import annotations

from . import arrays
from .arrays import segsum


def loglik(xp, alpha, eta, stats):
    """Per-company exact marginal log-likelihood:
    sum_k [y log mu - log y!] + alpha log alpha + lgamma(alpha + y_i+) - lgamma(alpha)
    - (alpha + y_i+) log(alpha + mu_i+), from the cells' ``claims``, ``exposure``, their
    ``company`` code (0..``size``-1), each company's ``claims_total`` and ``log_const`` =
    sum_k [y log exposure - log y!]. Returns (loglik per company, mu_i+)."""
    idx, size = stats["company"], stats["size"]
    mu = stats["exposure"] * xp.exp(eta)
    mu_plus = segsum(xp, mu, idx, size)
    y_plus = stats["claims_total"]
    cells = segsum(xp, stats["claims"] * eta, idx, size) + stats["log_const"]
    # alpha log alpha - (alpha + y) log(alpha + mu), written to stay accurate as alpha -> infinity
    ll = (cells + arrays.gammaln(xp, alpha + y_plus) - arrays.gammaln(xp, alpha) - y_plus * xp.log(alpha)
          - (alpha + y_plus) * xp.log1p(mu_plus / alpha))
    return ll, mu_plus


def conditional_mean(lam, claims_total, mu_plus):
    """E[u_i | y] = (alpha + y_i+)/(alpha + mu_i+) = Z_i y_i+/mu_i+ + (1 - Z_i),
    Z_i = mu_i+/(mu_i+ + alpha): the credibility estimate of the risk effect; written in
    lam = 1/alpha, so that lam = 0 (no heterogeneity, u_i = 1) is exact."""
    return (1 + lam * claims_total) / (1 + lam * mu_plus)


def effect_draws(rng, alpha, claims_total, mu_plus):
    """Exact draws of u_i from its conditional Gamma(alpha + y_i+, rate alpha + mu_i+) (numpy;
    a leading draws axis on alpha and mu_plus)."""
    return rng.gamma(alpha + claims_total, 1.0 / (alpha + mu_plus))
