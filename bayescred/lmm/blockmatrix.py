"""The q-space matrices of a mixed model on the blocks of its sparse Cholesky factor.

The random effects split as in ``fit.Design``: block 1 (the grouping factor with the most
levels, J₁ levels × k₁ effects, eliminated first, so M₁₁ is block diagonal) and the q₂
remaining effects. With Y = M₁₁⁻¹M₁₂ (sparse: the pattern of Z₁'WZ₂) and the Schur
complement S = M₂₂ − M₂₁Y, the inverse of the two-block factor is (selected inversion,
the Takahashi equations for two blocks; docs/formulas.md §9)

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
        M11 = np.einsum("ba,jbc,cd->jad", T1, d.A11, T1) + np.eye(k)
        Di = np.linalg.inv(M11)
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
        Si = self.Si
        # U_C = ΛU = [Λ₁Y; −Λ₂] and W_A = A U_C (block 1 sparse, block 2 dense)
        self.U1 = (bdT1 @ Y).tocsr()
        self.U2 = (-Lam2).tocsr()
        self.W1 = (d.bd_mul(d.A11, self.U1) + A12 @ self.U2).tocsr()
        self.W2 = _dense(A12.T @ self.U1) + _dense(self.U2.T @ A22.T).T
        self.W1Si, self.W2Si = _dense(self.W1 @ Si), self.W2 @ Si
        # H_b = A − A C_b A
        ACb = d.A11 @ self.Cb
        self.Hb11 = d.A11 - ACb @ d.A11
        self.Hb12 = (A12 - d.bd_mul(ACb, A12)).tocsr()
        self.Hb22 = A22 - _dense(A12.T @ d.bd_mul(self.Cb, A12))

    # -- building blocks
    def bd(self, D, X):
        """bd(D) X for (J, k, k) (or one (k, k)) blocks and X of shape (q1, m), dense or sparse."""
        return self.d.bd_mul(np.broadcast_to(D, (self.J, self.k, self.k)), X)

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
        d1 = np.diagonal(self.Cb, axis1=1, axis2=2).ravel() + rowdot(_dense(self.U1 @ self.Si), self.U1)
        d2 = rowdot(_dense(self.U2 @ self.Si), self.U2)
        return np.concatenate([d1, d2])

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
        """The pieces of K = (I − GH)G̃ = K_b − U_C Φ', Φ = G̃W_A S⁻¹, for G̃ given per term."""
        g1, g2 = self.gt1(Gamma), self.gt2(Gamma)
        K11 = g1[None] - self.Cb @ self.A11 @ g1  # (J, k, k)
        K12 = (-self.bd(self.Cb, self.A12 @ g2)).tocsr()
        return {"g1": g1, "g2": g2, "K11": K11, "K12": K12,
                "Phi1": self.bd(g1, self.W1Si), "Phi2": _dense(g2 @ self.W2Si)}

    def quad_diag(self, k) -> tuple[np.ndarray, np.ndarray]:
        """diag(K σ²H K') of one direction ``k`` (from :meth:`direction`), returned as the
        sparse-part diagonal and the q₂×q₂ core X whose diag(U_C X U_C') completes it
        (summed over directions by the caller, so that U_C X U_C' is read once)."""
        Si, W1, W2 = self.Si, self.W1, self.W2
        g1, g2, K11, K12, Phi1, Phi2 = (k[n] for n in ("g1", "g2", "K11", "K12", "Phi1", "Phi2"))
        Xt = _dense(W1.T @ Phi1) + W2.T @ Phi2  # W_A'Φ
        HbPhi1 = self.bd(self.Hb11, Phi1) + _dense(self.Hb12 @ Phi2)
        HbPhi2 = _dense(self.Hb12.T @ Phi1) + self.Hb22 @ Phi2
        SiXt = Si @ Xt
        P1 = HbPhi1 - _dense(W1 @ SiXt)  # σ²HΦ
        P2 = HbPhi2 - W2 @ SiXt
        KP1 = self.bd(K11, P1) + _dense(K12 @ P2)
        KP2 = _dense(g2 @ P2)
        cross = np.concatenate([rowdot(self.U1, KP1), rowdot(self.U2, KP2)])
        GW1, GW2 = self.bd(g1, W1), _dense(g2 @ W2)
        core = Si @ (_dense(GW1.T @ HbPhi1) + GW2.T @ HbPhi2) - Xt.T @ SiXt
        # diag(K_b H_b K_b')
        K11Hb12 = self.bd(K11, self.Hb12)
        kk1 = np.diagonal(K11 @ self.Hb11 @ np.swapaxes(K11, 1, 2), axis1=1, axis2=2).ravel()
        kk1 = kk1 + 2 * rowdot(K11Hb12, K12) + rowdot(_dense(K12 @ self.Hb22), K12)
        kk2 = rowdot(_dense(g2 @ self.Hb22), g2)
        # diag(K_b W_A S⁻¹W_A' K_b')
        KWSi1 = self.bd(K11, self.W1Si) + _dense(K12 @ self.W2Si)
        KW1 = _dense(self.bd(K11, W1)) + _dense(K12 @ W2)
        kw1 = rowdot(KWSi1, KW1)
        kw2 = rowdot(_dense(g2 @ self.W2Si), _dense(g2 @ W2))
        sparse_part = np.concatenate([kk1 - kw1, kk2 - kw2]) - 2 * cross
        return sparse_part, 0.5 * (core + core.T)

    def core_diag(self, X) -> np.ndarray:
        """diag(U_C X U_C') for a q₂×q₂ X."""
        return np.concatenate([rowdot(_dense(self.U1 @ X), self.U1), rowdot(_dense(self.U2 @ X), self.U2)])

    def sandwich_diag(self, k) -> np.ndarray:
        """diag((I − GH)G̃(I − HG)) = diag(K) − diag(K A C) of one direction ``k``."""
        Si, U1, U2 = self.Si, self.U1, self.U2
        g2, K11, K12, Phi1, Phi2 = (k[n] for n in ("g2", "K11", "K12", "Phi1", "Phi2"))
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

