"""The Gaussian marginal likelihood of the credibility models, written once.

Every Gaussian credibility model integrates its risk effects out in closed form over the
sufficient statistics (docs/formulas.md §2-§6), so one log-density costs O(number of risks),
whatever the number of rows. The same functions serve three callers:

* the PyMC graph (``xp = pytensor.tensor``, scalar hyperparameters): the Bayes potential;
* the draws after sampling (``xp = numpy``, hyperparameters with a leading draws axis): the
  exact conditional distribution of each risk's effect given the hyperparameters;
* empirical Bayes (numpy): lme4's REML criterion and ML deviance at given variance
  parameters with the fixed effects profiled out (``*_criterion``, docs/formulas.md §8.4):
  ML = -2 log L(beta_hat), REML = ML + log|X'V^-1 X| - p log(2 pi).

Models: nested (Bühlmann, Bühlmann–Straub, Jewell's hierarchical; ``nested_*``),
regression credibility (Hachemeister, any p x p between matrix U; ``regression_*``) and the
crossed classification (``crossed_*``). Statistics are those of the factories in
``bayescred.models``: per innermost risk ``n``, ``weight``, weighted ``mean``, ``within_ss``,
``sum_log_w``; per risk the cross-products ``M`` = Q'WQ, ``b`` = Q'Wy, ``c`` = y'Wy; per cell
``mean``, ``weight`` and the pooled ``within_ss``/``within_df``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import arrays, woodbury
from .arrays import segsum, take

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Profiled:
    """lme4's criterion at given variance parameters (REML criterion or ML deviance, the
    fixed effects profiled out) and the GLS fixed effects beta_hat it was evaluated at."""

    criterion: float
    collective: np.ndarray


def _profile(loglik_at, XVX, XVy, reml: bool) -> Profiled:
    """beta_hat = (X'V^-1X)^-1 X'V^-1y; -2 log L(beta_hat) (+ log|X'V^-1X| - p log 2 pi for
    REML: -2 log of the likelihood integrated over beta with a flat prior)."""
    XVX, XVy = np.atleast_2d(XVX), np.atleast_1d(XVy)
    beta = np.linalg.solve(XVX, XVy)
    value = -2.0 * float(np.sum(loglik_at(beta)))
    if reml:
        value += float(np.linalg.slogdet(XVX)[1]) - len(beta) * LOG2PI
    return Profiled(value, beta)


# ---------------------------------------------------------------- nested (one-way, hierarchical)

def within_term(xp, sigma2, n, weight, within_ss, sum_log_w):
    """log density of a risk's rows around their weighted mean: the part of
    prod_t N(y_t | mu, sigma2/w_t) that does not involve mu (docs/formulas.md §2),
    -1/2 [(n - 1) log(2 pi sigma2) - (sum_t log w_t - log w) + SS/sigma2]."""
    return _within(xp, sigma2, n - 1, sum_log_w - xp.log(weight), within_ss)


def _within(xp, sigma2, df, log_w, within_ss):
    return -0.5 * (df * (LOG2PI + xp.log(sigma2)) - log_w + within_ss / sigma2)


WITHIN_TOTALS = ("within_df", "within_log_w", "within_ss_total")


def within_totals(stats) -> dict:
    """The sums over the risks of what :func:`within_term` reads, as floats: the degrees of
    freedom sum (n - 1), sum (sum_t log w_t - log w) and the pooled SS (:data:`WITHIN_TOTALS`)."""
    return dict(zip(WITHIN_TOTALS, (float(np.sum(stats["n"] - 1)),
                                    float(np.sum(stats["sum_log_w"] - np.log(stats["weight"]))),
                                    float(np.sum(stats["within_ss"])))))


def within_total(xp, sigma2, totals):
    """The sum over the risks of :func:`within_term`, from :func:`within_totals` (the term is
    linear in the statistics): a log density's data-only sums are not recomputed at every
    evaluation (in the sampler's compiled log density they were a reduction over the risks
    and three of the five arrays its loop read)."""
    return _within(xp, sigma2, *(totals[k] for k in WITHIN_TOTALS))


def nested_precisions(xp, tau2, sigma2, stats, parents, sizes):
    """Bottom up, each node's precision A and mean B of the data about its own mean: for a
    risk A = w/sigma2, B = X_j; a parent collapses its children with weights 1/v_c,
    v_c = tau2_c + 1/A_c (Jewell's hierarchical credibility, docs/formulas.md §3).

    ``tau2`` lists the variance of each level's effect, outermost first; ``parents[l]`` maps
    the nodes of level l+1 to their parent at level l and ``sizes[l]`` counts level l's nodes.
    Returns ([A per level], [B per level])."""
    levels = len(tau2)
    A = [None] * levels
    B = [None] * levels
    A[-1] = stats["weight"] / sigma2
    B[-1] = stats["mean"]
    for level in range(levels - 1, 0, -1):
        idx, size = parents[level - 1], sizes[level - 1]
        v = tau2[level] + 1.0 / A[level]
        A[level - 1] = segsum(xp, 1.0 / v, idx, size)
        B[level - 1] = segsum(xp, B[level] / v, idx, size) / A[level - 1]
    return A, B


def nested_collapse(xp, collective, tau2, sigma2, stats, parents, sizes, within: bool = True):
    """Integrate the random effects of a nested Gaussian model out, bottom up
    (:func:`nested_precisions`). Returns (loglik per top-level node, [A per level],
    [B per level]); the log-likelihood is the exact log density of all rows under the top
    node (constants included), or without the risks' :func:`within_term` (``within=False``;
    their sum is :func:`within_total`)."""
    A, B = nested_precisions(xp, tau2, sigma2, stats, parents, sizes)
    acc = within_term(xp, sigma2, stats["n"], stats["weight"], stats["within_ss"], stats["sum_log_w"]) if within else 0.0
    for level in range(len(tau2) - 1, 0, -1):
        idx, size = parents[level - 1], sizes[level - 1]
        v = tau2[level] + 1.0 / A[level]
        spread = (B[level] - take(B[level - 1], idx)) ** 2 / v
        acc = segsum(xp, acc - 0.5 * (LOG2PI + xp.log(v) + spread), idx, size) - 0.5 * (xp.log(A[level - 1]) - LOG2PI)
    v_top = tau2[0] + 1.0 / A[0]
    loglik = acc - 0.5 * (LOG2PI + xp.log(v_top) + (B[0] - collective) ** 2 / v_top)
    return loglik, A, B


def nested_criterion(tau2, sigma2, stats, parents, sizes, reml: bool = True) -> Profiled:
    """lme4's REML criterion (``reml=True``) or ML deviance of ``y ~ 1 + (1|outer) + ... +
    (1|outer:...:inner)`` with weights, at between variances ``tau2`` (outermost first) and
    within variance ``sigma2``: X'V^-1X = sum_s 1/v_s, X'V^-1y = sum_s B_s/v_s over the
    top-level nodes, v_s = tau2_0 + 1/A_s."""
    A, B = nested_precisions(np, tau2, sigma2, stats, parents, sizes)
    v = tau2[0] + 1.0 / A[0]
    return _profile(lambda beta: nested_collapse(np, beta[0], tau2, sigma2, stats, parents, sizes)[0],
                    np.sum(1.0 / v), np.sum(B[0] / v), reml)


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
        anchor = parent_mean if level == 0 else take(parent_mean, parents[level - 1])
        parent_mean = anchor + Z * (B[level] - anchor)
        means.append(parent_mean)
    return means


def nested_posterior(rng, collective, tau2, A, B, parents):
    """Each node's credibility factor Z, its conditional-mean premium (as
    :func:`nested_conditional_means`) and an exact draw of its mean, top down: given the
    parent's drawn mean p, N(p + Z (B - p), tau2 (1 - Z)). numpy, leading draws axis; the
    arrays are (draws x nodes), so the arithmetic is done in place: each level's A (draws x
    nodes, from :func:`nested_precisions`) is overwritten with its Z, and the conditional
    mean's array holds the draw's SD until the draw is made. A level costs three arrays of
    draws x nodes (a lower level a fourth, for the centre of its draw): with every risk's
    draws kept, these arrays are the memory the posterior needs."""
    Zs, means, draws = [], [], []
    mean_parent = draw_parent = collective
    for level, t2 in enumerate(tau2):
        Z = A[level]
        Z *= t2
        mean = Z + 1.0  # 1 + tau2 A, then the SD: tau2 (1 - Z) = tau2 / (1 + tau2 A)
        Z /= mean
        sd = np.sqrt(np.divide(t2, mean, out=mean), out=mean)
        draw = rng.standard_normal(Z.shape)
        draw *= sd
        if level == 0:
            mean = _shrink_towards(collective, Z, B[level], out=sd)
            draw += mean
        else:
            idx = parents[level - 1]
            draw += _shrink_towards(take(draw_parent, idx), Z, B[level])
            mean = _shrink_towards(take(mean_parent, idx), Z, B[level], out=sd)
        Zs.append(Z)
        means.append(mean)
        draws.append(draw)
        mean_parent, draw_parent = mean, draw
    return Zs, means, draws


def _shrink_towards(anchor, Z, B, out=None):
    """anchor + Z (B - anchor), into ``out`` (a new array when None)."""
    out = np.subtract(B, anchor, out=out)
    out *= Z
    out += anchor
    return out


# ---------------------------------------------------------------- regression (Hachemeister)
#
# A between matrix given as a 4-tuple of entries is 2 x 2 and takes the entry-by-entry fast
# path (no batched linear algebra: what nutpie's numba backend compiles best); given as an
# array (..., p, p) it takes the general path. tests/test_likelihood.py holds them equal.

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


def _mv(xp, a, v):
    return xp.matmul(a, v[..., None])[..., 0]


def _dot(a, b):
    return (a * b).sum(axis=-1)


def _blocks2(U, sigma2, M):
    """H and E of :func:`regression_blocks`, 2 x 2, entries in and out."""
    UM = mm2(U, M)
    H = (UM[0] + sigma2, UM[1], UM[2], UM[3] + sigma2)
    return H, mm2(inv2(H), U)


def regression2(beta, U, sigma2, M, b, c):
    """The 2 x 2 Woodbury pieces of :func:`regression_loglik` per risk: H, E, d = b - M beta,
    r'Wr = c - 2 beta'b + beta'M beta, E d and quad = r'Wr - d'E d. Entries in, entries out,
    arithmetic only: numpy arrays, pytensor tensors and (in the compiled log density,
    :mod:`.regression`) numba's scalars all go through it."""
    H, E = _blocks2(U, sigma2, M)
    Mb = mv2(M, beta)
    d = (b[0] - Mb[0], b[1] - Mb[1])
    rWr = c - 2 * (beta[0] * b[0] + beta[1] * b[1]) + beta[0] * Mb[0] + beta[1] * Mb[1]
    Ed = mv2(E, d)
    return H, E, d, rWr, Ed, rWr - (d[0] * Ed[0] + d[1] * Ed[1])


def regression_blocks(U, sigma2, M, xp=None):
    """H = sigma2 I + U M_j and E = H^-1 U per risk. The credibility matrix is
    A_j = E M_j = (U M_j + sigma2 I)^-1 U M_j and Cov(beta_j | data, beta) = sigma2 E
    (docs/formulas.md §4: A_j = (M_j + sigma2 U^-1)^-1 M_j, written without U^-1 so that a
    singular U (correlation +/-1, a zero variance) stays finite). Entries in, entries out
    for 2 x 2 (``xp`` unused); arrays (..., p, p) with their namespace ``xp`` otherwise."""
    if isinstance(U, tuple):
        return _blocks2(U, sigma2, M)
    p = M.shape[-1]
    H = xp.matmul(U, M) + xp.expand_dims(sigma2, (-2, -1)) * xp.eye(p)
    return H, arrays.solve(xp, H, U)


def regression_loglik(xp, beta, U, sigma2, stats):
    """Exact log density of each risk's rows in y_j = Q_j beta_j + e, beta_j ~ N(beta, U),
    e ~ N(0, sigma2 W_j^-1), from the cross-products M = Q'WQ, b = Q'Wy, c = y'Wy (Woodbury):
    -n/2 log(2 pi sigma2) + 1/2 sum log w - 1/2 log|I + U M/sigma2| - [r'Wr - d'E d]/(2 sigma2),
    r'Wr = c - 2 beta'b + beta'M beta, d = b - M beta. Returns (loglik per risk, H, E, d);
    E[beta_j | data] = beta + E d and Cov(beta_j | data) = sigma2 E.

    2 x 2 fast path: ``beta`` and ``U`` and ``stats["M"]``/``stats["b"]`` as entry tuples
    (:func:`_mat`); general path: ``beta`` (..., p), ``U`` (..., p, p), ``M`` (J, p, p),
    ``b`` (J, p) arrays, ``sigma2`` broadcastable against the risks (a leading draws axis
    needs trailing length-1 axes, as in the factories' draws)."""
    M, b, c = stats["M"], stats["b"], stats["c"]
    if isinstance(U, tuple):
        H, E, d, _, _, quad = regression2(beta, U, sigma2, M, b, c)
        logdet = xp.log(det2(H)) - 2 * xp.log(sigma2)
    else:
        p = M.shape[-1]
        H, E = regression_blocks(U, sigma2, M, xp)
        beta = xp.expand_dims(beta, -2)  # over the risks
        Mb = _mv(xp, M, beta)
        d = b - Mb
        rWr = c - 2 * _dot(beta, b) + _dot(beta, Mb)
        quad = rWr - _dot(d, _mv(xp, E, d))
        logdet = xp.log(arrays.det(xp, H)) - p * xp.log(sigma2)
    return regression_assemble(stats["n"], stats["sum_log_w"], logdet, xp.log(sigma2), quad, sigma2), H, E, d


def regression_assemble(n, sum_log_w, logdet, log_sigma2, quad, sigma2):
    """-1/2 [n (log 2 pi + log sigma2) - sum log w + log|I + U M/sigma2| + quad/sigma2], the
    logs given (arithmetic only, as :func:`regression2`)."""
    return -0.5 * (n * (LOG2PI + log_sigma2) - sum_log_w + logdet + quad / sigma2)


def regression_criterion(U, sigma2, stats, reml: bool = True) -> Profiled:
    """lme4's REML criterion or ML deviance of ``y ~ Q + (Q|risk)`` (U full) or its
    uncorrelated form (U diagonal) with weights, at between matrix U (p x p) and within
    variance sigma2: X'V^-1X = sum_j (M_j - M_j E_j M_j)/sigma2 and
    X'V^-1y = sum_j (b_j - M_j E_j b_j)/sigma2 (Woodbury, as :func:`regression_blocks`)."""
    U = np.asarray(U, float)
    M, b = stats["M"], stats["b"]
    _, E = regression_blocks(U, sigma2, M, np)
    ME = M @ E
    XVX = (M - ME @ M).sum(0) / sigma2
    XVy = (b - _mv(np, ME, b)).sum(0) / sigma2
    return _profile(lambda beta: regression_loglik(np, beta, U, sigma2, stats)[0], XVX, XVy, reml)


# ---------------------------------------------------------------- crossed classification

def _crossed_scatter(stats):
    """Constant index arrays of the crossed kernels: each cell's four positions (i, i),
    (j, j), (i, j), (j, i) in the flattened (levels x levels) matrix F'D^-1F (i a level of a,
    j = size_a + the level of b), the cell of each position, and masks picking the
    positions' factor products (a a, b b, a b) and the levels of each factor."""
    ia, ib, na, nb = stats["index_a"], stats["index_b"], stats["size_a"], stats["size_b"]
    q, K = na + nb, len(ia)
    jb = na + ib
    position = np.concatenate([ia * q + ia, jb * q + jb, ia * q + jb, jb * q + ia])
    kind = np.repeat(np.arange(4), K)
    return {"position": position, "cell": np.tile(np.arange(K), 4), "aa": (kind == 0) * 1.0, "bb": (kind == 1) * 1.0,
            "ab": (kind >= 2) * 1.0, "level_a": (np.arange(q) < na) * 1.0, "level_b": (np.arange(q) >= na) * 1.0}


def _crossed_woodbury(xp, var_a, var_b, var_ab, sigma2, stats):
    """V_m = D + F F', D = diag(var_ab + sigma2/w_c), F = [A sd_a, B sd_b] (A, B the cells'
    incidence on the levels of each factor): D, 1/D, the Cholesky factor L of
    I + F'D^-1F, (I+J) x (I+J), the two SDs and the constant indices. F'D^-1F is one scatter
    of the cells' 1/D into a flat vector (no stacked or joined pieces: the pytensor gradient
    stays a gather). The log density (:func:`_crossed_cells`) does without L."""
    na, nb = stats["size_a"], stats["size_b"]
    q = na + nb
    ix = _crossed_scatter(stats)
    D = var_ab + sigma2 / stats["weight"]
    inv_d = 1.0 / D
    sa, sb = xp.sqrt(var_a), xp.sqrt(var_b)
    values = take(inv_d, ix["cell"]) * (var_a * ix["aa"] + var_b * ix["bb"] + sa * sb * ix["ab"])
    FtDF = segsum(xp, values, ix["position"], q * q).reshape((q, q))
    L = arrays.cholesky(xp, xp.eye(q) + FtDF)
    return D, inv_d, L, (sa, sb, ix)


def _crossed_half(xp, parts, stats, r):
    """h = L^-1 F'D^-1 r, so that r'V_m^-1 s = r'D^-1 s - h_r'h_s."""
    _, inv_d, L, (sa, sb, ix) = parts
    ia, ib, na, nb = stats["index_a"], stats["index_b"], stats["size_a"], stats["size_b"]
    q = na + nb
    dr = inv_d * r
    FtDr = (sa * ix["level_a"] + sb * ix["level_b"]) * (segsum(xp, dr, ia, q) + segsum(xp, dr, na + ib, q))
    return arrays.solve_lower(xp, L, FtDr)


def _crossed_quad(xp, parts, stats, r):
    """r'V_m^-1 r by Woodbury."""
    h = _crossed_half(xp, parts, stats, r)
    return xp.sum(r * r * parts[1]) - xp.sum(h * h)


def _crossed_logdet(xp, parts):
    """log|V_m| = log|D| + log|I + F'D^-1F|."""
    D, _, L, _ = parts
    return xp.sum(xp.log(D)) + 2 * xp.sum(xp.log(xp.diag(L)))


def _crossed_cells(xp, parts, stats, r):
    """log density of the cell means with residuals r = ybar - m:
    -1/2 [K log 2 pi + log|V_m| + r'V_m^-1 r], with log|V_m| = log|D| + log|S| and
    r'V_m^-1 r = r'D^-1 r - v'S^-1 v (Woodbury), the two terms of S from
    :func:`.woodbury.logdet_quad` (one Op in a pytensor graph, its gradient another)."""
    D, inv_d, _, (sa, sb, _) = parts
    dr = inv_d * r
    logdet, quad = woodbury.logdet_quad(xp, sa, sb, inv_d, dr, stats)
    K = stats["mean"].shape[0]
    return -0.5 * (K * LOG2PI + xp.sum(xp.log(D)) + logdet + xp.sum(r * dr) - quad)


def _crossed_within(xp, sigma2, stats):
    """The rows around their cell means: the per-cell within terms with a pooled SS."""
    df, ss = stats["within_df"], stats["within_ss"]
    return -0.5 * (df * (LOG2PI + xp.log(sigma2)) - stats["log_w_const"] + ss / sigma2)


def crossed_loglik(xp, collective, var_a, var_b, var_ab, sigma2, stats):
    """Exact log density of all rows of a crossed classification (docs/formulas.md §6) from the
    cell means, weights and the pooled within-cell SS: O(cells + (levels)^3). One number."""
    parts = _crossed_woodbury(xp, var_a, var_b, var_ab, sigma2, stats)
    return _crossed_cells(xp, parts, stats, stats["mean"] - collective) + _crossed_within(xp, sigma2, stats)


def _crossed_gls(parts, stats):
    """1'V_m^-1 1 and 1'V_m^-1 ybar by Woodbury (numpy)."""
    one = np.ones_like(stats["mean"])
    h1, hy = _crossed_half(np, parts, stats, one), _crossed_half(np, parts, stats, stats["mean"])
    inv_d = parts[1]
    return np.sum(inv_d) - h1 @ h1, np.sum(inv_d * stats["mean"]) - h1 @ hy


def crossed_collective(var_a, var_b, var_ab, sigma2, stats) -> float:
    """The GLS collective m_hat = (1'V_m^-1 1)^-1 1'V_m^-1 ybar (the cells' statistics only)."""
    XVX, XVy = _crossed_gls(_crossed_woodbury(np, var_a, var_b, var_ab, sigma2, stats), stats)
    return float(XVy / XVX)


def crossed_criterion(var_a, var_b, var_ab, sigma2, stats, reml: bool = True) -> Profiled:
    """lme4's REML criterion or ML deviance of ``y ~ 1 + (1|a) + (1|b) [+ (1|a:b)]`` with
    weights (var_ab = 0 without the interaction); ``.collective`` is the GLS m_hat =
    (1'V_m^-1 1)^-1 1'V_m^-1 ybar."""
    parts = _crossed_woodbury(np, var_a, var_b, var_ab, sigma2, stats)
    within = _crossed_within(np, sigma2, stats)
    return _profile(lambda beta: _crossed_cells(np, parts, stats, stats["mean"] - beta[0]) + within,
                    *_crossed_gls(parts, stats), reml)


def crossed_profiled(ratios, stats, reml: bool = True):
    """lme4's profiled criterion of the crossed classification as a function of the ratios
    gamma = (var_a, var_b, var_ab)/sigma2 alone (sigma2 profiled out too, docs/formulas.md §6):
    with H = V_m/sigma2, sigma2_hat = (SSW + r'H^-1r)/(N - p) and
    criterion = log|H| [+ log(1'H^-1 1)] + (N - p)(1 + log(2 pi sigma2_hat)) - sum log w,
    p = 1 for REML, 0 for ML, N = cells + within df. Returns (criterion, sigma2_hat,
    gradient in gamma): d/dgamma_k = tr(H^-1 K_k) [- a'K_k a/s] - (N - p) r'K_k r/(SSW + r'H^-1r),
    a = H^-1 1, s = 1'a, r = H^-1(ybar - m 1), K_k = AA', BB', I (dense: few cells)."""
    g = np.asarray(ratios, float)
    y, w = stats["mean"], stats["weight"]
    parts = _crossed_woodbury(np, g[0], g[1], g[2], 1.0, stats)
    s, XVy = _crossed_gls(parts, stats)
    m = XVy / s
    one = np.ones_like(y)
    quad = _crossed_quad(np, parts, stats, y - m)
    p = 1 if reml else 0
    N = stats["within_df"] + len(y)
    total = stats["within_ss"] + quad
    sigma2 = total / (N - p)
    value = _crossed_logdet(np, parts) + (np.log(s) if reml else 0.0) + (N - p) * (1.0 + LOG2PI + np.log(sigma2)) - stats["log_w_const"]
    # gradient, densely
    ia, ib = stats["index_a"], stats["index_b"]
    Ks = [(ia[:, None] == ia[None, :]).astype(float), (ib[:, None] == ib[None, :]).astype(float), np.eye(len(y))]
    Hinv = np.linalg.inv(sum(gk * K for gk, K in zip(g, Ks)) + np.diag(1.0 / w))
    a = Hinv @ one
    r = Hinv @ (y - m)
    grad = np.array([np.sum(Hinv * K) - (a @ K @ a / s if reml else 0.0) - (N - p) * (r @ K @ r) / total for K in Ks])
    return float(value), float(sigma2), grad


def crossed_conditional_means(xp, collective, var_a, var_b, var_ab, sigma2, stats):
    """E[(a, b, c) | hyperparameters, data], the BLUP C V_m^-1 (ybar - m) split by term:
    a = var_a A'V_m^-1 r, b = var_b B'V_m^-1 r, c = var_ab V_m^-1 r, r = ybar - m, with
    V_m^-1 r = D^-1 (r - F L'^-1 h) by Woodbury (docs/formulas.md §6). One set of
    hyperparameters (scalars)."""
    parts = _crossed_woodbury(xp, var_a, var_b, var_ab, sigma2, stats)
    _, inv_d, L, (sa, sb, _) = parts
    ia, ib, na = stats["index_a"], stats["index_b"], stats["size_a"]
    r = stats["mean"] - collective
    g = arrays.solve_upper(xp, L.T, _crossed_half(xp, parts, stats, r))
    Vr = inv_d * (r - sa * g[ia] - sb * g[na + ib])
    return var_a * segsum(xp, Vr, ia, na), var_b * segsum(xp, Vr, ib, stats["size_b"]), var_ab * Vr


def crossed_credibility_factors(xp, var_a, var_b, var_ab, sigma2, stats):
    """Z = diag(C V_m^-1) per cell, the weight of a cell's own mean in its premium
    (docs/formulas.md §6). As C = V_m - sigma2 W^-1, Z_k = 1 - (sigma2/w_k) (V_m^-1)_kk, and by
    Woodbury (V_m^-1)_kk = 1/D_k - |L^-1 f_k|^2 / D_k^2 with f_k = F'e_k (the factor's scaled
    incidence of cell k): O(cells x levels^2), no cells x cells solve. One set of
    hyperparameters (scalars)."""
    D, inv_d, L, (sa, sb, ix) = _crossed_woodbury(xp, var_a, var_b, var_ab, sigma2, stats)
    ia, ib, na, nb = stats["index_a"], stats["index_b"], stats["size_a"], stats["size_b"]
    cells = np.arange(len(ia))
    E = np.zeros((na + nb, len(ia)))  # F' = diag(sd of each level's factor) E
    E[ia, cells] = 1.0
    E[na + ib, cells] = 1.0
    G = arrays.solve_lower(xp, L, (sa * ix["level_a"] + sb * ix["level_b"])[:, None] * E)
    v_kk = inv_d - xp.sum(G * G, axis=0) * inv_d**2
    return 1.0 - sigma2 / stats["weight"] * v_kk


CROSSED_DRAW_BLOCK = 2**24  # float64 entries of each (draws x levels x levels) array in flight (128 MiB)


def crossed_posterior(rng, collective, var_a, var_b, var_ab, sigma2, stats):
    """Per posterior draw (numpy; hyperparameters with one row per draw): each cell's
    credibility factor Z = diag(C V_m^-1), the conditional means of (a, b, c) (the BLUPs of
    :func:`crossed_conditional_means`) and one exact draw of (a, b, c) from their joint
    conditional distribution, in two exact steps:

    * (a, b) with c integrated out: r = ybar - m = A a + B b + (c + e), c + e ~ N(0, D),
      D = var_ab + sigma2/w, so (a, b) | r ~ N(P^-1 G'D^-1 r, P^-1) with G = [A B] and
      P = diag(1/var_a, 1/var_b) + G'D^-1 G, a (levels of a + levels of b) system per draw,
      batched over draws (a component at 0 gets precision 1e300);
    * c | a, b cell by cell: N(var_ab/D (r - a_i - b_j), var_ab (sigma2/w) / D).

    Z_k = 1 - (sigma2/w_k) (V_m^-1)_kk with (V_m^-1)_kk = 1/D_k - g_k'P^-1 g_k / D_k^2 (Woodbury,
    g_k = G'e_k). O(draws x levels^3), nothing of size cells x cells. Returns
    (Z, (mean_a, mean_b, mean_c), (a, b, c)), each (draws, nodes)."""
    ia, ib = stats["index_a"], stats["index_b"]
    na, nb = stats["size_a"], stats["size_b"]
    q, K = na + nb, len(ia)
    w, r = stats["weight"], stats["mean"] - np.asarray(collective, float)[:, None]
    tiny = 1e-300
    D = var_ab[:, None] + sigma2[:, None] / w
    inv_d = 1.0 / D
    ix = _crossed_scatter(stats)  # P's off-prior part G'D^-1G: each cell's 1/D at (i, i), (j, j), (i, j), (j, i)
    dr = inv_d * r
    h = np.concatenate([segsum(np, dr, ia, na), segsum(np, dr, ib, nb)], axis=1)
    prior = np.concatenate([np.repeat(1.0 / np.maximum(var_a, tiny)[:, None], na, axis=1),
                            np.repeat(1.0 / np.maximum(var_b, tiny)[:, None], nb, axis=1)], axis=1)
    mean_ab, ab, gPg = np.empty((len(r), q)), np.empty((len(r), q)), np.empty((len(r), K))
    block = max(1, CROSSED_DRAW_BLOCK // (q * q))
    for lo in range(0, len(r), block):
        part = slice(lo, lo + block)
        P = segsum(np, inv_d[part][:, ix["cell"]], ix["position"], q * q).reshape(-1, q, q)
        P[:, np.arange(q), np.arange(q)] += prior[part]
        Lt_inv = np.swapaxes(np.linalg.inv(np.linalg.cholesky(P)), 1, 2)  # P = LL': P^-1 = L'^-1 L^-1
        Pinv = Lt_inv @ np.swapaxes(Lt_inv, 1, 2)
        mean_ab[part] = np.einsum("sqr,sr->sq", Pinv, h[part])
        z = rng.standard_normal((len(P), q, 1))
        ab[part] = mean_ab[part] + (Lt_inv @ z)[..., 0]
        gPg[part] = Pinv[:, ia, ia] + Pinv[:, na + ib, na + ib] + 2.0 * Pinv[:, ia, na + ib]
    Z = 1.0 - sigma2[:, None] / w * (inv_d - gPg * inv_d**2)
    shrink = var_ab[:, None] * inv_d
    mean_c = shrink * (r - mean_ab[:, ia] - mean_ab[:, na + ib])
    a, b = ab[:, :na], ab[:, na:]
    c = shrink * (r - a[:, ia] - b[:, ib]) + np.sqrt(shrink * sigma2[:, None] / w) * rng.standard_normal((len(r), K))
    return Z, (mean_ab[:, :na], mean_ab[:, na:], mean_c), (a, b, c)
