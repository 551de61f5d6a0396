"""Hachemeister's marginal log density, summed over the risks, and its gradient, as one PyTensor
Op with a numba kernel (docs/formulas.md §4).

Per risk, with V = sigma2 W^-1 + Q U Q' and r = y - Q beta, from the cross-products
M = Q'WQ, b = Q'Wy, c = y'Wy and the pieces of :func:`.gaussian.regression2` (H = sigma2 I +
U M, E = H^-1 U, d = b - M beta):

    Q'V^-1 r = g = (I - M E) d / sigma2,        Q'V^-1 Q = (M - M E M) / sigma2,
    tr(V^-1 W^-1) = (n - tr(E M)) / sigma2,
    r'V^-1 W^-1 V^-1 r = (r'Wr - 2 d'E d + d'E M E d) / sigma2^2,

so that (d log N(y; Q beta, V) = -1/2 tr(V^-1 dV) + 1/2 r'V^-1 dV V^-1 r + r'V^-1 Q d beta):

    d/d beta = g,    d/dU = 1/2 [g g' - Q'V^-1 Q],    d/d sigma2 = 1/2 [r'V^-1W^-1V^-1 r - tr(V^-1 W^-1)].

U enters as its three entries (u00, u01, u11); d/d u01 counts both off-diagonal places.

Why an Op: the same log density as a PyTensor graph of 2 x 2 entries is a few dozen
elementwise nodes, and its gradient as many again, each compiled by numba on a machine's first
posterior: Hachemeister's log density took 8.2 s to compile with empty caches, 6.2 s with an Op
for the value and another for the gradient, and PyTensor's rewriting of it 1.2 s, now 0.5 s
(``benchmarks/bench_first_posterior.py`` has the whole-process figures). One Op returns the
value and the six partial derivatives together: the sampler always asks for both, so one
kernel is compiled, not two, and each risk's Woodbury pieces are computed once per gradient
evaluation, not twice. Its pullback multiplies the partials by the cotangent; second
derivatives are not offered. The kernel loops over the risks calling
:func:`.gaussian.regression2`, :func:`.gaussian.regression_assemble` and :func:`gradient2`
themselves (numba compiles the plain Python functions through ``register_jitable``), so the
formulas are written once: the Op's numpy implementation is :func:`.gaussian.regression_loglik`
and :func:`gradient2`. The per-risk log-likelihood the model reports (deterministic ``loglik``)
stays that graph, evaluated after sampling.
"""

from __future__ import annotations

import functools

import numpy as np

from . import arrays, gaussian
from .gaussian import mm2, mv2, regression2


def gradient2(parts, sigma2, M, n):
    """Per risk, the derivatives of the 2 x 2 log density (module docstring) with respect to
    beta (two), U's entries u00, u01 (both places), u11 and sigma2, from the Woodbury pieces
    ``parts`` of :func:`.gaussian.regression2`. Entries in, entries out, arithmetic only (numpy
    arrays over the risks, or numba scalars)."""
    H, E, d, rWr, Ed, quad = parts
    MEd = mv2(M, Ed)
    g = ((d[0] - MEd[0]) / sigma2, (d[1] - MEd[1]) / sigma2)
    EM = mm2(E, M)
    MEM = mm2(M, EM)
    dU00 = 0.5 * (g[0] * g[0] - (M[0] - MEM[0]) / sigma2)
    dU01 = g[0] * g[1] - (M[1] - MEM[1]) / sigma2
    dU11 = 0.5 * (g[1] * g[1] - (M[3] - MEM[3]) / sigma2)
    EMEd = mv2(E, MEd)
    dEd = rWr - quad
    rVWVr = (rWr - 2.0 * dEd + d[0] * EMEd[0] + d[1] * EMEd[1]) / (sigma2 * sigma2)
    ds2 = 0.5 * (rVWVr - (n - (EM[0] + EM[3])) / sigma2)
    return g[0], g[1], dU00, dU01, dU11, ds2


def loglik_total(xp, beta, U, sigma2, data):
    """The sum over risks of :func:`.gaussian.regression_loglik` (2 x 2): ``beta`` two
    entries, ``U`` its three (u00, u01, u11), ``data`` the arrays M (J, 2, 2), b (J, 2), c, n and
    sum_log_w. numpy: that function summed; pytensor: the Op."""
    if arrays.is_numpy(xp):
        return float(np.sum(_loglik(*beta, *U, sigma2, *(np.asarray(data[k], float) for k in _DATA))))
    return _op()(*beta, *U, sigma2, *(data[k] for k in _DATA))[0]


_DATA = ("M", "b", "c", "n", "sum_log_w")


def _loglik(beta0, beta1, u00, u01, u11, sigma2, M, b, c, n, sum_log_w):
    stats = {"M": gaussian._mat(M), "b": (b[:, 0], b[:, 1]), "c": c, "n": n, "sum_log_w": sum_log_w}
    return gaussian.regression_loglik(np, (beta0, beta1), (u00, u01, u01, u11), sigma2, stats)[0]


def _partials(beta0, beta1, u00, u01, u11, sigma2, M, b, c, n, sum_log_w):
    M = gaussian._mat(M)
    parts = regression2((beta0, beta1), (u00, u01, u01, u11), sigma2, M, (b[:, 0], b[:, 1]), c)
    return [np.sum(x) for x in gradient2(parts, sigma2, M, n)]


@functools.cache
def _op():
    """Hachemeister's Op, built and its numba kernel registered on first use: importing the
    likelihood kernels loads neither pytensor nor numba."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class RegressionLoglik(Op):
        """(beta0, beta1, u00, u01, u11, sigma2, M, b, c, n, sum_log_w) -> the log density
        summed over the risks, then its partial derivatives in the six scalars."""

        __props__ = ()

        def make_node(self, *args):
            xs = [pt.as_tensor_variable(x, dtype="float64") for x in args]
            if [x.type.ndim for x in xs] != [0] * 6 + [3, 2, 1, 1, 1]:
                raise TypeError("expects six scalars, M (J, 2, 2), b (J, 2), c, n and sum_log_w (J,)")
            return Apply(self, xs, [pt.dscalar() for _ in range(7)])

        def perform(self, node, inputs_, outputs):
            values = [np.sum(_loglik(*inputs_)), *_partials(*inputs_)]
            for out, value in zip(outputs, values):
                out[0] = np.asarray(value, dtype=float)

        def infer_shape(self, node, shapes):
            return [()] * 7

        def connection_pattern(self, node):
            return [[True] * 7] * 6 + [[False] * 7] * 5  # the data: no gradient

        def pullback(self, inputs_, outputs, cotangents):
            g, *higher = cotangents
            if not all(isinstance(c.type, DisconnectedType) for c in higher):
                raise NotImplementedError("second derivatives of Hachemeister's log density are not offered")
            if isinstance(g.type, DisconnectedType):
                g = pt.zeros(())
            return [*(g * partial for partial in outputs[1:]), *(disconnected_type() for _ in range(5))]

    _register_numba(RegressionLoglik)
    return RegressionLoglik()


def _register_numba(RegressionLoglik):
    """The Op's numba kernel. PyTensor caches it on disk under the Op's name and a version
    number: a hash of this file and of gaussian.py, whose functions it compiles."""
    import hashlib
    from pathlib import Path

    from numba.extending import register_jitable
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    for fn in (gaussian.mm2, gaussian.mv2, gaussian.det2, gaussian.inv2, gaussian._blocks2, regression2,
               gaussian.regression_assemble, gradient2):
        register_jitable(fn)
    source = Path(gaussian.__file__).read_bytes() + Path(__file__).read_bytes()
    version = int(hashlib.sha256(source).hexdigest()[:15], 16)
    det2, assemble = gaussian.det2, gaussian.regression_assemble

    @register_funcify_default_op_cache_key(RegressionLoglik)
    def _kernel(op, node, **kwargs):
        @numba_njit
        def regression_loglik(beta0, beta1, u00, u01, u11, sigma2, M, b, c, n, sum_log_w):
            beta, U, s2 = (beta0[()], beta1[()]), (u00[()], u01[()], u01[()], u11[()]), sigma2[()]
            log_s2 = np.log(s2)
            total = 0.0
            out = np.zeros(6)
            for j in range(c.shape[0]):
                Mj = (M[j, 0, 0], M[j, 0, 1], M[j, 1, 0], M[j, 1, 1])
                parts = regression2(beta, U, s2, Mj, (b[j, 0], b[j, 1]), c[j])
                total += assemble(n[j], sum_log_w[j], np.log(det2(parts[0])) - 2.0 * log_s2, log_s2, parts[5], s2)
                partials = gradient2(parts, s2, Mj, n[j])
                for k in range(6):
                    out[k] += partials[k]
            return (np.asarray(total), np.asarray(out[0]), np.asarray(out[1]), np.asarray(out[2]),
                    np.asarray(out[3]), np.asarray(out[4]), np.asarray(out[5]))

        return regression_loglik, version
