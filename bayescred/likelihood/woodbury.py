"""The two Woodbury terms of the crossed classification's marginal log density, for the two
namespaces the likelihood kernels run on (see :mod:`.arrays`): numpy, and a PyTensor Op with
a numba kernel (its gradient another).

With cells k = (i, j), i a level of factor a and j one of b, D = diag(var_ab + sigma2/w_k)
and F the cells' incidence scaled by the SDs (row k of F is f_k' = sd_a e_i' + sd_b e_j',
j counted after the levels of a), V_m = D + FF' and (docs/formulas.md §6)

    log|V_m| = log|D| + log|S|,    r'V_m^-1 r = r'D^-1 r - v'S^-1 v,
    S = I + F'D^-1F = I + sum_k (1/D_k) f_k f_k',    v = F'D^-1 r = sum_k (r_k/D_k) f_k.

:func:`logdet_quad` returns (log|S|, v'S^-1 v). Its gradient, with G = g_logdet S^-1 -
g_quad x x' and x = S^-1 v (d log|S| = tr(S^-1 dS), d v'S^-1 v = 2 x'dv - x'dS x):

    d/d(1/D_k) = f_k'G f_k,    d/d(r_k/D_k) = 2 g_quad f_k'x,
    d/d sd_a = sum_k (1/D_k) 2 e_i'G f_k + 2 g_quad (r_k/D_k) x_i    (sd_b alike, with e_j).

Why an Op: written with PyTensor's scatter, Cholesky and triangular solves, the log
density's gradient holds the Cholesky gradient, six layouts of the triangular solve and the
scatters' gathers, each a numba function compiled on a machine's first fit. The credit
insurance model's log density took 24.4 s to compile with empty caches and its 4 x 2,000 NUTS
iterations 0.97 s; with these Ops (plain loops: the scatter, Cholesky S = LL', forward
substitution, L^-1) 8.7 s and 0.45 s (``benchmarks/bench_crossed.py`` has the whole-process
figures). The loops are O(cells + q^3) for q = levels of a + levels of b. Value and gradient
per call against the same terms in PyTensor's scatter and LAPACK calls (``tests/test_woodbury.py``
designs): q = 6, 13 µs (18); q = 30, 25 µs (33); q = 100, 0.30 ms (0.24); q = 150, 0.99 ms
(0.69): faster on the designs crossed credibility meets, at most 1.5x slower on large ones.
"""

from __future__ import annotations

import functools

import numpy as np

from . import arrays


def logdet_quad(xp, sd_a, sd_b, inv_d, dr, stats):
    """(log|S|, v'S^-1 v) of the module docstring from the SDs of the two factors, each cell's
    1/D_k and r_k/D_k and the cells' levels (``stats``: index_a, index_b, size_a, size_b)."""
    ia, jb = np.asarray(stats["index_a"]), stats["size_a"] + np.asarray(stats["index_b"])
    q = stats["size_a"] + stats["size_b"]
    if arrays.is_numpy(xp):
        return _logdet_quad(sd_a, sd_b, np.asarray(inv_d, float), np.asarray(dr, float), ia, jb, q)
    return _ops()[0](sd_a, sd_b, inv_d, dr, xp.as_tensor(ia), xp.as_tensor(jb), xp.as_tensor(np.int64(q)))


def _system(sd_a, sd_b, inv_d, dr, ia, jb, q):
    """S and v (numpy)."""
    S = np.eye(q)
    np.add.at(S, (ia, ia), inv_d * sd_a * sd_a)
    np.add.at(S, (jb, jb), inv_d * sd_b * sd_b)
    np.add.at(S, (ia, jb), inv_d * sd_a * sd_b)
    np.add.at(S, (jb, ia), inv_d * sd_a * sd_b)
    v = np.bincount(ia, dr * sd_a, minlength=q) + np.bincount(jb, dr * sd_b, minlength=q)
    return S, v


def _logdet_quad(sd_a, sd_b, inv_d, dr, ia, jb, q):
    S, v = _system(sd_a, sd_b, inv_d, dr, ia, jb, q)
    L = np.linalg.cholesky(S)
    h = arrays.solve_lower(np, L, v)
    return 2.0 * np.sum(np.log(np.diag(L))), h @ h


def _gradient(sd_a, sd_b, inv_d, dr, ia, jb, q, g_logdet, g_quad):
    """(d/d sd_a, d/d sd_b, d/d inv_d, d/d dr) of g_logdet log|S| + g_quad v'S^-1 v (numpy)."""
    S, v = _system(sd_a, sd_b, inv_d, dr, ia, jb, q)
    Sinv = np.linalg.inv(S)
    Sinv = 0.5 * (Sinv + Sinv.T)
    x = Sinv @ v
    G = g_logdet * Sinv - g_quad * np.outer(x, x)
    Gii, Gjj, Gij = G[ia, ia], G[jb, jb], G[ia, jb]
    d_inv_d = sd_a * sd_a * Gii + sd_b * sd_b * Gjj + 2.0 * sd_a * sd_b * Gij
    d_dr = 2.0 * g_quad * (sd_a * x[ia] + sd_b * x[jb])
    d_sd_a = np.sum(inv_d * 2.0 * (sd_a * Gii + sd_b * Gij) + 2.0 * g_quad * dr * x[ia])
    d_sd_b = np.sum(inv_d * 2.0 * (sd_b * Gjj + sd_a * Gij) + 2.0 * g_quad * dr * x[jb])
    return d_sd_a, d_sd_b, d_inv_d, d_dr


@functools.cache
def _ops():
    """The crossed model's two Ops (value and gradient), built and their numba kernels
    registered on first use: importing the likelihood kernels loads neither pytensor nor numba."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    def inputs(sd_a, sd_b, inv_d, dr, ia, jb, q):
        floats = [pt.as_tensor_variable(x, dtype="float64") for x in (sd_a, sd_b, inv_d, dr)]
        ints = [pt.as_tensor_variable(x, dtype="int64") for x in (ia, jb, q)]
        if [x.type.ndim for x in floats + ints] != [0, 0, 1, 1, 1, 1, 0]:
            raise TypeError("expects two scalars, two vectors, two index vectors and a size")
        return floats + ints

    class CrossedLogdetQuad(Op):
        """(sd_a, sd_b, 1/D, r/D, level of a, level of b, q) -> (log|S|, v'S^-1 v)."""

        __props__ = ()

        def make_node(self, *args):
            return Apply(self, inputs(*args), [pt.dscalar(), pt.dscalar()])

        def perform(self, node, inputs_, outputs):
            logdet, quad = _logdet_quad(*inputs_)
            outputs[0][0], outputs[1][0] = np.asarray(logdet), np.asarray(quad)

        def infer_shape(self, node, shapes):
            return [(), ()]

        def connection_pattern(self, node):
            return [[True, True]] * 4 + [[False, False]] * 3  # the levels and q: no gradient

        def pullback(self, inputs_, outputs, cotangents):
            g = [pt.zeros(()) if isinstance(c.type, DisconnectedType) else c for c in cotangents]
            return [*gradient(*inputs_, *g), *(disconnected_type() for _ in range(3))]

    class CrossedLogdetQuadGradient(Op):
        """The gradient of :class:`CrossedLogdetQuad` in (sd_a, sd_b, 1/D, r/D), given the
        output cotangents (not differentiated itself)."""

        __props__ = ()

        def make_node(self, sd_a, sd_b, inv_d, dr, ia, jb, q, g_logdet, g_quad):
            g = [pt.as_tensor_variable(x, dtype="float64") for x in (g_logdet, g_quad)]
            return Apply(self, [*inputs(sd_a, sd_b, inv_d, dr, ia, jb, q), *g],
                         [pt.dscalar(), pt.dscalar(), pt.dvector(), pt.dvector()])

        def perform(self, node, inputs_, outputs):
            for out, value in zip(outputs, _gradient(*inputs_)):
                out[0] = np.asarray(value, dtype=float)

        def infer_shape(self, node, shapes):
            return [(), (), shapes[2], shapes[3]]

    value, gradient = CrossedLogdetQuad(), CrossedLogdetQuadGradient()
    _register_numba(CrossedLogdetQuad, CrossedLogdetQuadGradient)
    return value, gradient


def _register_numba(CrossedLogdetQuad, CrossedLogdetQuadGradient):
    """numba kernels for the two Ops (PyTensor's NUMBA mode, which nutpie compiles). PyTensor
    caches them on disk under the Op's name and a version number: the version is a hash of
    this file, so an edited kernel is never read back from an older cache."""
    import hashlib
    from pathlib import Path

    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    version = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)

    @numba_njit
    def system(sd_a, sd_b, inv_d, dr, ia, jb, q):
        S = np.zeros((q, q))
        v = np.zeros(q)
        for i in range(q):
            S[i, i] = 1.0
        for k in range(inv_d.shape[0]):
            i, j = ia[k], jb[k]
            S[i, i] += inv_d[k] * sd_a * sd_a
            S[j, j] += inv_d[k] * sd_b * sd_b
            S[i, j] += inv_d[k] * sd_a * sd_b
            S[j, i] += inv_d[k] * sd_a * sd_b
            v[i] += dr[k] * sd_a
            v[j] += dr[k] * sd_b
        return S, v

    @numba_njit
    def cholesky(S):
        n = S.shape[0]
        L = np.zeros((n, n))
        for j in range(n):
            s = S[j, j]
            for k in range(j):
                s -= L[j, k] * L[j, k]
            if not s > 0.0:
                raise ValueError("the matrix is not positive definite")
            d = np.sqrt(s)
            L[j, j] = d
            for i in range(j + 1, n):
                t = S[i, j]
                for k in range(j):
                    t -= L[i, k] * L[j, k]
                L[i, j] = t / d
        return L

    @register_funcify_default_op_cache_key(CrossedLogdetQuad)
    def _value(op, node, **kwargs):
        @numba_njit
        def crossed_logdet_quad(sd_a, sd_b, inv_d, dr, ia, jb, q):
            S, v = system(sd_a[()], sd_b[()], inv_d, dr, ia, jb, q[()])
            L = cholesky(S)
            logdet, quad = 0.0, 0.0
            h = np.empty(v.shape[0])
            for i in range(v.shape[0]):  # h = L^-1 v
                t = v[i]
                for k in range(i):
                    t -= L[i, k] * h[k]
                h[i] = t / L[i, i]
                quad += h[i] * h[i]
                logdet += np.log(L[i, i])
            return np.asarray(2.0 * logdet), np.asarray(quad)

        return crossed_logdet_quad, version

    @register_funcify_default_op_cache_key(CrossedLogdetQuadGradient)
    def _gradient_kernel(op, node, **kwargs):
        @numba_njit
        def crossed_logdet_quad_gradient(sd_a_, sd_b_, inv_d, dr, ia, jb, q_, g_logdet_, g_quad_):
            sd_a, sd_b, q, g_logdet, g_quad = sd_a_[()], sd_b_[()], q_[()], g_logdet_[()], g_quad_[()]
            S, v = system(sd_a, sd_b, inv_d, dr, ia, jb, q)
            L = cholesky(S)
            M = np.zeros((q, q))  # M = L^-1, lower triangular; S^-1 = M'M
            for j in range(q):
                M[j, j] = 1.0 / L[j, j]
                for i in range(j + 1, q):
                    t = 0.0
                    for k in range(j, i):
                        t -= L[i, k] * M[k, j]
                    M[i, j] = t / L[i, i]
            Sinv = np.empty((q, q))
            for i in range(q):
                for j in range(i + 1):
                    t = 0.0
                    for k in range(i, q):
                        t += M[k, i] * M[k, j]
                    Sinv[i, j] = Sinv[j, i] = t
            x = np.zeros(q)
            for i in range(q):
                for j in range(q):
                    x[i] += Sinv[i, j] * v[j]
            K = inv_d.shape[0]
            d_inv_d, d_dr = np.empty(K), np.empty(K)
            d_sd_a, d_sd_b = 0.0, 0.0
            for k in range(K):
                i, j = ia[k], jb[k]
                Gii = g_logdet * Sinv[i, i] - g_quad * x[i] * x[i]
                Gjj = g_logdet * Sinv[j, j] - g_quad * x[j] * x[j]
                Gij = g_logdet * Sinv[i, j] - g_quad * x[i] * x[j]
                d_inv_d[k] = sd_a * sd_a * Gii + sd_b * sd_b * Gjj + 2.0 * sd_a * sd_b * Gij
                d_dr[k] = 2.0 * g_quad * (sd_a * x[i] + sd_b * x[j])
                d_sd_a += inv_d[k] * 2.0 * (sd_a * Gii + sd_b * Gij) + 2.0 * g_quad * dr[k] * x[i]
                d_sd_b += inv_d[k] * 2.0 * (sd_b * Gjj + sd_a * Gij) + 2.0 * g_quad * dr[k] * x[j]
            return np.asarray(d_sd_a), np.asarray(d_sd_b), d_inv_d, d_dr

        return crossed_logdet_quad_gradient, version
