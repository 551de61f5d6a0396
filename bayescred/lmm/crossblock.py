"""The off-diagonal block A₁₂ = Z₁'WZ₂ of a crossed or nested design, and the two products
of it that the profiled criterion and its gradient need (``fit._solve``, ``fit._gradient``;
docs/formulas.md §8):

    H = A₂₂ − Σ_j A₁₂,ⱼ' P_j A₁₂,ⱼ          (q₂ × q₂; the Schur complement is
                                            S = Λ₂'HΛ₂ + I with P_j = T₁M₁₁,ⱼ⁻¹T₁')
    Z_j = F_j S⁻¹ F_j',  F = A₁₂Λ₂          (k₁ × k₁ per level j of the largest factor)

where A₁₂,ⱼ holds the k₁ rows of level j. ``DenseCross`` holds A₁₂ as a dense (J₁, k₁, q₂)
array and uses BLAS; ``SparseCross`` holds only the columns each level touches and sums over
those (numba kernels): H then costs Σ_j n_j² and Z Σ_j n_j² k₁² for n_j nonzero columns of
level j, instead of J₁k₁q₂² -- on lme4's InstEval (2,972 students, 1,128 lecturers, about 25
lecturers a student) 2.5 million products instead of 3.8 billion.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp


class DenseCross:
    """A₁₂ as a dense (J₁, k₁, q₂) array (small designs: BLAS beats index arithmetic)."""

    def __init__(self, A12: np.ndarray, J1: int, k1: int, lam2_right):
        self.matrix = np.ascontiguousarray(A12)  # for A₁₂v and A₁₂'v
        self.blocks = self.matrix.reshape(J1, k1, -1)
        self._lam2_right = lam2_right

    def schur_rest(self, A22, P) -> np.ndarray:
        """H = A₂₂ − Σ_j A₁₂,ⱼ'P_jA₁₂,ⱼ for (J₁, k₁, k₁) blocks P."""
        V = np.einsum("jab,jbr->jar", P, self.blocks).reshape(self.matrix.shape)
        return A22 - self.matrix.T @ V

    def level_quadratic(self, Ts, Si) -> np.ndarray:
        """Z_j = F_j S⁻¹F_j' (F = A₁₂Λ₂) for every level j, as (J₁, k₁, k₁)."""
        F = self._lam2_right(self.matrix, Ts)
        J, k = self.blocks.shape[:2]
        return np.einsum("jar,jbr->jab", F.reshape(J, k, -1), (F @ Si).reshape(J, k, -1))


class SparseCross:
    """A₁₂ on its nonzero columns per level of the largest factor.

    Level j's columns (sorted, closed under the k-column blocks of Λ₂ so that F = A₁₂Λ₂ has
    the same pattern) are ``cols[ptr[j]:ptr[j+1]]``; ``values[n, a]`` is A₁₂ at row (j, a),
    column ``cols[n]``. Λ₂ acts on these values as a sparse ``(nnz, nnz)`` matrix whose
    entries are read from the terms' factors T_i (``_mix_index``).
    """

    def __init__(self, A12: sp.csr_matrix, J1: int, k1: int, rest: dict[int, tuple[int, int, int]]):
        """``rest``: term index -> (column offset, levels, k) of each remaining term, in column
        order (the terms whose factors ``Ts[i]`` make up Λ₂)."""
        self._terms = list(rest)
        self.matrix = A12
        q2 = A12.shape[1]
        term_of, block_start = np.empty(q2, np.int64), np.empty(q2, np.int64)
        for i, (o, n, k) in enumerate(rest.values()):
            term_of[o : o + n * k] = i
            block_start[o : o + n * k] = o + k * np.arange(n).repeat(k)
        term_k = np.array([k for _, _, k in rest.values()])
        coo = A12.tocoo()
        level = coo.row // k1
        # every (level, Λ₂ block) pair touched, expanded to all of the block's k columns
        lev, start = np.divmod(np.unique(level.astype(np.int64) * q2 + block_start[coo.col]), q2)
        size = term_k[term_of[start]]
        position = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)  # e in its block
        self.level = lev.repeat(size)
        self.cols = start.repeat(size) + position
        self.ptr = np.searchsorted(self.level, np.arange(J1 + 1))
        self.values = np.zeros((len(self.cols), k1))
        where = np.searchsorted(self.level * q2 + self.cols, level.astype(np.int64) * q2 + coo.col)
        self.values[where, coo.row % k1] = coo.data
        # Λ₂ on the values: entry (n0 + e', n0 + e) is T_i[e, e'] for a block starting at n0,
        # read from the terms' factors flattened one after another
        k = term_k[term_of[self.cols]]
        e = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        flat_start = np.concatenate([[0], np.cumsum(term_k**2)[:-1]])[term_of[self.cols]]
        self._mix_rows = np.repeat(np.arange(len(self.cols)), k)
        self._mix_cols = np.repeat(np.arange(len(self.cols)) - position, k) + e
        self._mix_index = np.repeat(flat_start + position, k) + e * np.repeat(k, k)

    def lam2_right(self, Ts) -> np.ndarray:
        """A₁₂Λ₂ on the pattern, as (nnz, k₁) values."""
        flat = np.concatenate([np.asarray(Ts[i], float).ravel() for i in self._terms])
        n = len(self.cols)
        mix = sp.csr_matrix((flat[self._mix_index], (self._mix_rows, self._mix_cols)), shape=(n, n))
        return mix @ self.values

    def schur_rest(self, A22, P) -> np.ndarray:
        """H = A₂₂ − Σ_j A₁₂,ⱼ'P_jA₁₂,ⱼ, summed over each level's columns."""
        V = np.einsum("nab,nb->na", -P[self.level], self.values)
        out = np.array(A22, order="C")
        kernels = _kernels()
        kernels.level_gram(self.ptr, self.cols, self.values, V, out)
        kernels.mirror_lower(out)
        return out

    def level_quadratic(self, Ts, Si) -> np.ndarray:
        """Z_j = F_j S⁻¹F_j' (F = A₁₂Λ₂) for every level j, summed over its columns."""
        F = np.ascontiguousarray(self.lam2_right(Ts))
        out = np.zeros((len(self.ptr) - 1, F.shape[1], F.shape[1]))
        # rows of a C-ordered matrix are contiguous; Si is symmetric, so Si' serves as well
        _kernels().level_quadratic(self.ptr, self.cols, F, Si if Si.flags.c_contiguous else Si.T, out)
        return out


MIRROR_MIN = 300  # from this order on S⁻¹'s upper triangle is copied by numba, not numpy


def symmetric_inverse(c) -> np.ndarray:
    """S⁻¹ in full from the lower Cholesky factor c of S (LAPACK's potri fills one triangle),
    written over c."""
    Si = sla.lapack.dpotri(c, lower=True, overwrite_c=True)[0]
    if len(Si) >= MIRROR_MIN:
        _kernels().mirror_lower(Si)
        return Si
    upper = _upper_triangle(len(Si))
    Si[upper] = Si.T[upper]
    return Si


@functools.lru_cache(maxsize=8)
def _upper_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strict upper triangle of an n × n matrix (n < MIRROR_MIN)."""
    return np.triu_indices(n, 1)


@functools.cache
def _kernels():
    """The numba kernels, compiled on first use (and cached on disk by numba)."""
    from types import SimpleNamespace

    import numba

    @numba.njit(cache=True, nogil=True)
    def level_gram(ptr, cols, U, V, out):  # pragma: no cover - compiled
        """out += Σ_j U_j'V_j over each level's columns, lower triangle (U_j'V_j symmetric)."""
        k = U.shape[1]
        for j in range(len(ptr) - 1):
            for n in range(ptr[j], ptr[j + 1]):
                row = out[cols[n]]
                for m in range(ptr[j], n + 1):
                    s = 0.0
                    for a in range(k):
                        s += U[n, a] * V[m, a]
                    row[cols[m]] += s

    @numba.njit(cache=True, nogil=True)
    def mirror_lower(a):  # pragma: no cover - compiled
        """Copy the lower triangle of the square matrix a onto its upper one, in place."""
        n = a.shape[0]
        block = 64
        for i0 in range(0, n, block):
            for j0 in range(0, i0 + 1, block):
                for i in range(i0, min(i0 + block, n)):
                    for j in range(j0, min(j0 + block, i)):
                        a[j, i] = a[i, j]

    @numba.njit(cache=True, nogil=True)
    def level_quadratic(ptr, cols, F, Si, out):  # pragma: no cover - compiled
        """out[j] = F_j Si F_j' over each level's columns (Si symmetric: each pair of columns
        read once, from the row of the later one)."""
        k = F.shape[1]
        acc = np.empty((k, k))
        for j in range(len(ptr) - 1):
            acc[:] = 0.0
            for n in range(ptr[j], ptr[j + 1]):
                row = Si[cols[n]]
                for m in range(ptr[j], n):
                    s = row[cols[m]]
                    for a in range(k):
                        for b in range(k):
                            acc[a, b] += s * (F[n, a] * F[m, b] + F[m, a] * F[n, b])
                s = row[cols[n]]
                for a in range(k):
                    for b in range(k):
                        acc[a, b] += s * F[n, a] * F[n, b]
            out[j] = acc

    return SimpleNamespace(level_gram=level_gram, mirror_lower=mirror_lower, level_quadratic=level_quadratic)
