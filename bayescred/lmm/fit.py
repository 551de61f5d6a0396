"""Profiled REML/ML for linear mixed models (Bates, Mächler, Bolker & Walker 2015).

Model (docs/formulas.md §8): y = Xβ + Z u + offset + ε, u ~ N(0, σ²ΛΛ'), ε ~ N(0, σ² W⁻¹).
Only the relative covariance parameters θ (the lower-triangular entries of each term's
factor T, lme4's parametrisation and order) are optimised, with T_ii ≥ 0; β and σ² are
profiled out:

    M(θ) = Λ'Z'WZΛ + I,   [q_yy q_yx; q_xy Q_xx] = [y X]'W[y X] − B'M⁻¹B,  B = Λ'Z'W[y X]
    β̂ = Q_xx⁻¹ q_xy,   r² = q_yy − q_yx β̂ (+ pooled within-cell SS for aggregated input)
    d_ML   = log|M| + N[1 + log(2π r²/N)] − Σ log w
    d_REML = log|M| + log|Q_xx| + (N−p)[1 + log(2π r²/(N−p))] − Σ log w

which is lme4's deviance / REML criterion including the Σ log w term (errata E7/E8).

Structure: the random-effect columns of the grouping factor with the most levels (all
terms on that factor together) form a block-diagonal part of M, one k×k block per risk,
eliminated in closed form (cost linear in the number of risks); the remaining factors
(crossed or nested) enter through the dense Schur complement S = M22 − M21 M11⁻¹ M12.
This is a sparse Cholesky with the fill-reducing ordering "largest factor first", exact
for two crossed factors (no fill in the eliminated block); see the module docstring of
``bayescred.lmm`` for why not CHOLMOD. S = Λ₂'HΛ₂ + I with H = A₂₂ − Σ_j A₁₂,ⱼ'P_jA₁₂,ⱼ
(A = Z'WZ): on large designs the sum runs over the nonzeros of Z₁'WZ₂ (``crossblock``,
MixedModels.jl's blocked Cholesky); below ``SPARSE_CELLS`` dense products are faster. A
Schur complement of ``THREADED_ORDER`` rows or more is factored and inverted on every BLAS
thread; everything else runs on one. Where M is block diagonal in blocks BLAS handles in a
few calls (one grouping factor: J₁ blocks of k₁ × k₁; a design of several factors with at
most ``DENSE_EFFECTS`` random effects, lme4's classic fits: M as one block) the criterion
comes with its exact Hessian from a handful of batched products (``_newton_derivatives``).

Optimiser, from moment estimates (``Design.start``): on such a design Newton's method with
the exact Hessian in a trust region (``_newton``, 1 to 3 evaluations on ten of lme4's twelve
classic fits); otherwise L-BFGS-B with the analytic gradient of the criterion (``_gradient``:
three trace/pairing terms read off the same two-block factor), then a Newton polish whose
Hessian is the central difference of that gradient, computed once: a model with m θ costs
about 15 + 2m factorisations instead of the O(m²) criterion evaluations of a
finite-difference Hessian.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.optimize import minimize

from ..credibility._common import between_matrix_unbiased, between_unbiased
from ..errors import ConvergenceWarning
from ..formula import RandomTerm
from .crossblock import DenseCross, SparseCross, symmetric_inverse

LOG2PI = np.log(2 * np.pi)
SCHUR_MAX = 4000  # largest dense Schur complement (remaining random effects)
SCHUR_CELLS = 3e7  # largest dense M12 block (risks x remaining effects)
SPARSE_CELLS = 2e5  # beyond this many cells of M12 its products run sparse
THREADED_ORDER = 500  # a dense Schur complement of this order is factored on every BLAS thread
DENSE_EFFECTS = 64  # several factors and up to this many random effects: M is one block, REML Newton's


def tri_index(k: int) -> list[tuple[int, int]]:
    """Lower-triangular positions of a k×k factor in lme4's (column-major) θ order."""
    return [(i, j) for j in range(k) for i in range(j, k)]


def _start_ratio(ratio):
    """θ = √(τ̂²/σ̂²) of a moment estimate, within [0.1, 100]; 0, the bound, where τ̂² ≤ 0 (a
    variance the data do not show: Newton's method then checks the curvature there, L-BFGS-B
    whether the criterion falls inward, ``_inward``)."""
    return np.where(ratio > 0, np.sqrt(np.clip(ratio, 0.01, 1e4)), 0.0)


def relative_factors(terms, theta_index, theta) -> list[np.ndarray]:
    """Each term's lower-triangular relative factor T_i (Σ_i = σ² T_i T_i') from θ, lme4's order."""
    out = []
    for t, sl in zip(terms, theta_index):
        Ti = np.zeros((t.k, t.k))
        Ti[_tri_rows_cols(t.k)] = theta[sl]
        out.append(Ti)
    return out


@functools.cache
def _tri_rows_cols(k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tri_index` as index arrays (rows, columns)."""
    rows, cols = zip(*tri_index(k))
    return np.array(rows), np.array(cols)


class LeastSquares:
    """Weighted least squares on X by one thin SVD of √w X with its columns scaled to unit
    length: the rank check (:func:`bayescred.lmm.model._rank_check`), the centring of the
    response and the shift β₀ of :meth:`Design.set_response` share it (a bootstrap's every
    response too). The column scaling leaves the fit as it is and the singular values
    comparable across units."""

    def __init__(self, X, w):
        self.sw = np.sqrt(w)
        Xs = X * self.sw[:, None]
        self.norms = np.maximum(np.sqrt(np.einsum("ij,ij->j", Xs, Xs)), 1e-300)
        if X.shape[1]:
            self.U, self.s, Vt, info = sla.lapack.dgesdd(Xs / self.norms, full_matrices=0)
            if info != 0:
                raise np.linalg.LinAlgError(f"the SVD of the fixed-effects design failed (gesdd info {info})")
        else:
            self.U, self.s, Vt = np.zeros((len(X), 0)), np.zeros(0), np.zeros((0, 0))
        self.V = Vt.T
        # lstsq's default cut-off: directions below it are not fitted
        fitted = self.s > np.finfo(float).eps * max(X.shape) * self.s.max(initial=0.0)
        self.s_inv = np.divide(1.0, self.s, out=np.zeros_like(self.s), where=fitted)

    @property
    def full_rank(self) -> bool:
        """Whether no column is a linear combination of the others (to 1e-9 of the largest
        singular value)."""
        return not len(self.s) or bool(self.s[-1] > 1e-9 * self.s[0])

    def solve(self, y) -> np.ndarray:
        """argmin_b Σ w (y − Xb)²."""
        return (self.V @ (self.s_inv * (self.U.T @ (y * self.sw)))) / self.norms


class Design:
    """Everything about the data that stays fixed while θ moves: the cross-products.

    Weights are rescaled internally to mean 1 (estimates are invariant, docs/formulas.md §8.4:
    it keeps the relative scale θ near 1 where the optimiser starts).
    """

    def __init__(self, y, X, terms: list[RandomTerm], w, *, within_ss=0.0, within_df=0, least_squares=None):
        self.terms = terms
        self.X = X
        self.n_rows, self.p = X.shape
        self.scale = float(w.sum()) / len(w)
        self.w = w / self.scale
        self.least_squares = LeastSquares(X, self.w) if least_squares is None else least_squares  # w's scale: same fit
        self.within_df = int(within_df)
        self.N = self.n_rows + self.within_df
        if within_df:  # raw rows of unit weight: Σ log w over the N raw rows, rescaled
            self.logw_sum = -self.N * np.log(self.scale)
        else:
            self.logw_sum = float(np.log(self.w).sum())
        # term layout: θ slices, block 1 = all terms on the largest factor
        self.k = [t.k for t in terms]
        self.theta_index, self.theta_lower, start = [], [], 0
        for t in terms:
            idx = tri_index(t.k)
            self.theta_index.append(slice(start, start + len(idx)))
            self.theta_lower += [0.0 if i == j else -np.inf for i, j in idx]
            start += len(idx)
        self.n_theta = start
        g0 = terms[0].group
        self.block1 = [i for i, t in enumerate(terms) if t.group == g0]
        self.rest = [i for i, t in enumerate(terms) if t.group != g0]
        self.J1 = terms[0].n_levels
        self.k1 = sum(self.k[i] for i in self.block1)
        self.codes1 = terms[0].codes
        self.z1 = terms[0].X if len(self.block1) == 1 else np.column_stack([terms[i].X for i in self.block1])
        # columns of the remaining terms: offset + level * k + effect
        self.rest_offset, q2 = {}, 0
        for i in self.rest:
            self.rest_offset[i] = q2
            q2 += terms[i].n_levels * terms[i].k
        self.q2 = q2
        self.q = self.J1 * self.k1 + q2
        ww = self.w[:, None]
        # Dense Schur complement while it is small; beyond that a general sparse LU of M
        # (SuperLU, symmetric mode with diagonal pivots, minimum-degree ordering).
        self.sparse = bool(q2) and (q2 > SCHUR_MAX or self.J1 * self.k1 * q2 > SCHUR_CELLS)
        # a small design with several grouping factors: M is one block (one factor: J₁ blocks)
        self.dense = not self.sparse and bool(q2) and self.q <= DENSE_EFFECTS
        if self.dense:  # Z as an n × q array: A = Z'WZ and its blocks by one product
            self.Z = self._z_dense()
            self.A_dense = self.Z.T @ (self.Z * ww)
            q1 = self.J1 * self.k1
            self.A11 = self._level_blocks(self.A_dense[:q1, :q1])
            self.cross = DenseCross(self.A_dense[:q1, q1:], self.J1, self.k1, self.times_lam2)
            self.A12m = self.cross.matrix
            self.A22 = self.A_dense[q1:, q1:]
            self.set_response(y, within_ss)
            return
        self.Z2 = self._z2() if q2 else None
        self.A11 = self._per_level(self.z1, self.z1)
        if self.sparse:
            Zfull = sp.hstack([self._z1_sparse(), self.Z2]).tocsc()
            self.Zfull = Zfull
            self.A = (Zfull.T @ Zfull.multiply(ww)).tocsc()
        elif q2:
            Z1 = self._z1_sparse()
            WZ2 = self.Z2.multiply(ww).tocsc()
            A12 = (Z1.T @ WZ2).tocsr()
            # the fit's Z₁'WZ₂: on its nonzeros once dense products would cost more
            if self.J1 * self.k1 * q2 > SPARSE_CELLS:
                rest = {i: (self.rest_offset[i], terms[i].n_levels, terms[i].k) for i in self.rest}
                self.cross = SparseCross(A12, self.J1, self.k1, rest)
            else:
                self.cross = DenseCross(A12.toarray(), self.J1, self.k1, self.times_lam2)
            self.A12m = self.cross.matrix
            self.A22 = np.asarray((self.Z2.T @ WZ2).todense())
        self.set_response(y, within_ss)

    @functools.cached_property
    def newton(self) -> bool:
        """Whether REML runs Newton's method with the exact Hessian (:func:`_newton_derivatives`):
        M block diagonal in blocks of a size that BLAS handles in a few calls, one grouping
        factor (J₁ blocks of k₁ × k₁, any number of levels) or a small design (one block)."""
        return not self.sparse and (not self.q2 or self.dense)

    @functools.cached_property
    def lam_pattern(self):
        """Λ's nonzeros in one block of M (rows, columns, θ index), and Λ_k = ∂Λ/∂θ_k for each
        θ_k as (θ, 1, K, K) 0/1 arrays: the k₁ × k₁ factor T₁ of every level of the one
        grouping factor, or the whole q × q Λ of a small design (entry (a, b) of T_i on each
        level of term i, block 1 level by level, then the remaining terms at their offsets)."""
        rows, cols, which = [], [], []
        width = dict(zip(self.block1, np.cumsum([0] + [self.k[i] for i in self.block1])))
        for i, t in enumerate(self.terms):
            if not self.q2:
                base = np.array([width[i]])
            elif i in width:
                base = np.arange(self.J1) * self.k1 + width[i]
            else:
                base = self.J1 * self.k1 + self.rest_offset[i] + np.arange(t.n_levels) * t.k
            for n, (a, b) in enumerate(tri_index(t.k)):
                rows.append(base + a)
                cols.append(base + b)
                which.append(np.full(len(base), self.theta_index[i].start + n))
        rows, cols, which = np.concatenate(rows), np.concatenate(cols), np.concatenate(which)
        size = self.q if self.q2 else self.k1
        patterns = np.zeros((self.n_theta, 1, size, size))
        patterns[which, 0, rows, cols] = 1.0
        return rows, cols, which, patterns

    @property
    def blocks(self):
        """A = Z'WZ and Z'W[y X] in M's diagonal blocks: (J₁, k₁, k₁) and (J₁, k₁, 1 + p) for one
        grouping factor, (1, q, q) and (1, q, 1 + p) for a small design."""
        if not self.q2:
            return self.A11, self.B1
        return self.A_dense[None], self.B_dense[None]

    # -- construction helpers
    def _per_level(self, a, b, codes=None, levels=None):
        """Σ_rows w a_r b_s per level of a grouping factor (by default the largest, J1 levels):
        (levels, ka, kb)."""
        codes, levels = (self.codes1, self.J1) if codes is None else (codes, levels)
        out = np.empty((levels, a.shape[1], b.shape[1]))
        for r in range(a.shape[1]):
            for s in range(b.shape[1]):
                out[:, r, s] = np.bincount(codes, self.w * a[:, r] * b[:, s], minlength=levels)
        return out

    def _level_blocks(self, A):
        """The J1 diagonal k1 × k1 blocks of a q1 × q1 matrix, as (J1, k1, k1)."""
        levels = np.arange(self.J1)
        return A.reshape(self.J1, self.k1, self.J1, self.k1)[levels, :, levels, :]

    def _z_dense(self):
        """Z as a dense n × q array, its columns in q-space order (block 1 level by level, then
        the remaining terms at their offsets)."""
        Z = np.zeros((self.n_rows, self.q))
        rows, q1, start = np.arange(self.n_rows), self.J1 * self.k1, 0
        for i in self.block1:
            for e in range(self.k[i]):
                Z[rows, self.codes1 * self.k1 + start + e] = self.terms[i].X[:, e]
            start += self.k[i]
        for i in self.rest:
            t = self.terms[i]
            for e in range(t.k):
                Z[rows, q1 + self.rest_offset[i] + t.codes * t.k + e] = t.X[:, e]
        return Z

    def _z1_sparse(self):
        n, k1 = self.n_rows, self.k1
        rows = np.repeat(np.arange(n), k1)
        cols = (self.codes1[:, None] * k1 + np.arange(k1)).ravel()
        return sp.csc_matrix((self.z1.ravel(), (rows, cols)), shape=(n, self.J1 * k1))

    def _z2(self):
        rows, cols, vals = [], [], []
        for i in self.rest:
            t = self.terms[i]
            for e in range(t.k):
                rows.append(np.arange(self.n_rows))
                cols.append(self.rest_offset[i] + t.codes * t.k + e)
                vals.append(t.X[:, e])
        return sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(self.n_rows, self.q2)
        )

    def set_response(self, y, within_ss=0.0):
        """(Re)compute the response cross-products; y is shifted by a weighted LS fit so
        that r² is computed without cancellation (β̂ is shifted back)."""
        X, w = self.X, self.w
        self.beta0 = self.least_squares.solve(y)
        self.y = y - X @ self.beta0
        self.within_ss = within_ss / self.scale
        c = np.concatenate([self.y[:, None], X], axis=1)
        wc = c * w[:, None]
        self.C = c.T @ wc
        if self.dense:  # Z'W[y X] in q-space, and its two blocks
            q1 = self.J1 * self.k1
            self.B_dense = self.Z.T @ wc
            self.B1 = self.B_dense[:q1].reshape(self.J1, self.k1, -1)
            self.B2 = self.B_dense[q1:]
            return
        self.B1 = self._per_level(self.z1, c)
        self.B2 = self.Z2.T @ wc if self.q2 else None
        if self.sparse:
            self.Bfull = np.asarray(self.Zfull.T @ wc)

    # -- θ -> factors
    def T(self, theta) -> list[np.ndarray]:
        """Each term's lower-triangular relative factor T_i (Σ_i = σ² T_i T_i')."""
        return relative_factors(self.terms, self.theta_index, theta)

    def m11(self, T1) -> np.ndarray:
        """The level blocks of M = Λ'Z'WZΛ + I on the largest factor: T₁'A₁₁,ⱼT₁ + I, (J1, k1, k1)."""
        M11 = T1.T @ self.A11 @ T1
        M11 += np.eye(self.k1)
        return M11

    def T1(self, Ts) -> np.ndarray:
        if len(self.block1) == 1:
            return Ts[self.block1[0]]
        return sla.block_diag(*[Ts[i] for i in self.block1])

    def block_diagonal(self, blocks) -> sp.csr_matrix:
        """bd(blocks) for (J1, k1, k1) blocks, as a sparse q1×q1 matrix."""
        J, k = self.J1, self.k1
        if k == 1:
            return sp.diags_array(np.broadcast_to(blocks, (J, 1, 1)).ravel(), format="csr")
        rows = np.repeat(np.arange(J * k), k)
        cols = (np.repeat(np.arange(J) * k, k * k) + np.tile(np.arange(k), J * k))
        return sp.csr_matrix((np.broadcast_to(blocks, (J, k, k)).ravel(), (rows, cols)), shape=(J * k, J * k))

    def bd_mul(self, blocks, X):
        """bd(blocks) X for (J1, k1, k1) blocks (or one k1 × k1 block for every level) and X of
        shape (q1, m), dense or sparse."""
        if sp.issparse(X):
            return (self.block_diagonal(blocks) @ X).tocsr()
        return (blocks @ X.reshape(self.J1, self.k1, -1)).reshape(X.shape)

    @functools.cached_property
    def _lam2_pattern(self):
        """CSR indices and row pointers of Λ₂ = bd(I ⊗ T_i): row o + l·k + a holds the k columns
        o + l·k + b of its level's block (full k × k blocks; the zeros above T_i's diagonal stay)."""
        indices, lengths = [], []
        for i in self.rest:
            t, o = self.terms[i], self.rest_offset[i]
            start = o + t.k * np.arange(t.n_levels)
            indices.append((start[:, None, None] + np.zeros((1, t.k, 1), int) + np.arange(t.k)).ravel())
            lengths.append(np.full(t.n_levels * t.k, t.k))
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
        return np.concatenate(indices), indptr

    def Lam2(self, Ts) -> sp.csr_matrix:
        """Λ₂ of the remaining terms as a sparse matrix, on a pattern built once per design."""
        indices, indptr = self._lam2_pattern
        data = np.concatenate([np.tile(Ts[i].ravel(), self.terms[i].n_levels) for i in self.rest])
        return sp.csr_matrix((data, indices, indptr), shape=(self.q2, self.q2))

    def times_lam2(self, X, Ts):
        """XΛ₂ for dense X of shape (m, q2), term by term."""
        return self.lam2_t(Ts, np.ascontiguousarray(X.T)).T

    def lam2_t(self, Ts, B):
        """Λ₂'B for B of shape (q2, m), term by term: (l, k, m) blocks times T_i'."""
        return self.lam2(Ts, B, transpose=True)

    def lam2(self, Ts, B, transpose: bool = False):
        """Λ₂B (Λ₂'B with ``transpose``) for B of shape (q2, m), term by term: (l, k, m)
        blocks times T_i (or T_i')."""
        subscripts = "ba,lbm->lam" if transpose else "ab,lbm->lam"
        out = np.empty_like(B)
        for i in self.rest:
            t, o = self.terms[i], self.rest_offset[i]
            seg = B[o : o + t.n_levels * t.k]
            if t.k == 1:
                out[o : o + t.n_levels] = Ts[i][0, 0] * seg
            else:
                blk = seg.reshape(t.n_levels, t.k, -1)
                out[o : o + t.n_levels * t.k] = np.einsum(subscripts, Ts[i], blk).reshape(seg.shape)
        return out

    def lam2_diagonal(self, Ts) -> np.ndarray | None:
        """Λ₂'s diagonal when every remaining term is scalar (Λ₂ diagonal), else None."""
        if any(self.k[i] > 1 for i in self.rest):
            return None
        return np.concatenate([np.full(self.terms[i].n_levels, Ts[i][0, 0]) for i in self.rest])

    def lam2_both(self, Ts, H):
        """Λ₂'HΛ₂ for symmetric H (q2 × q2): one scaling of rows and columns when Λ₂ is
        diagonal."""
        t = self.lam2_diagonal(Ts)
        if t is None:
            return self.lam2_t(Ts, self.lam2_t(Ts, H).T)
        out = np.multiply(H, t[:, None])
        out *= t
        return out

    def start(self) -> np.ndarray:
        """The optimiser's start: each term at a moment estimate on its own levels, of the
        response less its least-squares fit; lme4's θ = I where there is none. An intercept
        term (1 | g) starts at the Bühlmann–Straub estimate θ = √(τ̂²/σ̂²) (docs/formulas.md
        §2), within [0.1, 100], where a small design with crossed or nested factors takes σ̂²
        from the fit with every random effect fixed (:meth:`_residual_variance`; the one-way
        within variance would count the other factors as noise), and a design of intercept
        terms only takes them all from Henderson's method I (:meth:`_intercepts_start`, which
        also counts a nested factor in the means above it); any other term at Halliwell's
        estimate of the between matrix from each level's own weighted least-squares fit
        (:meth:`_regression_start`). The
        optimum is the same; the path to it is shorter (InstEval: 16 -> 13 and 31 -> 18
        gradient evaluations; sleepstudy's (Days | Subject) 27 -> 7, Machines' (Machine |
        Worker) 40 -> 13; Newton evaluations on Penicillin 10 -> 1, Pastes 5 -> 1)."""
        theta = np.array([1.0 if lo == 0 else 0.0 for lo in self.theta_lower])
        if self.dense and all(t.k == 1 and np.all(t.X == 1.0) for t in self.terms):
            ratios = self._intercepts_start()
            if ratios is not None:
                return _start_ratio(ratios)
        residual = self._residual_variance() if self.q2 else None
        for i, (t, sl) in enumerate(zip(self.terms, self.theta_index)):
            if t.k > 1 or not np.all(t.X == 1.0):
                start = self._regression_start(i)
                if start is not None:
                    theta[sl] = start
                continue
            df = self.n_rows - t.n_levels
            if df <= 0:
                continue
            weight = np.bincount(t.codes, self.w, t.n_levels)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.bincount(t.codes, self.w * self.y, t.n_levels) / weight
                within = float(self.w @ (self.y - mean[t.codes]) ** 2) / df if residual is None else residual
            if within > 0 and np.isfinite(within):  # else nothing to start from: θ = 1
                theta[sl] = _start_ratio(between_unbiased(mean, weight, within) / within)
        return theta

    def _residual_variance(self) -> float | None:
        """σ̂² of the least-squares fit of the response on X and every random-effect column
        as fixed (unbiased for σ² whatever the random effects); None beyond small designs or
        without residual degrees of freedom."""
        if not self.dense:
            return None
        sw = np.sqrt(self.w)[:, None]
        XZ = np.hstack([self.X, self.Z])
        coef, _, rank, _ = np.linalg.lstsq(XZ * sw, self.y * sw[:, 0], rcond=None)
        rss = float(np.sum((self.y - XZ @ coef) ** 2 * self.w)) + self.within_ss
        return rss / (self.N - rank) if self.N > rank and rss > 0 else None

    def _intercepts_start(self) -> np.ndarray | None:
        """τ̂²/σ̂² of every term of a small design made of intercept terms (1 | g) on two or
        more factors, crossed or nested: Henderson's method I on the least-squares residual
        r = (I − H)y (docs/formulas.md §8.4). With K = Z'W(I − H)Z and d_l the weight of level l,
        the quadratic forms r'WZ_iD_i⁻¹Z_i'Wr (one per term) and r'Wr have expectations
        Σ_j τ_j² Σ_(l∈i, c∈j) K_lc²/d_l + σ² Σ_(l∈i) K_ll/d_l and Σ_j τ_j² tr K_jj + σ²(N − p):
        m + 1 equations for τ² and σ², all read off the design's cross-products. On balanced
        crossed and nested designs this is the ANOVA estimator, REML's optimum when positive.
        None when the equations do not determine them or σ̂² is not positive."""
        Bx, d = self.B_dense[:, 1:], self.A_dense.diagonal()
        K = self.A_dense - Bx @ _cho_solve(_cholesky(self.C[1:, 1:]), Bx.T) if self.p else self.A_dense
        m, q1 = len(self.terms), self.J1 * self.k1
        owner = np.empty(self.q, np.int64)  # which term owns a column of Z (one per level)
        owner[:q1] = np.tile(self.block1, self.J1)
        for i in self.rest:
            owner[q1 + self.rest_offset[i] : q1 + self.rest_offset[i] + self.terms[i].n_levels] = i
        terms = np.eye(m)[owner]  # (q, m)
        kk = K.diagonal()
        equations = np.empty((m + 1, m + 1))
        equations[:-1, :-1] = terms.T @ (K**2 / d[:, None]) @ terms
        equations[:-1, -1] = terms.T @ (kk / d)
        equations[-1, :-1] = terms.T @ kk
        equations[-1, -1] = self.N - self.p
        observed = np.empty(m + 1)
        observed[:-1] = terms.T @ (self.B_dense[:, 0] ** 2 / d)
        observed[-1] = self.C[0, 0] + self.within_ss
        try:
            *tau2, sigma2 = _inverse(equations) @ observed
        except np.linalg.LinAlgError:
            return None
        return np.array(tau2) / sigma2 if sigma2 > 0 and np.all(np.isfinite(tau2)) else None

    def _regression_start(self, i: int) -> np.ndarray | None:
        """θ of the term ``i`` from the regression-credibility moments (docs/formulas.md §4): each
        level's weighted least-squares coefficients B_j of the response less its fit on X on
        the term's columns, σ̂² pooled from their residuals, Û = Halliwell's unbiased between
        matrix (:func:`between_matrix_unbiased`), T = chol(Û/σ̂²) with its eigenvalues kept
        above 1e-4 of the largest (inside the bounds). Levels with no more rows than columns,
        or whose columns are collinear within the level, are left out; None (θ = I) when
        fewer than k + 1 levels are left, or σ̂² or Û is 0."""
        t = self.terms[i]
        k = t.k
        if self.block1 == [i]:  # the term is block 1: its cross-products per level are the design's
            cross, xWy = self.A11, self.B1[:, :, 0]
        else:
            products = self._per_level(t.X, np.column_stack([t.X, self.y]), t.codes, t.n_levels)
            cross, xWy = products[:, :, :k], products[:, :, k]
        rows = np.bincount(t.codes, minlength=t.n_levels)
        if k == 2:  # (intercept and slope) the eigenvalues of 2 × 2 blocks in closed form
            half = 0.5 * (cross[:, 0, 0] + cross[:, 1, 1])
            radius = np.hypot(0.5 * (cross[:, 0, 0] - cross[:, 1, 1]), cross[:, 1, 0])
            lowest, highest = half - radius, half + radius
        else:
            eig = np.linalg.eigvalsh(cross)
            lowest, highest = eig[:, 0], eig[:, -1]
        kept = (rows > k) & (lowest > 1e-10 * highest)
        if kept.sum() <= k:
            return None
        yWy = np.bincount(t.codes, self.w * self.y**2, t.n_levels)
        if not kept.all():
            cross, xWy, yWy, rows = cross[kept], xWy[kept], yWy[kept], rows[kept]
        Minv = _block_inverse(cross)[0]
        B = (Minv @ xWy[..., None])[..., 0]
        rss = yWy - np.einsum("ja,ja->j", B, xWy)
        within = float(rss.sum()) / float((rows - k).sum())
        if not (within > 0 and np.isfinite(within)):
            return None
        values, vectors = _eigh(between_matrix_unbiased(B, Minv, within, project=False) / within)
        if not values[-1] > 0:
            return None
        L = _cholesky((vectors * np.maximum(values, 1e-4 * values[-1])) @ vectors.T)
        return L[_tri_rows_cols(k)]

    def fits_exactly(self) -> bool:
        """Whether the columns of X and Z fit the response exactly (weighted least squares
        without the penalty: the limit θ → ∞), to the last digits; never with a pooled
        within-cell sum of squares."""
        if self.within_ss > 0:
            return False
        if self.dense:
            Z = sp.csr_matrix(self.Z)
        else:
            Z = self._z1_sparse() if not self.q2 else sp.hstack([self._z1_sparse(), self.Z2])
        sw = np.sqrt(self.w)
        A = sp.diags_array(sw) @ sp.hstack([sp.csr_matrix(self.X), Z]).tocsr()
        b = sw * self.y
        if A.shape[0] * A.shape[1] <= 1e7:
            coef = np.linalg.lstsq(A.toarray(), b, rcond=None)[0]
        else:
            from scipy.sparse.linalg import lsqr

            coef = lsqr(A, b, atol=1e-16, btol=1e-16, iter_lim=10 * A.shape[1])[0]
        return bool(np.linalg.norm(b - A @ coef) <= 64 * np.finfo(float).eps * np.sqrt(len(b)) * np.linalg.norm(b))

    def per_term(self, v1, v2) -> list[np.ndarray]:
        """Split q-space arrays (block 1 as (J1, k1, ...), the rest as (q2, ...)) into one
        (n_levels, k_i, ...) array per term, in lme4's term order."""
        out, start = [None] * len(self.terms), 0
        for i in self.block1:
            out[i] = v1[:, start : start + self.k[i]]
            start += self.k[i]
        for i in self.rest:
            t, o = self.terms[i], self.rest_offset[i]
            out[i] = v2[o : o + t.n_levels * t.k].reshape((t.n_levels, t.k) + v2.shape[1:])
        return out

    def deviance(self, theta, reml: bool) -> float:
        if self.newton:
            return _newton_derivatives(self, theta, reml)
        return self.solve(theta, reml).deviance

    def deviance_and_gradient(self, theta, reml: bool):
        """The criterion and its analytic gradient in θ (None on the sparse-LU path)."""
        if self.newton:
            return _newton_derivatives(self, theta, reml, order=1)[:2]
        sol = self.solve(theta, reml, gradient=True)
        return sol.deviance, sol.gradient


@dataclass
class Solution:
    """The profiled solution at one θ (internal units: weights of mean 1)."""

    theta: np.ndarray
    deviance: float
    beta: np.ndarray
    r2: float
    sigma2: float  # internal σ² (per unit of rescaled weight)
    Qxx: np.ndarray
    u_spherical1: np.ndarray  # (J1, k1)  u* of block 1
    u_spherical2: np.ndarray  # (q2,)
    Ts: list
    gradient: np.ndarray | None = None  # ∂ criterion / ∂θ when asked for


def conditional_modes(d: Design, sol: Solution) -> list[np.ndarray]:
    """b = Λu* per term, as (n_levels, k) arrays in lme4's term order."""
    out = [None] * len(d.terms)
    b1 = sol.u_spherical1 @ d.T1(sol.Ts).T  # (J1, k1)
    start = 0
    for i in d.block1:
        out[i] = b1[:, start : start + d.k[i]]
        start += d.k[i]
    for i in d.rest:
        t = d.terms[i]
        o = d.rest_offset[i]
        u = sol.u_spherical2[o : o + t.n_levels * t.k].reshape(t.n_levels, t.k)
        out[i] = u @ sol.Ts[i].T
    return out


def _cholesky(a, overwrite: bool = False, clean: bool = False) -> np.ndarray:
    """The lower Cholesky factor by LAPACK's potrf, as scipy's ``cho_factor`` computes it but
    without its Python-level checks (which cost more than the factorisation at the sizes of a
    small fit's Schur complement); LinAlgError unless positive definite with a finite factor.
    ``overwrite``: factor a Fortran-ordered ``a`` in place; ``clean``: zero the upper triangle."""
    c, info = sla.lapack.dpotrf(a, lower=1, clean=int(clean), overwrite_a=overwrite)
    if info != 0 or not np.isfinite(c.diagonal()).all():
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return c


def _eigh(a, vectors: bool = True):
    """Eigenvalues (ascending) and, with ``vectors``, eigenvectors of a symmetric matrix (its
    lower triangle) by LAPACK's syevd, as numpy's ``eigh`` but without its Python-level
    checks (they cost more than the decomposition of the 3 × 3 Hessians here)."""
    w, v, info = sla.lapack.dsyevd(a, compute_v=int(vectors), lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the eigen decomposition did not converge (syevd info {info})")
    return (w, v) if vectors else w


def _inverse(a) -> np.ndarray:
    """The inverse of a small square matrix by LAPACK's LU (getrf, getri), as numpy's ``inv``
    but without its Python-level checks; LinAlgError when it is singular."""
    lu, piv, info = sla.lapack.dgetrf(a)
    if info == 0:
        inverse, info = sla.lapack.dgetri(lu, piv, overwrite_lu=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the matrix is singular (LAPACK info {info})")
    return inverse


def _cho_solve(c, b) -> np.ndarray:
    """Solve with a factor of :func:`_cholesky` (LAPACK's potrs, as scipy's ``cho_solve``)."""
    x, info = sla.lapack.dpotrs(c, b, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potrs failed (info {info})")
    return x


def _sparse_lu(d: Design, Ts):
    """log|M| and a solver for M = Λ'Z'WZΛ + I by a sparse LU with diagonal pivots."""
    from scipy.sparse.linalg import splu

    Lam = sp.block_diag([sp.kron(sp.identity(d.J1), sp.csr_matrix(d.T1(Ts))), d.Lam2(Ts)], format="csc")
    M = (Lam.T @ d.A @ Lam + sp.identity(d.A.shape[0])).tocsc()
    lu = splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return Lam, float(np.sum(np.log(np.abs(lu.U.diagonal())))), lu


def _solve(design: Design, theta, reml: bool, gradient: bool = False) -> Solution:
    d = design
    if d.dense:
        sol = _dense_solve(d, theta, reml)
        if gradient:
            sol.gradient = _newton_derivatives(d, theta, reml, order=1)[1]
        return sol
    Ts = d.T(theta)
    if d.sparse:
        Lam, logdet, lu = _sparse_lu(d, Ts)
        b = np.asarray(Lam.T @ d.Bfull)
        x = lu.solve(b)
        return _finish(d, theta, reml, Ts, logdet, b.T @ x, x[: d.J1 * d.k1].reshape(d.J1, d.k1, -1),
                       x[d.J1 * d.k1 :])
    T1 = d.T1(Ts)
    M11inv, logdet = _block_inverse(d.m11(T1))
    b1 = T1.T @ d.B1
    x1 = M11inv @ b1
    x2 = Q = H = cS = None
    if d.q2:
        # With M₁₂ = Λ₁'A₁₂Λ₂ (A₁₂ = Z₁'WZ₂) the Schur complement is
        # S = M₂₂ − M₁₂'M₁₁⁻¹M₁₂ = Λ₂'HΛ₂ + I,  H = A₂₂ − Σ_j A₁₂,ⱼ'T₁M₁₁,ⱼ⁻¹T₁'A₁₂,ⱼ,
        # summed over the nonzeros of A₁₂ on large designs (MixedModels.jl's blocked Cholesky).
        q1 = d.J1 * d.k1
        Q = M11inv @ T1.T  # M₁₁,ⱼ⁻¹T₁'
        H = d.cross.schur_rest(d.A22, T1 @ Q)
        S = d.lam2_both(Ts, H)
        S.flat[:: d.q2 + 1] += 1.0
        with _threads_for(d.q2):  # S' is S, and Fortran-ordered as LAPACK wants it: no copy
            cS = _cholesky(S.T, overwrite=True)
        logdet += 2.0 * float(np.log(cS.diagonal()).sum())
        b2 = d.lam2_t(Ts, d.B2)
        x2 = _cho_solve(cS, b2 - d.lam2_t(Ts, d.A12m.T @ d.bd_mul(T1, x1.reshape(q1, -1))))
        x1 = x1 - d.bd_mul(Q, d.A12m @ d.lam2(Ts, x2)).reshape(x1.shape)
    m = b1.shape[-1]
    gram = b1.reshape(-1, m).T @ x1.reshape(-1, m)
    if d.q2:
        gram += b2.T @ x2
    sol = _finish(d, theta, reml, Ts, logdet, gram, x1, x2)
    if gradient:
        sol.gradient = _gradient(d, sol, T1, M11inv, Q, H, cS, x1, x2, reml)
    return sol


def _block_inverse(M) -> tuple[np.ndarray, float]:
    """The inverses of symmetric positive definite blocks (J, k, k) and the sum of their
    log-determinants: M's level blocks T₁'A₁₁,ⱼT₁ + I (eigenvalues ≥ 1, so one batched inverse
    serves every solve with it), M itself as one block, or the regression start's per-level
    cross-products X_j'W_jX_j. 1 × 1 and 2 × 2 blocks in closed form, one block by its
    Cholesky factor; LinAlgError when a block is not positive definite or θ made it non-finite."""
    if M.shape[1] == 1:
        inverse, logdet = 1.0 / M, float(np.sum(np.log(M)))
    elif M.shape[1] == 2:  # (intercept and slope) the adjugate over the determinant, no LAPACK calls
        a, b, c = M[:, 0, 0], M[:, 1, 0], M[:, 1, 1]
        det = a * c - b * b
        if not (det > 0).all():  # ≥ 1 in exact arithmetic: θ so large that rounding ate it
            raise np.linalg.LinAlgError("a level block of M is not positive definite")
        inverse = np.empty_like(M)
        inverse[:, 0, 0], inverse[:, 1, 1], inverse[:, 0, 1], inverse[:, 1, 0] = c, a, -b, -b
        inverse /= det[:, None, None]
        logdet = float(np.log(det).sum())
    elif M.shape[0] == 1:  # one block (a small design of several factors): its Cholesky factor
        c = _cholesky(M[0], clean=True)
        logdet = 2.0 * float(np.log(c.diagonal()).sum())
        inverse, info = sla.lapack.dpotri(c, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"potri failed (info {info})")
        inverse = (inverse + np.tril(inverse, -1).T)[None]
    else:
        inverse, logdet = np.linalg.inv(M), float(np.sum(np.linalg.slogdet(M)[1]))
    if not np.isfinite(logdet):
        raise np.linalg.LinAlgError("a level block of M is not finite")
    return inverse, logdet


def _gradient(d: Design, sol: Solution, T1, M11inv, Q, H, cS, x1, x2, reml: bool) -> np.ndarray:
    """∂d/∂θ of the profiled criterion (Bates & DebRoy 2004, in lme4's Λ form).

    With Λ_k = ∂Λ/∂θ_k (entry (a, b) of T_i on every level of term i), A = Z'WZ,
    u* = M⁻¹Λ'Z'W(y − Xβ̂), s = Z'W(y − Xβ̂) − AΛu*, X* = M⁻¹Λ'Z'WX, K = Z'WX − AΛX*
    (= Z'Ṽ⁻¹X, Ṽ = W⁻¹ + ZΛΛ'Z'):

        ∂log|M|/∂θ_k    = 2 tr(M⁻¹Λ'AΛ_k)      (only the level-diagonal blocks of M⁻¹Λ'A)
        ∂r²/∂θ_k        = −2 s'Λ_k u*
        ∂log|Q_xx|/∂θ_k = −2 tr(Q_xx⁻¹ K'Λ_k X*)

    d_ML' = ∂log|M| + N ∂r²/r²;  d_REML' = ∂log|M| + ∂log|Q_xx| + (N − p) ∂r²/r².
    M⁻¹ enters only through the blocks the Schur elimination already holds:
    (M⁻¹)₁₁ = M₁₁⁻¹ + Y S⁻¹Y', (M⁻¹)₁₂ = −Y S⁻¹, (M⁻¹)₂₂ = S⁻¹, Y = M₁₁⁻¹M₁₂.
    """
    Ts, p = sol.Ts, d.p
    coef = np.concatenate([[1.0], -sol.beta])
    # R = [u*, X*] and E = [s, K] in q-space: block 1 as (J1, k1, 1+p), the rest (q2, 1+p)
    R1 = np.concatenate([sol.u_spherical1[..., None], x1[..., 1:]], axis=-1)
    L1 = T1 @ R1
    E1 = np.concatenate([(d.B1 @ coef)[..., None], d.B1[..., 1:]], axis=-1)
    E1 -= d.A11 @ L1
    R2 = E2 = None
    if d.q2:
        R2 = np.concatenate([sol.u_spherical2[:, None], x2[:, 1:]], axis=-1)
        L2 = d.lam2(Ts, R2)
        E1 = E1 - (d.A12m @ L2).reshape(E1.shape)
        E2 = np.concatenate([(d.B2 @ coef)[:, None], d.B2[:, 1:]], axis=-1)
        E2 = E2 - d.A12m.T @ L1.reshape(d.J1 * d.k1, -1) - d.A22 @ L2
    # weights of the r² and log|Q_xx| pairings: column 0 by dof/r², the rest by Q_xx⁻¹
    dof = d.N - p if reml else d.N
    mix = np.zeros((1 + p, 1 + p))
    mix[0, 0] = dof / sol.r2
    if reml and p:
        mix[1:, 1:] = np.linalg.inv(sol.Qxx)
    E1 = E1 @ mix
    E2 = E2 @ mix if d.q2 else None
    # level-diagonal blocks of W = M⁻¹Λ'A
    W1 = M11inv @ (T1.T @ d.A11)
    W2 = None
    if d.q2:
        with _threads_for(d.q2):
            Si = symmetric_inverse(cS)
        # W₁ += Y S⁻¹C with Y_j = Q_j F_j, C_j' = (A₁₁,ⱼT₁Q_j − I)F_j, F = A₁₂Λ₂:
        # Q_j (F_j S⁻¹F_j') (A₁₁,ⱼT₁Q_j − I)'
        R = d.A11 @ T1 @ Q
        R -= np.eye(d.k1)
        W1 = W1 + Q @ d.cross.level_quadratic(Ts, Si) @ R.transpose(0, 2, 1)
        # W₂ = S⁻¹(Λ₂'A₂₂ − Y'Λ₁'A₁₂) = S⁻¹Λ₂'H, its level-diagonal blocks only; with Λ₂
        # diagonal (t) each is Σ_r S⁻¹[r, x] t_r H[r, x] (S⁻¹, H symmetric: rows for columns)
        t = d.lam2_diagonal(Ts)
        W2 = (Si, d.lam2_t(Ts, H), None) if t is None else (Si, H, t)
    g = np.empty(d.n_theta)
    Es, Rs = d.per_term(E1, E2), d.per_term(R1, R2)
    for i, t in enumerate(d.terms):
        if i in d.block1:
            o = sum(d.k[j] for j in d.block1[: d.block1.index(i)])
            Wi = W1[:, o : o + t.k, o : o + t.k]
        else:
            o, width = d.rest_offset[i], t.n_levels * t.k
            Si, B, scale = W2
            if scale is None:
                Wi = np.einsum("rla,rlb->lab", Si[:, o : o + width].reshape(d.q2, t.n_levels, t.k),
                               B[:, o : o + width].reshape(d.q2, t.n_levels, t.k))
            else:
                rows = Si.T if Si.flags.f_contiguous else Si
                Wi = np.einsum("lr,lr,r->l", rows[o : o + width], B[o : o + width], scale)[:, None, None]
        trace = Wi.sum(axis=0)  # Σ_l W_(l,b),(l,a) read at [b, a]
        pair = np.einsum("lam,lbm->ab", Es[i], Rs[i])  # Σ_l E_(l,a)·R_(l,b)
        for n, (a, b) in enumerate(tri_index(t.k)):
            g[d.theta_index[i].start + n] = 2.0 * trace[b, a] - 2.0 * pair[a, b]
    return g


def _lambda_block(d: Design, theta) -> np.ndarray:
    """Λ's block in M's blocks (:attr:`Design.lam_pattern`), as (1, K, K)."""
    rows, cols, which, patterns = d.lam_pattern
    out = np.zeros(patterns.shape[1:])
    out[0, rows, cols] = np.asarray(theta, float)[which]
    return out


def _dense_solve(d: Design, theta, reml: bool) -> Solution:
    """:func:`_solve` of a small design: the profiled solution from one Cholesky factor of M."""
    Lam = _lambda_block(d, theta)[0]
    M = Lam.T @ d.A_dense @ Lam
    M.flat[:: d.q + 1] += 1.0
    L = _cholesky(M)
    b = Lam.T @ d.B_dense
    x = _cho_solve(L, b)
    q1 = d.J1 * d.k1
    return _finish(d, theta, reml, d.T(theta), 2.0 * float(np.log(L.diagonal()).sum()), b.T @ x,
                   x[:q1].reshape(d.J1, d.k1, -1), x[q1:])


def _newton_derivatives(d: Design, theta, reml: bool, order: int = 0):
    """The criterion, and with ``order`` 1 or 2 its gradient and Hessian in θ, where M is
    block diagonal in a few BLAS-sized blocks (:attr:`Design.newton`): a handful of batched
    products over the blocks (J₁ levels of one grouping factor, or one q × q block of a small
    design). Returns the criterion alone for ``order`` 0, else (criterion, gradient, Hessian
    or None).

    With Ṽ = W⁻¹ + ZΛΛ'Z' and Λ_k = ∂Λ/∂θ_k (docs/formulas.md §8.4, "bc.lmm's optimiser"):
    Ã = Z'Ṽ⁻¹Z = A − AΛM⁻¹Λ'A, F = Z'Ṽ⁻¹[y X], Q = [y X]'Ṽ⁻¹[y X], D_k = Λ_kΛ' + ΛΛ_k',
    D_kl = Λ_kΛ_l' + Λ_lΛ_k', and log|M| = log|Ṽ| + log|W|:

        ∂_k log|M| = tr(ÃD_k),     ∂_kl log|M| = tr(ÃD_kl) − tr(ÃD_kÃD_l)
        ∂_k Q = −F'D_kF,           ∂_kl Q = −F'D_klF + F'D_kÃD_lF + F'D_lÃD_kF

    The criterion reads Q through log|Q| and ρ = 1/(Q⁻¹)₀₀ (= r² less any pooled within SS;
    log|Q_xx| = log|Q| − log ρ): d_ML = log|M| + N log r², d_REML = log|M| + log|Q| − log ρ
    + (N − p) log r², and ∂_kρ = ρ²v'Q_kv with v = Q⁻¹e₀. Q_k and Q_kl enter the
    derivatives only through ⟨·, Ω⟩, Ω = c vv' (+ Q⁻¹ for REML): with W = Σ_j F_jΩF_j' the
    gradient is tr((Ã − W)D_k), and the Hessian needs Q_k alone, not Q_kl (the formulas are
    in docs/formulas.md §8.4). Every Λ_k is the same in each block, so the traces with a
    single Ã read the sum of its blocks."""
    Lam = _lambda_block(d, theta)
    A, B = d.blocks
    J, K, m1 = B.shape
    P = A @ Lam  # AΛ
    M = Lam.transpose(0, 2, 1) @ P
    M.reshape(J, -1)[:, :: K + 1] += 1.0  # + I, through a view of the diagonals
    Minv, logdet = _block_inverse(M)
    b = Lam.transpose(0, 2, 1) @ B
    x = Minv @ b  # [u*(β = 0), X*] = M⁻¹Λ'Z'W[y X]
    gram = b.reshape(-1, m1).T @ x.reshape(-1, m1)
    dev, _, r2, dof, _ = _profile(d, logdet, gram, reml)
    if order == 0:
        return dev
    PM = P @ Minv
    At = A - PM @ P.transpose(0, 2, 1)  # Ã
    F = B - P @ x
    Qinv = _inverse(d.C - gram)
    v = Qinv[:, 0]
    rho = 1.0 / v[0]
    # every first derivative of Q enters linearly: <Q_k, Ω>, Ω = c vv' (+ Q⁻¹ for REML)
    c = rho**2 * (dof / r2 - (1.0 / rho if reml else 0.0))
    omega = c * (v[:, None] * v)
    if reml:
        omega += Qinv
    W = F @ omega @ F.transpose(0, 2, 1)  # F_jΩF_j', block by block
    AW = At - W
    E = AW.sum(axis=0)
    m, Lk = d.n_theta, d.lam_pattern[3]
    D = Lk @ Lam.transpose(0, 2, 1)  # Λ_kΛ'
    D += D.transpose(0, 1, 3, 2)  # (θ, 1, K, K)
    grad = D.reshape(m, -1) @ E.ravel()  # tr((Ã − W)D_k)
    if order == 1:
        return dev, grad, None
    hess = 2.0 * (E @ Lk[:, 0]).reshape(m, -1) @ Lk.reshape(m, -1).T  # tr((Ã − W)D_kl)
    T = (At @ D).reshape(m, -1)  # ÃD_k, block by block
    U = ((AW - W) @ D).transpose(0, 1, 3, 2).reshape(m, -1)  # ((Ã − 2W)D_k)'
    hess -= T @ U.T  # tr(ÃD_kÃD_l) − 2 tr(ÃD_kWD_l)
    Qk = -(F.reshape(-1, m1).T @ (D @ F).reshape(m, -1, m1))  # −F'D_kF
    Qv = Qk @ v
    rho_k = rho**2 * (Qv @ v)
    scale = 2.0 * c / rho**3 - dof / r2 / r2 + (1.0 / rho**2 if reml else 0.0)  # of ρ_kρ_l
    hess += scale * (rho_k[:, None] * rho_k) - 2.0 * c * (Qv @ Qinv @ Qv.T)
    if reml:
        QiQk = (Qinv @ Qk).reshape(m, -1)
        hess -= QiQk @ (Qk @ Qinv).reshape(m, -1).T  # tr(Q⁻¹Q_kQ⁻¹Q_l)
    return dev, grad, 0.5 * (hess + hess.T)


def _profile(d: Design, logdet, gram, reml):
    """Profile β and σ² out of the Schur complement of the cross-products (module doc):
    criterion, β̂, r², its degrees of freedom and Q_xx."""
    Q = d.C - gram
    p, N = d.p, d.N
    Qxx = Q[1:, 1:]
    if p:
        cQ = _cholesky(Qxx)
        beta = _cho_solve(cQ, Q[1:, 0])
        logdet_x = 2.0 * float(np.log(cQ.diagonal()).sum())
    else:
        beta, logdet_x = np.zeros(0), 0.0
    r2 = float(Q[0, 0] - Q[0, 1:] @ beta) + d.within_ss
    r2 = max(r2, 1e-300)
    if reml:
        dof = N - p
        dev = logdet + logdet_x + dof * (1.0 + LOG2PI + np.log(r2 / dof)) - d.logw_sum
    else:
        dof = N
        dev = logdet + N * (1.0 + LOG2PI + np.log(r2 / N)) - d.logw_sum
    return float(dev), beta, r2, dof, Qxx


def _finish(d: Design, theta, reml, Ts, logdet, gram, x1, x2) -> Solution:
    """The profiled solution (:func:`_profile`) with the spherical random effects u*."""
    dev, beta, r2, dof, Qxx = _profile(d, logdet, gram, reml)
    coef = np.concatenate([[1.0], -beta])
    u1 = x1 @ coef
    u2 = x2 @ coef if x2 is not None else np.zeros(0)
    return Solution(np.asarray(theta, float), dev, beta, r2, r2 / dof, Qxx, u1, u2, Ts)


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - optional
        return None
    return ThreadpoolController()  # inspecting the loaded libraries costs ~10 ms: once


@functools.cache
def _blas_threads() -> int:
    """BLAS's own thread count, read before ``_single_thread`` first limits it."""
    controller = _blas_controller()
    return max((lib["num_threads"] for lib in controller.info()), default=1) if controller else 1


_HELD = threading.local()  # how deeply this thread is inside _single_thread


@contextlib.contextmanager
def _single_thread():
    """BLAS on one thread: the matrices here are small, and threads only contend. Nested uses
    (each solve inside the optimiser's) set the limit once: setting it costs ~20 µs, a
    fifth of a small fit's solve."""
    depth = getattr(_HELD, "depth", 0)
    controller = None if depth else _blas_controller()
    if controller is not None:
        _blas_threads()
    _HELD.depth = depth + 1
    try:
        if controller is None:
            yield
        else:
            with controller.limit(limits=1):
                yield
    finally:
        _HELD.depth = depth


def _threads_for(order: int):
    """BLAS's own thread count again, inside ``_single_thread``, around a factorisation or
    inverse of a dense matrix of at least ``THREADED_ORDER`` rows: there the threads pay
    (InstEval's 1,128 × 1,128 Schur complement: Cholesky 15.6 -> 11.9 ms, inverse from the
    factor 25.6 -> 14.8 ms on two cores). Below that, nothing changes (a context that does
    nothing: a small fit enters this twice per evaluation)."""
    controller = _blas_controller() if order >= THREADED_ORDER and getattr(_HELD, "depth", 0) else None
    return contextlib.nullcontext() if controller is None else controller.limit(limits=_blas_threads())


def _solve_one_thread(design: Design, theta, reml: bool, gradient: bool = False) -> Solution:
    with _single_thread():
        return _solve(design, theta, reml, gradient)


Design.solve = _solve_one_thread


class _Settled(Exception):
    """L-BFGS-B's line search is probing the rounding noise of the criterion at its best
    point (3 evaluations within 1e-9 of it, none lower): on lme4's Pastes it would probe
    20 times before giving up."""


def optimise(design: Design, reml: bool, theta0=None, polish: bool = True):
    """Minimise the profiled criterion over θ with T_ii ≥ 0.

    Where M is block diagonal in small blocks (:attr:`Design.newton`): Newton's method with
    the exact Hessian (:func:`_newton`), whose stopping rule is the convergence check below;
    where it sets to 0 a variance that started positive, the general path too, as a second
    opinion (the lower optimum stands); where it does not converge, the general path:
    L-BFGS-B from ``Design.start`` (moment
    estimates, lme4's θ = I where there are none; on weights rescaled to mean 1, which avoids
    the premature stop of erratum E9) with the analytic gradient (``_gradient``), then Newton
    steps on the components not held at a bound, the Hessian by central differences of that
    gradient (2 × #θ evaluations, once). On the sparse-LU path (no selected inverse) both
    derivatives are finite differences of the criterion. L-BFGS-B runs again from inside
    when it stops at T_ii = 0 with the criterion falling inward (``_inward``). A bounded
    Nelder–Mead restart gives a second opinion when the polish ends without a Newton step
    below 1e-6 and a positive definite Hessian (L-BFGS-B's own flag is not asked: in the
    rounding noise of the criterion its line search ends "abnormally" at the optimum, as on
    Pastes from the moment start). Reported problems (lme4's checks):
    the scaled gradient H⁻¹g above 1e-3, or a Hessian that is not positive definite at an
    interior optimum -> ConvergenceWarning, and the message is kept on the fit.
    """
    lower = np.array(design.theta_lower)
    start = design.start() if theta0 is None else np.asarray(theta0)
    analytic = not design.sparse

    seen = {}  # θ -> (criterion, gradient) of every gradient evaluation: the polish starts
    # where L-BFGS-B stopped (on InstEval one evaluation is 50 ms)

    def f(th):
        if th.tobytes() in seen:
            return seen[th.tobytes()][0]
        try:
            return design.deviance(th, reml)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf

    def fg(th):
        key = th.tobytes()
        if key not in seen:
            try:
                dev, g = design.deviance_and_gradient(th, reml)
            except (np.linalg.LinAlgError, FloatingPointError, ValueError):
                dev, g = np.inf, np.zeros(len(th))
            if not (np.isfinite(dev) and np.all(np.isfinite(g))):
                dev, g = np.inf, np.zeros(len(th))
            seen[key] = dev, g
        return seen[key]

    def clip(x):
        return np.where((lower == 0) & (x < 0), 0.0, x)

    def descend(x):
        best = {"dev": np.inf, "theta": x, "stalls": 0}

        def watched(th):  # fg, stopping a line search that probes the rounding noise (_Settled)
            dev, g = fg(th)
            if not dev >= best["dev"] - 1e-13 * abs(best["dev"]):  # lower (or the first: inf − inf)
                best.update(dev=dev, theta=th.copy(), stalls=0)
            elif np.max(np.abs(th - best["theta"])) <= 1e-9 * (1 + np.max(np.abs(best["theta"]))):
                best["stalls"] += 1
                if best["stalls"] == 3:
                    raise _Settled
            return dev, g

        try:
            x = minimize(watched if analytic else f, x, jac=analytic, method="L-BFGS-B", bounds=bounds,
                         options={"ftol": 1e-14, "gtol": 1e-8, "maxiter": 2000}).x
        except _Settled:
            x = best["theta"]
        return _snap_to_bounds(f, clip(x), lower)

    with _single_thread():
        newton = _newton(design, reml, start, lower) if design.newton else None
        # Newton's method may walk onto a bound from a non-convex start and stop at a local
        # optimum there: a variance it set to 0 gets the general path's second opinion
        if newton is not None and not np.any((lower == 0) & (newton <= 0) & (start > 0)):
            return newton, None
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        theta = descend(start)
        inward = _inward(f, theta, lower)
        if inward is not None:  # stopped where a variance is 0 but the criterion falls inward
            theta = descend(inward)
        if not polish:
            return (newton, None) if newton is not None and f(newton) <= f(theta) else (theta, None)
        grad = (lambda th: fg(th)[1]) if analytic else None
        theta, fval, step, hess_ok = _newton_polish(f, theta, lower, grad=grad)
        if not (hess_ok and step < 1e-6):  # the polish checks convergence, whatever L-BFGS-B said
            nm = minimize(f, theta, method="Nelder-Mead", bounds=bounds,
                          options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 400 * len(start),
                                   "initial_simplex": _simplex(theta)})
            if nm.fun < fval:
                theta, fval, step, hess_ok = _newton_polish(f, clip(nm.x), lower, grad=grad)
        if newton is not None and f(newton) <= fval:  # Newton's optimum on the bound stands
            return newton, None
    message = None
    if not np.isfinite(fval):
        message = "the criterion is not finite at the optimum"
    elif step > 1e-3:
        message = f"scaled gradient |H^-1 g| = {step:.2g} at the optimum (> 1e-3): not converged"
    elif not hess_ok:
        message = "the Hessian of the criterion is not positive definite at the optimum"
    if message:
        warnings.warn(f"lmm: {message}", ConvergenceWarning, stacklevel=3)
    return theta, message


def _newton(design: Design, reml: bool, x, lower, iters: int = 50):
    """A trust-region Newton method with the exact Hessian (:func:`_newton_derivatives`;
    Nocedal & Wright, Numerical Optimization, ch. 4) from ``x``.
    Each step minimises the quadratic model within a radius (:func:`_trust_step`) on the
    components not held at their bound, clipped to T_ii ≥ 0; the radius grows where the
    model predicts the fall of the criterion and shrinks where it does not. It stops at a
    Newton step −H⁻¹g of a positive (semi)definite Hessian below 1e-5, which it takes (on a
    ridge of optima, as ``_newton_polish``, only along the directions the criterion
    identifies): quadratic convergence leaves θ within ~1e-10 of the optimum, and lme4's
    convergence checks (a small scaled gradient, a positive definite Hessian) hold by
    construction. From the moment start this takes 1 to 3 evaluations on ten of lme4's
    twelve classic fits (5 on sleepstudy's (1 | Subject) + (0 + Days | Subject), 9 on
    Machines' over-parametrised (1 | Worker) + (Machine | Worker)), and no finite
    differences. Returns θ, or None when it does not converge (a criterion that is not finite
    at the start, or the iteration limit): ``optimise`` then runs its general path."""

    def at(th):
        try:
            dev, g, H = _newton_derivatives(design, th, reml, order=2)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, None, None
        return (dev, g, H) if np.isfinite(dev) and np.all(np.isfinite(H)) else (np.inf, None, None)

    fx, g, H = at(x)
    if g is None:
        return None
    radius, variance = 1.0, lower == 0
    for _ in range(iters):
        # a T_ii at 0 is held there where the criterion rises inward: a positive gradient, or
        # (a variance's criterion is even in its θ, so the gradient is exactly 0) a curvature ≥ 0
        held = variance & (x <= 0)
        if held.any():
            held &= (g > 0) | ((g == 0) & (np.diag(H) >= 0))
        some_held = bool(held.any())
        if some_held and held.all():
            return x
        free = ~held
        gf, Hf = (g[free], H[np.ix_(free, free)]) if some_held else (g, H)
        ev, vec = _eigh(Hf)
        flat = 1e-7 * max(-ev[0], ev[-1], 1e-12)  # curvature below this is rounding noise (as the polish)
        newton = ev[0] > -flat
        if newton:  # not along directions the criterion does not identify (a ridge of optima)
            keep = ev > flat
            a = vec.T @ gf
            s = -vec @ (a / ev) if keep.all() else -vec[:, keep] @ (a[keep] / ev[keep])
            step = float(abs(s).max())
            if step >= 1e-5 and s @ s > radius * radius:
                s = _trust_step(gf, ev, vec, radius)
        else:
            s = _trust_step(gf, ev, vec, radius)
            step = float(abs(s).max())
        if some_held:
            y = x.copy()
            y[free] += s
        else:
            y = x + s
        y = np.maximum(y, lower)  # T_ii ≥ 0 (the other bounds are −∞)
        if newton and step < 1e-5:  # within Newton's quadratic convergence: θ to ~1e-10
            return y
        d = (y - x)[free] if some_held else y - x
        predicted = -(gf @ d + 0.5 * d @ (Hf @ d))
        fy, gy, Hy = at(y)
        if newton and fy >= fx and 0 < predicted <= 1e-13 * max(1.0, abs(fx)):
            return x  # the step's predicted fall is below the rounding noise of the criterion
        ratio = (fx - fy) / predicted if predicted > 0 else -1.0
        length = float(np.sqrt(d @ d))
        if ratio < 0.25:
            radius = 0.25 * length
        elif ratio > 0.75 and length > 0.99 * radius:
            radius *= 2.0
        if fy < fx and gy is not None:
            x, fx, g, H = y, fy, gy, Hy
        elif radius < 1e-12:
            return None
    return None


def _trust_step(g, ev, vec, radius):
    """argmin g's + ½s'Hs over |s| ≤ radius for H = vec diag(ev) vec' (the eigenvalues
    ascending): the Newton step when H is positive definite and the step fits, else
    s(μ) = −(H + μI)⁻¹g with μ > −ev₀ and |s(μ)| = radius, by Newton's method on
    1/radius − 1/|s(μ)| (Nocedal & Wright, Algorithm 4.3, to 1e-3 of the radius); when g is
    orthogonal to the lowest eigenvector (the "hard case") the step moves along it."""
    a = vec.T @ g
    if ev[0] > 0:
        s = -vec @ (a / ev)
        if np.linalg.norm(s) <= radius:
            return s
    mu = max(0.0, -ev[0]) * (1 + 1e-12) + 1e-12 * abs(ev[-1])
    for _ in range(50):
        c = a / (ev + mu)
        norm = np.linalg.norm(c)
        if norm < radius and mu <= max(0.0, -ev[0]) * (1 + 1e-9) + 1e-9 * abs(ev[-1]):  # hard case
            return -vec @ c + np.sqrt(radius**2 - norm**2) * vec[:, 0]
        if abs(norm - radius) <= 1e-3 * radius:
            break
        mu += (norm / radius - 1.0) * norm**2 / float(c @ (c / (ev + mu)))
        mu = max(mu, max(0.0, -ev[0]) * (1 + 1e-12) + 1e-12 * abs(ev[-1]))
    return -vec @ (a / (ev + mu))


def _snap_to_bounds(f, x, lower, tol: float = 1e-6):
    """T_ii below ``tol`` set to their bound 0 where the criterion is no higher there:
    L-BFGS-B approaching an optimum on the boundary from inside may stop at 1e-10, not 0."""
    near = (lower == 0) & (x > 0) & (x < tol)
    if near.any():
        y = np.where(near, 0.0, x)
        if f(y) <= f(x):
            return y
    return x


def _inward(f, x, lower, step: float = 0.01):
    """A point inside from a T_ii held at its bound 0 where the criterion is lower, else None.
    The criterion of a variance component is even in T_ii, so θ_i = 0 is always stationary
    in it: L-BFGS-B may stop there although the optimum is inside (the credit-insurance ML fit
    from its moment start stops at T₁₁ = 0, 0.003 above the optimum at T₁₁ = 0.21)."""
    fx = f(x)
    y = x.copy()
    for i in np.flatnonzero((lower == 0) & (x <= 0)):
        z = x.copy()
        z[i] = step
        if f(z) < fx:
            y[i] = step
    return None if np.array_equal(y, x) else y


def _simplex(x):
    pts = [x]
    for i in range(len(x)):
        y = x.copy()
        y[i] = x[i] + 0.05 * max(abs(x[i]), 0.05)
        pts.append(y)
    return np.array(pts)


def _steps(x, idx):
    return 1e-4 * np.maximum(np.abs(x[idx]), 1e-2)


def _derivatives_from_gradient(grad, x, free):
    """Gradient and Hessian on the ``free`` components, the Hessian by central
    differences of the analytic gradient (symmetrised)."""
    idx = np.flatnonzero(free)
    h = _steps(x, idx)
    H = np.empty((len(idx), len(idx)))
    for n, (i, hi) in enumerate(zip(idx, h)):
        up, down = x.copy(), x.copy()
        up[i] += hi
        down[i] -= hi
        H[:, n] = (grad(up)[idx] - grad(down)[idx]) / (2 * hi)
    return grad(x)[idx], 0.5 * (H + H.T)


def _derivatives(f, x, free, f0):
    """Central-difference gradient and Hessian of f on the ``free`` components."""
    idx = np.flatnonzero(free)
    h = _steps(x, idx)
    n = len(idx)
    g, H = np.zeros(n), np.zeros((n, n))

    def at(*steps):
        y = x.copy()
        for i, s in steps:
            y[idx[i]] += s
        return f(y)

    for i in range(n):
        fp, fm = at((i, h[i])), at((i, -h[i]))
        g[i] = (fp - fm) / (2 * h[i])
        H[i, i] = (fp - 2 * f0 + fm) / h[i] ** 2
        for j in range(i):
            H[i, j] = H[j, i] = (
                at((i, h[i]), (j, h[j])) - at((i, h[i]), (j, -h[j])) - at((i, -h[i]), (j, h[j]))
                + at((i, -h[i]), (j, -h[j]))
            ) / (4 * h[i] * h[j])
    return g, H


def _newton_polish(f, x, lower, grad=None, iters: int = 6):
    """Newton steps on the free components (T_ii held at 0 when the criterion rises
    inward). ``grad`` is the analytic gradient, or None for finite differences of f. With
    the analytic gradient the Hessian of the first step is kept for the next ones (on the
    same free components): each then costs one gradient, not 2m + 1, and the iteration
    stays fast-converging this close to the optimum.
    Returns θ, criterion, size of the last Newton step, Hessian-PD flag."""
    fx = f(x)
    step, hess_ok, kept = np.inf, True, None
    for _ in range(iters):
        at_bound = (lower == 0) & (x <= 0)
        free = np.ones(len(x), bool)
        for i in np.flatnonzero(at_bound):  # free it only if moving inward lowers f
            y = x.copy()
            y[i] = 1e-6
            free[i] = f(y) < fx
        if not free.any():
            return x, fx, 0.0, True
        if kept is not None and np.array_equal(kept[0], free):
            g, (ev, vec) = grad(x)[free], kept[1]
        else:
            g, H = _derivatives_from_gradient(grad, x, free) if grad else _derivatives(f, x, free, fx)
            try:
                ev, vec = _eigh(H)
            except np.linalg.LinAlgError:
                return x, fx, np.inf, False
            if grad:
                kept = free, (ev, vec)
        flat = 1e-7 * max(abs(ev).max(), 1e-12)  # curvature below this is rounding noise
        hess_ok = bool(ev[0] > -flat)
        if hess_ok:  # Newton step, not along directions the criterion does not identify
            keep = ev > flat
            s = -vec[:, keep] @ ((vec[:, keep].T @ g) / ev[keep])
        else:
            s = -g / max(abs(ev).max(), 1e-12)
        step = float(np.max(np.abs(s)))
        improved = False
        t = 1.0
        for _ in range(8 if step > 1e-6 else 1):  # halving a converged step changes nothing
            y = x.copy()
            y[free] += t * s
            y = np.where((lower == 0) & (y < 0), 0.0, y)
            fy = f(y)
            if fy < fx:
                x, fx, improved = y, fy, True
                break
            t /= 2
        if not improved or step < 1e-7:
            break
    return x, fx, step, hess_ok
