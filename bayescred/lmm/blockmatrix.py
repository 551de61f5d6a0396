"""The q-space matrices of a mixed model on the blocks of its sparse Cholesky factor.

The random effects split as in ``fit.Design``: block 1 (the grouping factor with the most
levels, J₁ levels × k₁ effects, eliminated first, so M₁₁ is block diagonal) and the q₂
remaining effects. With Y = M₁₁⁻¹M₁₂ (sparse: the pattern of Z₁'WZ₂) and the Schur
complement S = M₂₂ − M₂₁Y, the inverse of the two-block factor is (selected inversion,
the Takahashi equations for two blocks; docs/formulas.md §9.5)

    M⁻¹ = [bd(M₁₁⁻¹) 0; 0 0] + U S⁻¹U',   U = [Y; −I],

so C = ΛM⁻¹Λ' = C_b + U_C S⁻¹U_C' with C_b = bd(T₁M₁₁⁻¹T₁') ⊕ 0 and U_C = ΛU = [Λ₁Y; −Λ₂]
sparse. With A = Z'WZ, W_A = AU_C and G = σ²ΛΛ' every q×q matrix the uncertainty
measures read is a sparse part plus a q₂-rank part:

    σ²H = σ²Z'V⁻¹Z = H_b − W_A S⁻¹W_A',        H_b = A − A C_b A,
    I − GH = I − CA,  (I − GH)G̃ = K_b − U_C S⁻¹W_A'G̃,   K_b = G̃ − C_b A G̃,

for any G̃ with the block structure of G. Only diagonals and a few entries are read, so
no q×q matrix is formed: memory is O(nnz(Z₁'WZ₂) + q₁q₂ + q₂²) and time
O(nnz(Z₁'WZ₂)·q₂ + q₂³) per use. With q₂ = 0 (one grouping factor) the q₂-rank parts are
empty and everything is per-level blocks.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp


def rowdot(a, b) -> np.ndarray:
    """Σ_j a_ij b_ij for each row i (a, b dense or sparse, of one shape)."""
    if sp.issparse(a):
        return np.asarray(sp.csr_matrix(a.multiply(b)).sum(axis=1)).ravel()
    if sp.issparse(b):
        return rowdot(b, a)
    return np.einsum("ij,ij->i", a, b)


def sampled_diag(A, M, B) -> np.ndarray:
    """diag(A M B') for a sparse A, a dense M and B of A's shape: the rows of A M against
    those of B (cost nnz(A)·m; A M B' itself is never formed)."""
    return rowdot(_dense(A @ M), B)


def _add(a, b):
    """a + b with None as zero."""
    return b if a is None else a if b is None else a + b


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _level_blocks(X, Y, k) -> np.ndarray:
    """(J, k, k) level-diagonal blocks of X Y' for X, Y of shape (J·k, m), dense or sparse."""
    J = X.shape[0] // k
    out = np.empty((J, k, k))
    for a in range(k):
        for b in range(k):
            out[:, a, b] = rowdot(X[a::k], Y[b::k])
    return out


class TwoBlock:
    """The two-block factor of M = Λ'AΛ + I at one θ and the operators built from it.

    Vectors and matrices in q-space are pairs (block 1 rows, block 2 rows); ``G̃`` arguments
    are per-term covariance-shaped blocks Γ_i (k_i × k_i), repeated over the term's levels.
    """

    def __init__(self, d, Ts):
        self.d = d
        J, k, q2 = d.J1, d.k1, d.q2
        self.J, self.k, self.q1, self.q2 = J, k, J * k, q2
        q1 = self.q1
        T1 = d.T1(Ts)
        Di = np.linalg.inv(d.m11(T1))
        self.A11 = d.A11
        self.Cb = T1 @ Di @ T1.T  # (J, k, k) level blocks of C_b
        if d.sparse:  # the fit factored all of M by sparse LU: read the blocks off Z'WZ
            A12, A22 = d.A[:q1, q1:].tocsr(), d.A[q1:, q1:].toarray()
        elif q2:
            A12, A22 = sp.csr_matrix(d.A12m), np.asarray(d.A22)
        else:
            A12, A22 = sp.csr_matrix((q1, 0)), np.zeros((0, 0))
        self.A12, self.A22 = A12, A22
        Lam2 = d.Lam2(Ts).tocsr() if q2 else sp.csr_matrix((0, 0))
        self.Lam2 = Lam2
        bdT1 = d.block_diagonal(T1)
        M12 = (bdT1.T @ A12 @ Lam2).tocsr()
        M22 = _dense(Lam2.T @ (Lam2.T @ A22).T) + np.eye(q2)
        Y = d.bd_mul(Di, M12)
        S = M22 - _dense(M12.T @ Y)
        if q2:
            cS = sla.cho_factor(S, lower=True)
            Si = sla.cho_solve(cS, np.eye(q2))
            self.Si = 0.5 * (Si + Si.T)
        else:
            self.Si = np.zeros((0, 0))
        # U_C = ΛU = [Λ₁Y; −Λ₂]
        self.U1 = (bdT1 @ Y).tocsr()
        self.U2 = (-Lam2).tocsr()

    # W_A = A U_C (block 1 sparse, block 2 dense) and H_b = A − A C_b A: only the PEV and MSE
    # measures read them
    @functools.cached_property
    def W1(self):
        return (self.d.bd_mul(self.A11, self.U1) + self.A12 @ self.U2).tocsr()

    @functools.cached_property
    def W2(self) -> np.ndarray:
        return _dense(self.A12.T @ self.U1) + _dense(self.U2.T @ self.A22.T).T

    @functools.cached_property
    def W1Si(self) -> np.ndarray:
        return _dense(self.W1 @ self.Si)

    @functools.cached_property
    def W2Si(self) -> np.ndarray:
        return self.W2 @ self.Si

    @functools.cached_property
    def Hb11(self) -> np.ndarray:
        return self.A11 - self.A11 @ self.Cb @ self.A11

    @functools.cached_property
    def Hb12(self):
        return (self.A12 - self.d.bd_mul(self.A11 @ self.Cb, self.A12)).tocsr()

    @functools.cached_property
    def Hb22(self) -> np.ndarray:
        return self.A22 - _dense(self.A12.T @ self.d.bd_mul(self.Cb, self.A12))

    # -- building blocks
    def bd(self, D, X):
        """bd(D) X for (J, k, k) (or one (k, k)) blocks and X of shape (q1, m), dense or sparse."""
        return self.d.bd_mul(D, X)

    def gt2(self, Gamma) -> sp.csr_matrix:
        """G̃ of the remaining terms (block 2) as a sparse q₂×q₂ matrix."""
        d = self.d
        if not self.q2:
            return sp.csr_matrix((0, 0))
        return sp.block_diag([sp.kron(sp.identity(d.terms[i].n_levels), sp.csr_matrix(Gamma[i])) for i in d.rest],
                             format="csr")

    def gt1(self, Gamma) -> np.ndarray:
        """G̃ of block 1: one k₁×k₁ block (the block-1 terms' Γ_i on its diagonal)."""
        return sla.block_diag(*[Gamma[i] for i in self.d.block1])

    def cond_diag(self) -> np.ndarray:
        """diag(C), C = ΛM⁻¹Λ' (= (G − GHG)/σ²)."""
        cb = np.concatenate([np.diagonal(self.Cb, axis1=1, axis2=2).ravel(), np.zeros(self.q2)])
        return cb + self.core_diag(self.Si)

    def C_dot(self, V):
        """C V for V of shape (q, m)."""
        q1 = self.q1
        t = self.Si @ (_dense(self.U1.T @ V[:q1]) + _dense(self.U2.T @ V[q1:]))
        return np.vstack([self.bd(self.Cb, V[:q1]) + _dense(self.U1 @ t), _dense(self.U2 @ t)])

    def A_dot(self, V):
        q1 = self.q1
        v1, v2 = V[:q1], V[q1:]
        return np.vstack([self.bd(self.A11, v1) + _dense(self.A12 @ v2), _dense(self.A12.T @ v1) + self.A22 @ v2])

    def Hs_dot(self, V):
        """σ²H V = (H_b − W_A S⁻¹W_A') V for V of shape (q, m)."""
        q1 = self.q1
        v1, v2 = V[:q1], V[q1:]
        t = self.Si @ (_dense(self.W1.T @ v1) + self.W2.T @ v2)
        top = self.bd(self.Hb11, v1) + _dense(self.Hb12 @ v2) - _dense(self.W1 @ t)
        return np.vstack([top, _dense(self.Hb12.T @ v1) + self.Hb22 @ v2 - self.W2 @ t])

    def Hs_blocks(self):
        """The dense blocks σ²H₁₂ (q₁×q₂) and σ²H₂₂ (q₂×q₂)."""
        H12 = _dense(self.Hb12) - self.W1Si @ self.W2.T
        H22 = self.Hb22 - self.W2Si @ self.W2.T
        return H12, 0.5 * (H22 + H22.T)

    # -- (I − GH)G̃ and its quadratic forms
    def direction(self, Gamma) -> dict:
        """The pieces of K = (I − GH)G̃ = K_b − U_C Φ', Φ = G̃W_A S⁻¹, for G̃ given per term
        (``rows``: the block-2 rows where G̃ is not zero; ``on1``: whether block 1's is)."""
        g1, g2 = self.gt1(Gamma), self.gt2(Gamma)
        rows = np.unique(g2.nonzero()[0])
        K11 = g1[None] - self.Cb @ self.A11 @ g1  # (J, k, k)
        K12 = (-self.bd(self.Cb, self.A12 @ g2)).tocsr()
        Phi2 = np.zeros((self.q2, self.q2))
        Phi2[rows] = _dense(g2[rows] @ self.W2Si)
        return {"g1": g1, "g2": g2, "K11": K11, "K12": K12, "rows": rows, "on1": bool(np.any(g1)),
                "Phi1": self.bd(g1, self.W1Si) if np.any(g1) else None, "Phi2": Phi2}

    def _linear(self, k) -> dict:
        """The q₂×q₂ parts of one direction that enter its quadratic forms linearly: W_A'Φ,
        S⁻¹W_A'Φ, the block-2 rows of H_bΦ and of σ²HΦ = H_bΦ − W_A S⁻¹W_A'Φ, and of K_bW_A
        (None: a zero block). The q₁-row panels are formed by :meth:`g3_diag` once per
        Ω-weighted combination of directions, not once per direction."""
        Si, W1, W2, rows = self.Si, self.W1, self.W2, k["rows"]
        Xt = HbPhi2 = KW2 = None
        if len(rows):
            Phi2 = k["Phi2"][rows]
            Xt = W2[rows].T @ Phi2
            HbPhi2 = self.Hb22[:, rows] @ Phi2
            KW2 = np.zeros((self.q2, self.q2))
            KW2[rows] = _dense(k["g2"][rows][:, rows] @ W2[rows])
        if k["on1"]:
            Phi1 = k["Phi1"]
            Xt = _add(Xt, _dense(W1.T @ Phi1))
            HbPhi2 = _add(HbPhi2, _dense(self.Hb12.T @ Phi1))
        SiXt = Si @ Xt
        return {"Xt": Xt, "SiXt": SiXt, "HbPhi2": HbPhi2, "P2": HbPhi2 - W2 @ SiXt, "KW2": KW2}

    def _kwsi(self, k):
        """K_bW_AS⁻¹ of one direction by block (None: a zero block), from W_AS⁻¹."""
        rows = k["rows"]
        KWSi1 = KWSi2 = None
        if len(rows):
            KWSi1 = _dense(k["K12"][:, rows] @ self.W2Si[rows])
            KWSi2 = np.zeros((self.q2, self.q2))
            KWSi2[rows] = _dense(k["g2"][rows][:, rows] @ self.W2Si[rows])
        if k["on1"]:
            KWSi1 = _add(KWSi1, self.bd(k["K11"], self.W1Si))
        return KWSi1, KWSi2

    def g3_diag(self, dirs, Omega) -> np.ndarray:
        """Σ_kl Ω_kl diag(K_k σ²H K_l') for directions K_k = (I − GH)G̃_k (from :meth:`direction`).

        σ²KHK_l' = K_bH_bK_{b,l}' − K_bW_AS⁻¹W_A'K_{b,l}' − U_CΦ'σ²HK_{b,l}' − K_bσ²HΦ_lU_C'
        + U_C(Φ'H_bΦ_l − W_A'Φ S⁻¹ W_A'Φ_l)U_C'; the bilinear sums are taken over l first: every
        factor that is linear in direction l (G̃_l, K_{b,l}, Φ_l, W_A'Φ_l) is combined with the
        weights Ω_kl before it meets a q₁-row panel, so each direction k costs a few q₂³ and a
        few products of the sparse q₁×q₂ blocks with a q₂×q₂ matrix, whatever the number of
        directions: no q₁×q₂ panel per direction is formed or summed (InstEval's second formula:
        peak memory of ``ranef()`` 824 -> 711 MB, its time 2.1-3.1 s -> 2.0 s)."""
        m = len(dirs)
        lin = [self._linear(kl) for kl in dirs]

        def mix(values, kk):
            """Σ_l Ω_kl values[l] over the l where the value is not None (None if none is)."""
            out = None
            for ll in range(m):
                if Omega[kk, ll] != 0 and values[ll] is not None:
                    out = _add(out, Omega[kk, ll] * values[ll])
            return out

        def lin_mix(name, kk):
            return mix([part[name] for part in lin], kk)

        on2 = [bool(len(kl["rows"])) for kl in dirs]
        K12s = [kl["K12"] if on2[ll] else None for ll, kl in enumerate(dirs)]
        g2s = [kl["g2"] if on2[ll] else None for ll, kl in enumerate(dirs)]
        K11s = [kl["K11"] if kl["on1"] else None for kl in dirs]
        g1s = [kl["g1"] if kl["on1"] else None for kl in dirs]
        Phi2s = [kl["Phi2"] if on2[ll] else None for ll, kl in enumerate(dirs)]

        out1, out2 = np.zeros(self.q1), np.zeros(self.q2)
        core = np.zeros((self.q2, self.q2))
        inner = np.zeros((self.q2, self.q2))
        for kk, k in enumerate(dirs):
            if not np.any(Omega[kk]):
                continue
            rows, K11, K12, g2, on1k = k["rows"], k["K11"], k["K12"], k["g2"], k["on1"]
            K12bar, g2bar, K11bar = mix(K12s, kk), mix(g2s, kk), mix(K11s, kk)
            # − 2 diag(U_C Φ'σ²H K_b') summed: K_b (σ²HΦ̄) against U_C
            if len(rows):
                P2 = lin_mix("P2", kk)
                out1 -= 2 * sampled_diag(K12[:, rows], P2[rows], self.U1)
                out2 -= 2 * rowdot(self.U2, _dense(g2[:, rows] @ P2[rows]))
            if on1k:
                # block 1's rows of H_bΦ̄ and σ²HΦ̄, Φ̄ = Σ_l Ω_kl Φ_l: Φ₁ = bd(G̃₁)W_AS⁻¹ is linear in G̃₁
                Phi2bar, g1bar = mix(Phi2s, kk), mix(g1s, kk)
                HbPhi1 = None if Phi2bar is None else _dense(self.Hb12 @ Phi2bar)
                if g1bar is not None:
                    HbPhi1 = _add(HbPhi1, self.bd(self.Hb11, self.bd(g1bar, self.W1Si)))
                P1 = HbPhi1 - _dense(self.W1 @ lin_mix("SiXt", kk))
                out1 -= 2 * rowdot(self.U1, self.bd(K11, P1))
                inner += _dense(self.bd(k["g1"], self.W1).T @ HbPhi1)
            # − diag(K_b W_A S⁻¹ W_A' K̄_b'), K̄_bW_A = K̄₁₂W_A,₂ + bd(K̄₁₁)W_A,₁ on block 1
            KWSi1, KWSi2 = self._kwsi(k)
            if KWSi1 is not None:
                KW1 = None if K12bar is None else _dense(K12bar @ self.W2)
                if K11bar is not None:
                    KW1 = _add(KW1, _dense(self.bd(K11bar, self.W1)))
                if KW1 is not None:
                    out1 -= rowdot(KWSi1, KW1)
            KW2 = None if KWSi2 is None else lin_mix("KW2", kk)
            if KW2 is not None:
                out2 -= rowdot(KWSi2, KW2)
            # diag(K_b H_b K̄_b'): the block-2 columns against K̄_b at once, the rest pair by pair
            if len(rows) and K12bar is not None:
                out1 += sampled_diag(K12[:, rows], self.Hb22[rows], K12bar)
                out2 += rowdot(_dense(g2[:, rows] @ self.Hb22[rows]), g2bar)
            if on1k and K11bar is not None:
                out1 += np.einsum("jab,jbc,jac->ja", K11, self.Hb11, K11bar).ravel()
            if on1k and K12bar is not None:
                out1 += rowdot(self.bd(K11, self.Hb12), K12bar)
            if len(rows) and K11bar is not None:
                out1 += rowdot(self.bd(K11bar, self.Hb12), K12)
            # the q₂×q₂ core: Φ'H_bΦ̄ − (W_A'Φ)'S⁻¹(W_A'Φ̄), Φ = G̃W_AS⁻¹
            if len(rows):
                inner += _dense(g2[rows][:, rows] @ self.W2[rows]).T @ lin_mix("HbPhi2", kk)[rows]
            core -= lin[kk]["Xt"].T @ lin_mix("SiXt", kk)
        core += self.Si @ inner
        return np.concatenate([out1, out2]) + self.core_diag(0.5 * (core + core.T))

    def core_diag(self, X) -> np.ndarray:
        """diag(U_C X U_C') for a q₂×q₂ X."""
        return np.concatenate([sampled_diag(self.U1, X, self.U1), sampled_diag(self.U2, X, self.U2)])

    def sandwich_diag(self, k) -> np.ndarray:
        """diag((I − GH)G̃(I − HG)) = diag(K) − diag(K A C) of one direction ``k``."""
        Si, U1, U2 = self.Si, self.U1, self.U2
        g2, K11, K12, Phi2 = (k[n] for n in ("g2", "K11", "K12", "Phi2"))
        Phi1 = np.zeros((self.q1, self.q2)) if k["Phi1"] is None else k["Phi1"]
        diagK = np.concatenate([np.diagonal(K11, axis1=1, axis2=2).ravel() - rowdot(U1, Phi1),
                                g2.diagonal() - rowdot(U2, Phi2)])
        # K A C = K A C_b + K W_A S⁻¹U_C',  K W_A S⁻¹ = K_b W_A S⁻¹ − U_C (W_A'Φ)'S⁻¹
        XSi = (_dense(self.W1.T @ Phi1) + self.W2.T @ Phi2).T @ Si
        KWSi1 = self.bd(K11, self.W1Si) + _dense(K12 @ self.W2Si) - _dense(U1 @ XSi)
        KWSi2 = _dense(g2 @ self.W2Si) - _dense(U2 @ XSi)
        # K A C_b lives on block 1: level blocks of (K A)₁₁ = K₁₁A₁₁ + K₁₂A₂₁ − U₁(AΦ)₁'
        APhi1 = self.bd(self.A11, Phi1) + _dense(self.A12 @ Phi2)
        KA11 = K11 @ self.A11 + _level_blocks(K12, self.A12, self.k) - _level_blocks(U1, APhi1, self.k)
        kac = np.einsum("jab,jba->ja", KA11, self.Cb).ravel()
        return diagK - np.concatenate([kac + rowdot(KWSi1, U1), rowdot(KWSi2, U2)])

    def K_T_dot(self, k, e) -> np.ndarray:
        """K'e = K_b'e − G̃W_A S⁻¹U_C'e for a q-vector e (one target's row combination of K)."""
        q1 = self.q1
        e1, e2 = e[:q1], e[q1:]
        t = self.Si @ (self.U1.T @ e1 + self.U2.T @ e2)
        top = self.bd(np.swapaxes(k["K11"], 1, 2), e1[:, None])[:, 0] - self.bd(k["g1"], (self.W1 @ t)[:, None])[:, 0]
        bottom = k["K12"].T @ e1 + k["g2"].T @ e2 - k["g2"] @ (self.W2 @ t)
        return np.concatenate([top, bottom])

