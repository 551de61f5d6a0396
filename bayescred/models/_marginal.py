"""Marginal-likelihood building blocks shared by the factories.

Every Gaussian credibility model integrates the risk effects out in closed form over the
sufficient statistics (docs/formulas.md §2-§6), so one log-density (and one gradient) costs
O(number of risks), whatever the number of rows. After sampling the hyperparameters, each
risk's effect is drawn from its exact conditional distribution given them.

The same algebra serves two callers: the PyMC graph (pytensor, scalar hyperparameters) and
the post-sampling draws (numpy, hyperparameters with a leading draws axis). Functions that
need both take the array namespace ``xp`` (``numpy`` or ``pytensor.tensor``) and a segment
sum ``segsum(values, index, size)``.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from scipy import sparse

LOG2PI = float(np.log(2 * np.pi))


# ---------------------------------------------------------------- segment sums

def pt_segsum(values, index, size):
    """Sum ``values`` by ``index`` into ``size`` bins (pytensor, 1-D)."""
    return pt.inc_subtensor(pt.zeros(size)[index], values)


def np_segsum(values, index, size):
    """Sum the last axis of ``values`` by ``index`` into ``size`` bins (numpy, any leading axes)."""
    values = np.asarray(values, dtype=float)
    incidence = sparse.csr_matrix((np.ones(len(index)), (np.asarray(index), np.arange(len(index)))), shape=(size, len(index)))
    flat = values.reshape(-1, values.shape[-1])
    return np.asarray((incidence @ flat.T).T).reshape(*values.shape[:-1], size)


# ---------------------------------------------------------------- nested Gaussian (one-way, hierarchical)

def within_term(xp, sigma2, n, weight, within_ss, sum_log_w):
    """log density of a risk's rows around their weighted mean: the part of
    prod_t N(y_t | mu, sigma2/w_t) that does not involve mu (docs/formulas.md §2),
    -1/2 [(n - 1) log(2 pi sigma2) - (sum_t log w_t - log w) + SS/sigma2]."""
    return -0.5 * ((n - 1) * (LOG2PI + xp.log(sigma2)) - (sum_log_w - xp.log(weight)) + within_ss / sigma2)


def nested_collapse(xp, segsum, collective, tau2, sigma2, stats, parents, sizes):
    """Integrate the random effects of a nested (hierarchical) Gaussian model out, bottom up.

    ``tau2`` lists the variance of each level's effect, outermost first; ``stats`` holds the
    innermost risks' ``n``, ``weight``, ``mean``, ``within_ss``, ``sum_log_w``; ``parents[l]``
    maps the nodes of level l+1 to their parent at level l and ``sizes[l]`` counts level l's
    nodes. Each node carries the precision A and mean B of the data about its own mean (for
    a risk A = w/sigma2, B = X_j); a parent collapses its children with weights
    1/v_c, v_c = tau2_c + 1/A_c (Jewell's hierarchical credibility, docs/formulas.md §3).

    Returns (loglik per top-level node, [A per level], [B per level]); the log-likelihood is
    the exact log density of all rows under the top node (constants included).
    """
    levels = len(tau2)
    A = [None] * levels
    B = [None] * levels
    A[-1] = stats["weight"] / sigma2
    B[-1] = stats["mean"]
    acc = within_term(xp, sigma2, stats["n"], stats["weight"], stats["within_ss"], stats["sum_log_w"])
    for level in range(levels - 1, 0, -1):
        idx, size = parents[level - 1], sizes[level - 1]
        v = tau2[level] + 1.0 / A[level]
        A[level - 1] = segsum(1.0 / v, idx, size)
        B[level - 1] = segsum(B[level] / v, idx, size) / A[level - 1]
        spread = (B[level] - _take(B[level - 1], idx)) ** 2 / v
        acc = segsum(acc - 0.5 * (LOG2PI + xp.log(v) + spread), idx, size) - 0.5 * (xp.log(A[level - 1]) - LOG2PI)
    v_top = tau2[0] + 1.0 / A[0]
    loglik = acc - 0.5 * (LOG2PI + xp.log(v_top) + (B[0] - collective) ** 2 / v_top)
    return loglik, A, B


def _take(values, idx):
    return values[..., idx]


def credibility_factor(tau2, A):
    """Z = tau2 A / (1 + tau2 A): the weight of a node's own data (w/(w + sigma2/tau2) for a risk)."""
    return tau2 * A / (1.0 + tau2 * A)


def nested_conditional_means(collective, tau2, A, B, parents):
    """E[node mean | hyperparameters, data] for every level, top down:
    mean_c = mean_parent + Z_c (B_c - mean_parent) (credibility premium at every level)."""
    means = []
    parent_mean = collective
    for level, t2 in enumerate(tau2):
        Z = credibility_factor(t2, A[level])
        anchor = parent_mean if level == 0 else _take(parent_mean, parents[level - 1])
        parent_mean = anchor + Z * (B[level] - anchor)
        means.append(parent_mean)
    return means


def nested_posterior(rng, collective, tau2, A, B, parents):
    """Each node's credibility factor Z, its conditional-mean premium (as
    :func:`nested_conditional_means`) and an exact draw of its mean, top down: given the
    parent's drawn mean p, N(p + Z (B - p), tau2 (1 - Z)). numpy, leading draws axis; the
    arrays are (draws x nodes), so the arithmetic is done in place."""
    Zs, means, draws = [], [], []
    mean_parent = draw_parent = collective
    for level, t2 in enumerate(tau2):
        Z = t2 * A[level]
        shrink = Z + 1.0  # 1 + tau2 A
        Z /= shrink
        if level == 0:
            mean = centre = _shrink_towards(collective, Z, B[level])
        else:
            idx = parents[level - 1]
            mean = _shrink_towards(_take(mean_parent, idx), Z, B[level])
            centre = _shrink_towards(_take(draw_parent, idx), Z, B[level])
        sd = np.sqrt(np.divide(t2, shrink, out=shrink), out=shrink)  # tau2 (1 - Z) = tau2 / (1 + tau2 A)
        draw = rng.standard_normal(centre.shape)
        draw *= sd
        draw += centre
        Zs.append(Z)
        means.append(mean)
        draws.append(draw)
        mean_parent, draw_parent = mean, draw
    return Zs, means, draws


def _shrink_towards(anchor, Z, B):
    """anchor + Z (B - anchor), with one temporary."""
    out = np.subtract(B, anchor)
    out *= Z
    out += anchor
    return out


# ---------------------------------------------------------------- regression (Hachemeister), 2 x 2 blocks

def _mat(m):
    """A (..., 2, 2) array (or a 2 x 2 tensor) as its four entries."""
    return m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]


def mm2(a, b):
    a00, a01, a10, a11 = a
    b00, b01, b10, b11 = b
    return (a00 * b00 + a01 * b10, a00 * b01 + a01 * b11, a10 * b00 + a11 * b10, a10 * b01 + a11 * b11)


def mv2(a, v):
    a00, a01, a10, a11 = a
    return (a00 * v[0] + a01 * v[1], a10 * v[0] + a11 * v[1])


def det2(a):
    return a[0] * a[3] - a[1] * a[2]


def inv2(a):
    d = det2(a)
    return (a[3] / d, -a[1] / d, -a[2] / d, a[0] / d)


def regression_blocks(U, sigma2, M):
    """H = sigma2 I + U M_j and E = H^-1 U per risk (entries). The credibility matrix is
    A_j = E M_j = (U M_j + sigma2 I)^-1 U M_j and Cov(beta_j | data, beta) = sigma2 E
    (docs/formulas.md §4: A_j = (M_j + sigma2 U^-1)^-1 M_j, written without U^-1 so that a
    singular U (correlation +/-1, a zero variance) stays finite)."""
    UM = mm2(U, M)
    H = (UM[0] + sigma2, UM[1], UM[2], UM[3] + sigma2)
    E = mm2(inv2(H), U)
    return H, E


def regression_loglik(xp, beta, U, sigma2, stats):
    """Exact log density of each risk's rows in y_j = Q_j beta_j + e, beta_j ~ N(beta, U),
    e ~ N(0, sigma2 W_j^-1), from the cross-products M = Q'WQ, b = Q'Wy, c = y'Wy (Woodbury):
    -n/2 log(2 pi sigma2) + 1/2 sum log w - 1/2 log|I + U M/sigma2| - [r'Wr - d'E d]/(2 sigma2),
    r'Wr = c - 2 beta'b + beta'M beta, d = b - M beta."""
    M, b, c = stats["M"], stats["b"], stats["c"]
    H, E = regression_blocks(U, sigma2, M)
    Mb = mv2(M, beta)
    d = (b[0] - Mb[0], b[1] - Mb[1])
    rWr = c - 2 * (beta[0] * b[0] + beta[1] * b[1]) + beta[0] * Mb[0] + beta[1] * Mb[1]
    Ed = mv2(E, d)
    quad = rWr - (d[0] * Ed[0] + d[1] * Ed[1])
    logdet = xp.log(det2(H)) - 2 * xp.log(sigma2)
    n = stats["n"]
    return -0.5 * (n * (LOG2PI + xp.log(sigma2)) - stats["sum_log_w"] + logdet + quad / sigma2), H, E, d


# ---------------------------------------------------------------- crossed classification

def crossed_loglik(collective, var_a, var_b, var_ab, sigma2, stats):
    """Exact log density of all rows of a crossed classification (docs/formulas.md §6) from the
    cell means, weights and the pooled within-cell SS. V_m = D + F F', D = diag(var_ab +
    sigma2/w_c), F = [A sd_a, B sd_b]; |V_m| and V_m^-1 by Woodbury with a (I+J) x (I+J)
    Cholesky factor, so the cost is O(cells + (levels)^3). pytensor only (one number)."""
    ia, ib = stats["index_a"], stats["index_b"]
    na, nb = stats["size_a"], stats["size_b"]
    D = var_ab + sigma2 / stats["weight"]
    r = stats["mean"] - collective
    # F'D^-1F and F'D^-1 r, with F = [A sqrt(var_a), B sqrt(var_b)]
    sa, sb = pt.sqrt(var_a), pt.sqrt(var_b)
    inv_d = 1.0 / D
    q = na + nb
    FtDF = pt.zeros((q, q))
    FtDF = pt.inc_subtensor(FtDF[ia, ia], var_a * inv_d)
    FtDF = pt.inc_subtensor(FtDF[na + ib, na + ib], var_b * inv_d)
    FtDF = pt.inc_subtensor(FtDF[ia, na + ib], sa * sb * inv_d)
    FtDF = pt.inc_subtensor(FtDF[na + ib, ia], sa * sb * inv_d)
    FtDr = pt.concatenate([sa * pt_segsum(inv_d * r, ia, na), sb * pt_segsum(inv_d * r, ib, nb)])
    L = pt.linalg.cholesky(pt.eye(q) + FtDF)
    h = pt.linalg.solve_triangular(L, FtDr, lower=True)
    quad = pt.sum(r * r * inv_d) - pt.sum(h * h)
    logdet = pt.sum(pt.log(D)) + 2 * pt.sum(pt.log(pt.diag(L)))
    K = stats["mean"].shape[0]
    cells = -0.5 * (K * LOG2PI + logdet + quad)
    # rows around their cell means: sum of the per-cell within terms with a pooled SS
    df, ss = stats["within_df"], stats["within_ss"]
    within = -0.5 * (df * (LOG2PI + pt.log(sigma2)) - stats["log_w_const"] + ss / sigma2)
    return cells + within


def crossed_effect_draws(rng, collective, var_a, var_b, var_ab, sigma2, stats):
    """Draw (a, b, c) from their exact conditional distribution given the hyperparameters
    (numpy; one row per posterior draw). Posterior precision of e = (a, b, c):
    diag(1/var) + X' diag(w/sigma2) X, X = [A B I]; mean = Cov X' diag(w/sigma2) (ybar - m)."""
    ia, ib = stats["index_a"], stats["index_b"]
    na, nb = stats["size_a"], stats["size_b"]
    K = len(ia)
    X = np.zeros((K, na + nb + K))
    X[np.arange(K), ia] = 1.0
    X[np.arange(K), na + ib] = 1.0
    X[np.arange(K), na + nb + np.arange(K)] = 1.0
    w = stats["weight"]
    S = len(collective)
    out = np.empty((S, na + nb + K))
    tiny = 1e-300
    for s in range(S):
        prec_w = w / sigma2[s]
        prior = np.concatenate([np.full(na, 1 / max(var_a[s], tiny)), np.full(nb, 1 / max(var_b[s], tiny)),
                                np.full(K, 1 / max(var_ab[s], tiny))])
        Q = X.T @ (prec_w[:, None] * X) + np.diag(prior)
        L = np.linalg.cholesky(Q)
        rhs = X.T @ (prec_w * (stats["mean"] - collective[s]))
        mean = np.linalg.solve(L.T, np.linalg.solve(L, rhs))
        out[s] = mean + np.linalg.solve(L.T, rng.standard_normal(na + nb + K))
    return out[:, :na], out[:, na:na + nb], out[:, na + nb:]


# ---------------------------------------------------------------- Poisson-gamma

def poisson_gamma_loglik(xp, lgamma, alpha, eta, stats, segsum):
    """Per-company exact marginal log-likelihood of y_ik ~ Poisson(mu_ik u_i), u_i ~ Gamma(alpha,
    alpha), mu_ik = exposure_ik exp(eta_ik) (docs/reference-values.md §11.6, docs/formulas.md §7):
    sum_k [y log mu - log y!] + alpha log alpha + lgamma(alpha + y_i+) - lgamma(alpha)
    - (alpha + y_i+) log(alpha + mu_i+). Returns (loglik per company, mu_i+)."""
    idx, size = stats["company"], stats["size"]
    mu = stats["exposure"] * xp.exp(eta)
    mu_plus = segsum(mu, idx, size)
    y_plus = stats["claims_total"]
    cells = segsum(stats["claims"] * eta, idx, size) + stats["log_const"]
    # alpha log alpha - (alpha + y) log(alpha + mu), written to stay accurate as alpha -> infinity
    ll = cells + lgamma(alpha + y_plus) - lgamma(alpha) - y_plus * xp.log(alpha) - (alpha + y_plus) * xp.log1p(mu_plus / alpha)
    return ll, mu_plus
