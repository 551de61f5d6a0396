"""log|S| and v'S^-1 v of a symmetric positive definite S, for the two namespaces the
likelihood kernels run on (see :mod:`.arrays`): numpy, and a PyTensor Op with a numba kernel.

The crossed classification's marginal log density needs exactly these two numbers of its
Woodbury matrix S = I + F'D^-1F (docs/formulas.md §6). Written with PyTensor's Cholesky and
triangular solves, the log density's gradient brings in the Cholesky gradient and six layouts
of the triangular solve, each a numba function compiled on a machine's first fit (about
10 s of the crossed model's 20 s first compile, ``benchmarks/bench_first_posterior.py``).
Here the value is one Op and its gradient another, each a few loops:

    d log|S| = tr(S^-1 dS),    d(v'S^-1 v) = 2 x'dv - x'dS x,    x = S^-1 v,

so the gradient with respect to S is g_logdet S^-1 - g_quad x x' and with respect to v
2 g_quad x (S symmetric; the gradient is the symmetric one). The loops are plain Cholesky
(S = LL'), forward substitution and L^-1, O(q^3) for q x q: meant for the small systems of the
crossed model (one row and column per level of the two factors).
"""

from __future__ import annotations

import numpy as np

from . import arrays


def logdet_quad(xp, S, v):
    """(log|S|, v'S^-1 v) for a symmetric positive definite ``S`` (numpy: a
    ``LinAlgError`` when it is not; pytensor: the Op below, whose failure nutpie and PyMC
    treat as a rejected point)."""
    if arrays.is_numpy(xp):
        return _logdet_quad_numpy(np.asarray(S, float), np.asarray(v, float))
    return _ops()[0](S, v)


def _logdet_quad_numpy(S, v):
    L = np.linalg.cholesky(S)
    h = arrays.solve_lower(np, L, v)
    return 2.0 * np.sum(np.log(np.diag(L))), h @ h


def _inverse_solve_numpy(S, v):
    Sinv = np.linalg.inv(S)
    return 0.5 * (Sinv + Sinv.T), Sinv @ v


_OPS = None


def _ops():
    """The two PyTensor Ops, built (and their numba kernels registered) on first use, so that
    importing the likelihood kernels loads neither pytensor nor numba."""
    global _OPS
    if _OPS is None:
        _OPS = _build_ops()
    return _OPS


def _build_ops():
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class SPDLogdetQuad(Op):
        """(S, v) -> (log|S|, v'S^-1 v), S symmetric positive definite."""

        __props__ = ()
        gufunc_signature = "(m,m),(m)->(),()"

        def make_node(self, S, v):
            S, v = pt.as_tensor_variable(S, dtype="float64"), pt.as_tensor_variable(v, dtype="float64")
            if S.type.ndim != 2 or v.type.ndim != 1:
                raise TypeError("SPDLogdetQuad takes a matrix and a vector")
            return Apply(self, [S, v], [pt.dscalar(), pt.dscalar()])

        def perform(self, node, inputs, outputs):
            logdet, quad = _logdet_quad_numpy(*inputs)
            outputs[0][0], outputs[1][0] = np.asarray(logdet), np.asarray(quad)

        def infer_shape(self, node, shapes):
            return [(), ()]

        def pullback(self, inputs, outputs, cotangents):
            S, v = inputs
            g_logdet, g_quad = (pt.zeros(()) if isinstance(g.type, DisconnectedType) else g for g in cotangents)
            Sinv, x = inverse_solve(S, v)
            return [g_logdet * Sinv - g_quad * pt.outer(x, x), 2.0 * g_quad * x]

    class SPDInverseSolve(Op):
        """(S, v) -> (S^-1, S^-1 v), S symmetric positive definite (the gradient of
        :class:`SPDLogdetQuad`; not differentiated itself)."""

        __props__ = ()
        gufunc_signature = "(m,m),(m)->(m,m),(m)"

        def make_node(self, S, v):
            S, v = pt.as_tensor_variable(S, dtype="float64"), pt.as_tensor_variable(v, dtype="float64")
            return Apply(self, [S, v], [pt.dmatrix(), pt.dvector()])

        def perform(self, node, inputs, outputs):
            Sinv, x = _inverse_solve_numpy(*inputs)
            outputs[0][0], outputs[1][0] = Sinv, x

        def infer_shape(self, node, shapes):
            return [shapes[0], shapes[1]]

    logdet_quad_op, inverse_solve = SPDLogdetQuad(), SPDInverseSolve()
    _register_numba(SPDLogdetQuad, SPDInverseSolve)
    return logdet_quad_op, inverse_solve


def _register_numba(SPDLogdetQuad, SPDInverseSolve):
    """numba kernels for the two Ops (PyTensor's NUMBA mode, which nutpie compiles). PyTensor
    caches them on disk under the Op's name and a version number: the version is a hash of
    this file, so an edited kernel is never read back from an older cache."""
    import hashlib
    from pathlib import Path

    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    version = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)

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

    @numba_njit
    def inverse_lower(L):
        n = L.shape[0]
        M = np.zeros((n, n))
        for j in range(n):
            M[j, j] = 1.0 / L[j, j]
            for i in range(j + 1, n):
                t = 0.0
                for k in range(j, i):
                    t -= L[i, k] * M[k, j]
                M[i, j] = t / L[i, i]
        return M

    @register_funcify_default_op_cache_key(SPDLogdetQuad)
    def _logdet_quad(op, node, **kwargs):
        @numba_njit
        def spd_logdet_quad(S, v):
            L = cholesky(S)
            n = L.shape[0]
            logdet, quad = 0.0, 0.0
            h = np.empty(n)
            for i in range(n):
                t = v[i]
                for k in range(i):
                    t -= L[i, k] * h[k]
                h[i] = t / L[i, i]
                quad += h[i] * h[i]
                logdet += np.log(L[i, i])
            return np.asarray(2.0 * logdet), np.asarray(quad)

        return spd_logdet_quad, version

    @register_funcify_default_op_cache_key(SPDInverseSolve)
    def _inverse_solve(op, node, **kwargs):
        @numba_njit
        def spd_inverse_solve(S, v):
            M = inverse_lower(cholesky(S))  # S^-1 = M'M, M = L^-1 lower triangular
            n = M.shape[0]
            Sinv = np.empty((n, n))
            x = np.zeros(n)
            for i in range(n):
                for j in range(i + 1):
                    t = 0.0
                    for k in range(i, n):
                        t += M[k, i] * M[k, j]
                    Sinv[i, j] = Sinv[j, i] = t
            for i in range(n):
                for j in range(n):
                    x[i] += Sinv[i, j] * v[j]
            return Sinv, x

        return spd_inverse_solve, version
