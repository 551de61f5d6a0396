"""q×q matrices of a mixed model in the block structure of its sparse Cholesky factor.

The random effects split as in ``fit.Design``: block 1 (the grouping factor with the most
levels, J₁ levels × k₁ effects, eliminated first) and the q₂ remaining effects. Every
matrix the uncertainty measures need (Z'WZ, Λ, M⁻¹, G, H = Z'V⁻¹Z, their products) is

    X = [ bd(D) + L R'   X₁₂ ]      bd(D): J₁ diagonal k₁×k₁ blocks,
        [ X₂₁            X₂₂ ]      L, R: q₁×r (r ≤ a few q₂), X₁₂, X₂₁, X₂₂ dense,

because the only coupling between two levels of block 1 runs through the q₂ other
effects (rank ≤ q₂ per product). M⁻¹ is of this form by the Schur complement
S = M₂₂ − M₂₁M₁₁⁻¹M₁₂ (the Takahashi / selected-inversion identity for a two-block
factor). Memory and time are linear in J₁ (for fixed q₂), where the dense q×q algebra
was quadratic/cubic; with q₂ = 0 (one grouping factor) the low-rank part is empty and
everything is per-level blocks.
"""

from __future__ import annotations

import numpy as np


def _bd_mul(D, V):
    """bd(D) @ V for V of shape (q1, m)."""
    J, k, _ = D.shape
    if k == 1:
        return D[:, 0, 0, None] * V
    return np.einsum("jab,jbm->jam", D, V.reshape(J, k, -1)).reshape(V.shape)


def _mm(a, b):
    """Product of two optional dense blocks (None = zero)."""
    return None if a is None or b is None else a @ b


def _add(*terms):
    out = None
    for t in terms:
        if t is not None:
            out = t if out is None else out + t
    return out


class BlockMatrix:
    """X = [[bd(D) + L R', X12], [X21, X22]] (docstring of the module); None = zero."""

    __slots__ = ("D", "L", "R", "X12", "X21", "X22")
    __array_ufunc__ = None  # numpy scalars defer to __rmul__

    def __init__(self, D, L=None, R=None, X12=None, X21=None, X22=None):
        self.D, self.X12, self.X21, self.X22 = D, X12, X21, X22
        q1 = D.shape[0] * D.shape[1]
        self.L = np.zeros((q1, 0)) if L is None else L
        self.R = np.zeros((q1, 0)) if R is None else R

    # -- shape
    @property
    def q1(self) -> int:
        return self.D.shape[0] * self.D.shape[1]

    @property
    def q2(self) -> int:
        for b in (self.X22, self.X12, self.X21):
            if b is not None:
                return b.shape[-1] if b is self.X12 else b.shape[0]
        return 0

    @classmethod
    def identity(cls, J, k, q2):
        return cls(np.broadcast_to(np.eye(k), (J, k, k)).copy(), X22=np.eye(q2) if q2 else None)

    # -- algebra
    @property
    def T(self) -> "BlockMatrix":
        t = lambda b: None if b is None else b.T  # noqa: E731
        return BlockMatrix(np.swapaxes(self.D, 1, 2), self.R, self.L, t(self.X21), t(self.X12), t(self.X22))

    def __mul__(self, c: float) -> "BlockMatrix":
        s = lambda b: None if b is None else c * b  # noqa: E731
        return BlockMatrix(c * self.D, c * self.L, self.R, s(self.X12), s(self.X21), s(self.X22))

    __rmul__ = __mul__

    def __truediv__(self, c: float) -> "BlockMatrix":
        return self * (1.0 / c)

    def __add__(self, o: "BlockMatrix") -> "BlockMatrix":
        return BlockMatrix(self.D + o.D, np.hstack([self.L, o.L]), np.hstack([self.R, o.R]),
                           _add(self.X12, o.X12), _add(self.X21, o.X21), _add(self.X22, o.X22))._compress()

    def __sub__(self, o: "BlockMatrix") -> "BlockMatrix":
        return self + o * -1.0

    def __matmul__(self, o):
        if not isinstance(o, BlockMatrix):
            return self.dot(o)
        D = np.matmul(self.D, o.D)
        # (bd Dx + Lx Rx')(bd Dy + Ly Ry') + X12 Y21: the low-rank parts collected
        Ls = [_bd_mul(self.D, o.L), self.L]
        Rs = [o.R, _bd_mul(np.swapaxes(o.D, 1, 2), self.R) + o.R @ (o.L.T @ self.R)]
        if self.X12 is not None and o.X21 is not None:
            Ls.append(self.X12)
            Rs.append(o.X21.T)
        X12 = _add(None if o.X12 is None else _bd_mul(self.D, o.X12) + self.L @ (self.R.T @ o.X12),
                   _mm(self.X12, o.X22))
        X21 = _add(None if self.X21 is None else _bd_mul(np.swapaxes(o.D, 1, 2), self.X21.T).T
                   + (self.X21 @ o.L) @ o.R.T, _mm(self.X22, o.X21))
        X22 = _add(_mm(self.X21, o.X12), _mm(self.X22, o.X22))
        return BlockMatrix(D, np.hstack(Ls), np.hstack(Rs), X12, X21, X22)._compress()

    def dot(self, V: np.ndarray) -> np.ndarray:
        """X @ V for a dense V of shape (q, m) (or (q,))."""
        V2 = V.reshape(V.shape[0], -1)
        q1 = self.q1
        v1, v2 = V2[:q1], V2[q1:]
        top = _bd_mul(self.D, v1) + self.L @ (self.R.T @ v1)
        if self.X12 is not None:
            top = top + self.X12 @ v2
        bottom = np.zeros_like(v2)
        if self.X21 is not None:
            bottom = bottom + self.X21 @ v1
        if self.X22 is not None:
            bottom = bottom + self.X22 @ v2
        return np.vstack([top, bottom]).reshape(V.shape)

    def _compress(self, rtol: float = 1e-15) -> "BlockMatrix":
        """Re-express L R' with the fewest columns (QR of both sides, SVD of the core);
        as a dense q1×q1 block once that is smaller."""
        r, q1 = self.L.shape[1], self.q1
        if r == 0:
            return self
        if r >= q1:
            self.L, self.R = self.L @ self.R.T, np.eye(q1)
            return self
        if r <= max(3 * self.q2, 8):  # ranks add up in products; QR only when it pays
            return self
        Ql, Rl = np.linalg.qr(self.L)
        Qr, Rr = np.linalg.qr(self.R)
        U, s, Vt = np.linalg.svd(Rl @ Rr.T)
        keep = s > rtol * r * max(s[0], 1e-300) if s.size else s.astype(bool)
        self.L = Ql @ (U[:, keep] * s[keep])
        self.R = Qr @ Vt[keep].T
        return self

    def inv(self) -> "BlockMatrix":
        """Inverse by the Schur complement of block 1 (needs L R' = 0, as M = Λ'AΛ + I)."""
        if self.L.shape[1]:
            raise ValueError("inverse of a block matrix with a low-rank part")
        Di = np.linalg.inv(self.D)
        if not self.q2:
            return BlockMatrix(Di)
        Y = _bd_mul(Di, self.X12)  # M₁₁⁻¹M₁₂
        Yt = _bd_mul(np.swapaxes(Di, 1, 2), self.X21.T).T  # M₂₁M₁₁⁻¹
        Si = np.linalg.inv(self.X22 - self.X21 @ Y)
        return BlockMatrix(Di, Y @ Si, Yt.T, -Y @ Si, -Si @ Yt, Si)

    # -- reductions
    def diag_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """(J₁, k₁, k₁) diagonal blocks of block 1 and the dense q₂×q₂ X₂₂."""
        J, k, _ = self.D.shape
        d1 = self.D + np.einsum("jar,jbr->jab", self.L.reshape(J, k, -1), self.R.reshape(J, k, -1))
        return d1, (np.zeros((0, 0)) if self.X22 is None else self.X22)

    def diagonal(self) -> np.ndarray:
        d1, d2 = self.diag_blocks()
        return np.concatenate([np.diagonal(d1, axis1=1, axis2=2).ravel(), np.diag(d2)])

    def trace_of_product(self, o: "BlockMatrix") -> float:
        """tr(X Y) without forming X Y."""
        t = float(np.einsum("jab,jba->", self.D, o.D))
        t += float(np.sum((self.R.T @ _bd_mul(o.D, self.L)).diagonal()))
        t += float(np.sum((o.R.T @ _bd_mul(self.D, o.L)).diagonal()))
        t += float(np.sum((self.R.T @ o.L) * (o.R.T @ self.L).T))
        for a, b in ((self.X12, o.X21), (self.X21, o.X12), (self.X22, o.X22)):
            if a is not None and b is not None:
                t += float(np.sum(a * b.T))
        return t

    def diagonal_of_product(self, o: "BlockMatrix") -> np.ndarray:
        """diag(X Y) without forming X Y (cost q₁r² + q₁q₂ + q₂²)."""
        J, k, _ = self.D.shape
        d1 = np.einsum("jab,jba->ja", self.D, o.D).ravel()
        d1 += np.sum(_bd_mul(self.D, o.L) * o.R, axis=1)
        d1 += np.sum(self.L * (_bd_mul(np.swapaxes(o.D, 1, 2), self.R) + o.R @ (o.L.T @ self.R)), axis=1)
        if self.X12 is not None and o.X21 is not None:
            d1 += np.sum(self.X12 * o.X21.T, axis=1)
        d2 = np.zeros(self.q2)
        if self.X21 is not None and o.X12 is not None:
            d2 += np.sum(self.X21 * o.X12.T, axis=1)
        if self.X22 is not None and o.X22 is not None:
            d2 += np.sum(self.X22 * o.X22.T, axis=1)
        return np.concatenate([d1, d2])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """The dense rows ``idx`` of ``X`` (cost len(idx)·q₁·r)."""
        J, k, _ = self.D.shape
        q1, q2 = self.q1, self.q2
        out = np.zeros((len(idx), q1 + q2))
        for n, i in enumerate(idx):
            if i < q1:
                j, a = divmod(int(i), k)
                out[n, j * k : (j + 1) * k] = self.D[j, a]
                out[n, :q1] += self.R @ self.L[i]
                if self.X12 is not None:
                    out[n, q1:] = self.X12[i]
            else:
                if self.X21 is not None:
                    out[n, :q1] = self.X21[i - q1]
                if self.X22 is not None:
                    out[n, q1:] = self.X22[i - q1]
        return out

    def quad(self, F: np.ndarray) -> np.ndarray:
        """F' X F for a dense F of shape (q, p)."""
        return F.T @ self.dot(F)

    def sub(self, idx: np.ndarray) -> np.ndarray:
        """The dense submatrix of ``X`` on the rows and columns ``idx`` (a few global indices)."""
        J, k, _ = self.D.shape
        q1 = self.q1
        out = np.zeros((len(idx), len(idx)))
        in1 = idx < q1
        i1, i2 = idx[in1], idx[~in1] - q1
        blk = np.ix_(np.flatnonzero(in1), np.flatnonzero(in1))
        same = (i1[:, None] // k) == (i1[None, :] // k)
        Dv = self.D[i1[:, None] // k, i1[:, None] % k, i1[None, :] % k]
        out[blk] = np.where(same, Dv, 0.0) + self.L[i1] @ self.R[i1].T
        p1, p2 = np.flatnonzero(in1), np.flatnonzero(~in1)
        if self.X12 is not None:
            out[np.ix_(p1, p2)] = self.X12[np.ix_(i1, i2)]
        if self.X21 is not None:
            out[np.ix_(p2, p1)] = self.X21[np.ix_(i2, i1)]
        if self.X22 is not None:
            out[np.ix_(p2, p2)] = self.X22[np.ix_(i2, i2)]
        return out

    def dense(self) -> np.ndarray:
        """The full q×q matrix (tests only)."""
        return self.sub(np.arange(self.q1 + self.q2))


class ProductSum:
    """Σ c · X Y for block matrices, kept unmultiplied: only its diagonal and a few of
    its entries are ever read, and forming each product would cost a rank reduction."""

    def __init__(self):
        self.terms: list[tuple[float, BlockMatrix, BlockMatrix]] = []

    def add(self, c: float, X: BlockMatrix, Y: BlockMatrix, symmetrise: bool = False) -> "ProductSum":
        """Add c·X Y (and c·(X Y)' with ``symmetrise``)."""
        self.terms.append((float(c), X, Y))
        if symmetrise:
            self.terms.append((float(c), Y.T, X.T))
        return self

    def diagonal(self) -> np.ndarray:
        return sum(c * X.diagonal_of_product(Y) for c, X, Y in self.terms)

    def sub(self, idx: np.ndarray) -> np.ndarray:
        return sum(c * (X.rows(idx) @ Y.T.rows(idx).T) for c, X, Y in self.terms)
