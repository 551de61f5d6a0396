"""The few array operations the likelihood kernels need beyond elementwise arithmetic, for
the two namespaces they run on: ``numpy`` (estimation, draws after sampling; any leading
draws axis) and ``pytensor.tensor`` (the PyMC graph). ``xp`` is the module itself; these
helpers dispatch on it, so importing this module loads neither pytensor nor scipy."""

from __future__ import annotations

import numpy as np


def is_numpy(xp) -> bool:
    return xp is np


def segsum(xp, values, index, size):
    """Sum the last axis of ``values`` by ``index`` into ``size`` bins (numpy: any leading
    axes, through one sparse incidence product, 1-D by ``bincount``; pytensor: 1-D, into a
    constant array of zeros: ``pt.zeros`` would be an Alloc, whose numba kernel alone takes
    2.5 s to compile on a machine's first fit)."""
    if not is_numpy(xp):
        return xp.inc_subtensor(xp.as_tensor(np.zeros(size))[index], values)
    values = np.asarray(values, dtype=float)
    index = np.asarray(index)
    if values.ndim == 1:
        return np.bincount(index, weights=values, minlength=size)
    from scipy import sparse

    incidence = sparse.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))), shape=(size, len(index)))
    flat = values.reshape(-1, values.shape[-1])
    return np.asarray((incidence @ flat.T).T).reshape(*values.shape[:-1], size)


def take(values, index):
    """values[..., index]: a parent's value for each child node."""
    return values[..., index]


def cholesky(xp, a):
    return np.linalg.cholesky(a) if is_numpy(xp) else xp.linalg.cholesky(a)


def solve_lower(xp, L, b):
    """L^-1 b for a lower-triangular L."""
    if is_numpy(xp):
        from scipy.linalg import solve_triangular

        return solve_triangular(L, b, lower=True)
    return xp.linalg.solve_triangular(L, b, lower=True)


def solve_upper(xp, U, b):
    """U^-1 b for an upper-triangular U."""
    if is_numpy(xp):
        from scipy.linalg import solve_triangular

        return solve_triangular(U, b, lower=False)
    return xp.linalg.solve_triangular(U, b, lower=False)


def solve(xp, a, b):
    """a^-1 b, batched over leading axes of ``a``."""
    return np.linalg.solve(a, b) if is_numpy(xp) else xp.linalg.solve(a, b)


def det(xp, a):
    """Determinant, batched over leading axes."""
    return np.linalg.det(a) if is_numpy(xp) else xp.linalg.det(a)


def gammaln(xp, x):
    if is_numpy(xp):
        from scipy.special import gammaln as lgamma

        return lgamma(x)
    return xp.gammaln(x)
