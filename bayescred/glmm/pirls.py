"""Penalised iteratively reweighted least squares and the Laplace / AGQ deviance of a GLMM.

The model (docs: lme4's glmer, Bates et al. 2015 §2; MixedModels.jl's GLMM contains an LMM):
η = offset + Xβ + ZΛ(θ)u, u ~ N(0, I), y | u from the family with mean μ = g⁻¹(η).

For given θ (and β), PIRLS finds the conditional mode û minimising the penalised deviance
Σ d_i(y_i, μ_i) + ‖u‖² by Fisher scoring: with working weights W = wt·(dμ/dη)²/V(μ) and the
working response z = η − offset + (y − μ)/(dμ/dη) it solves the penalised least squares

    M u = Λ'Z'W(z − Xβ),   M = Λ'Z'WZΛ + I                      (β fixed; lme4 ``uOnly``)
    [M  Λ'Z'WX; X'WZΛ  X'WX] [u; β] = [Λ'Z'Wz; X'Wz]            (β too; lme4's nAGQ = 0 stage)

halving the step while the penalised deviance rises. At the mode the Laplace deviance is
(lme4 src/respModule.cpp ``glmResp::Laplace``)

    d(θ, β) = aic(y, μ̂) + log|M| + ‖û‖²       (aic = −2 log p(y | û), R's family()$aic)

and, for a single scalar random-effects term, adaptive Gauss–Hermite quadrature with nodes
z_k and normalised weights w_k (lme4 src/external.cpp ``glmerAGQ``):

    d_AGQ = Σ_j D_j(û_j) + log|M| − 2 Σ_j log Σ_k w_k exp(−½[D_j(û_j + z_k s_j) − D_j(û_j)] + z_k²/2)

with D_j the level's summed deviance residuals plus u_j², and s_j = M_jj^{-1/2}.

Structure: when every term shares one grouping factor (the credibility case), M is block
diagonal with one k×k block per level and everything costs O(n k² + J k³); otherwise Z is a
scipy sparse matrix and M is factored densely while small, by a sparse LU beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..lmm.fit import relative_factors, tri_index

DENSE_MAX = 3000  # largest q factored as one dense matrix in the general (crossed) case
PAIRS_MAX = 1000  # up to this q, Z'WZ is accumulated densely by bincount (no sparse products)


class RandomEffects:
    """Z and Λ(θ) of the random-effects terms (lme4's order), and the factor of M."""

    def __init__(self, terms, block: bool = True):
        """``block=False`` forces the general sparse path (the block one is its special case)."""
        self.terms = terms
        self.n_rows = len(terms[0].codes)
        self.theta_index, self.theta_lower, start = [], [], 0
        for t in terms:
            idx = tri_index(t.k)
            self.theta_index.append(slice(start, start + len(idx)))
            self.theta_lower += [0.0 if i == j else -np.inf for i, j in idx]
            start += len(idx)
        self.n_theta = start
        self.single = block and all(t.group == terms[0].group for t in terms)
        if self.single:
            self.J = terms[0].n_levels
            self.k = sum(t.k for t in terms)
            self.codes = terms[0].codes
            self.z = np.column_stack([t.X for t in terms])
            self.pairs = [(a, b) for b in range(self.k) for a in range(b, self.k)]
            self.zz = {(a, b): self.z[:, a] * self.z[:, b] for a, b in self.pairs}
        else:
            rows, cols, vals, self.offsets, q = [], [], [], [], 0
            for t in terms:
                self.offsets.append(q)
                for e in range(t.k):
                    rows.append(np.arange(self.n_rows))
                    cols.append(q + t.codes * t.k + e)
                    vals.append(t.X[:, e])
                q += t.n_levels * t.k
            self.q = q
            self.Z = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=(self.n_rows, q))
            if q <= PAIRS_MAX:  # each row has the same m nonzeros: Z'WZ = Σ_rows w z z' by bincount
                c, v = np.column_stack(cols), np.column_stack(vals)
                self.pair_index = (c[:, :, None] * q + c[:, None, :]).reshape(self.n_rows, -1)
                self.pair_value = (v[:, :, None] * v[:, None, :]).reshape(self.n_rows, -1)
        self.set_theta(np.array([1.0 if lo == 0 else 0.0 for lo in self.theta_lower]))

    # ---------------------------------------------------------------- θ
    def T(self, theta) -> list[np.ndarray]:
        """Each term's lower-triangular relative factor T_i (Σ_i = σ² T_i T_i')."""
        return relative_factors(self.terms, self.theta_index, theta)

    def set_theta(self, theta):
        self.theta = np.asarray(theta, float)
        self.Ts = self.T(self.theta)
        if self.single:
            self.T1 = sla.block_diag(*self.Ts)
        else:
            lam = sp.block_diag([sp.kron(sp.identity(t.n_levels), sp.csr_matrix(T)) for t, T in zip(self.terms, self.Ts)],
                                format="csr")
            self.Lam = lam
            self.ZL = (self.Z @ lam).tocsr()

    # ---------------------------------------------------------------- products
    def zeros(self, *extra):
        return np.zeros((self.J, self.k, *extra) if self.single else (self.q, *extra))

    def zlam(self, u) -> np.ndarray:
        """ZΛu per row."""
        if self.single:
            b = u @ self.T1.T
            return np.einsum("nk,nk->n", self.z, b[self.codes]) if self.k > 1 else self.z[:, 0] * b[self.codes, 0]
        return self.ZL @ u

    def rhs(self, w, V) -> np.ndarray:
        """Λ'Z'WV for V of shape (n,) or (n, m): u-shaped (with a trailing m)."""
        if not self.single:
            return self.ZL.T @ (V * (w if V.ndim == 1 else w[:, None]))
        cols = V[:, None] if V.ndim == 1 else V
        out = np.empty((self.J, self.k, cols.shape[1]))
        for a in range(self.k):
            wa = w * self.z[:, a]
            for m in range(cols.shape[1]):
                out[:, a, m] = np.bincount(self.codes, wa * cols[:, m], minlength=self.J)
        out = np.einsum("ba,jbm->jam", self.T1, out)
        return out[:, :, 0] if V.ndim == 1 else out

    def factor(self, w) -> float:
        """Factor M = Λ'Z'WZΛ + I for working weights w; returns log|M|."""
        if self.single:
            A = np.empty((self.J, self.k, self.k))
            for a, b in self.pairs:
                A[:, a, b] = A[:, b, a] = np.bincount(self.codes, w * self.zz[a, b], minlength=self.J)
            M = np.einsum("ba,jbc,cd->jad", self.T1, A, self.T1)
            M[:, range(self.k), range(self.k)] += 1.0
            self.M = M
            if self.k == 1:
                self.Mdiag = M[:, 0, 0]
                return float(np.sum(np.log(self.Mdiag)))
            self.L = np.linalg.cholesky(M)
            return 2.0 * float(np.sum(np.log(np.diagonal(self.L, axis1=1, axis2=2))))
        if self.q <= PAIRS_MAX:
            A = np.bincount(self.pair_index.ravel(), (self.pair_value * w[:, None]).ravel(),
                            minlength=self.q * self.q).reshape(self.q, self.q)
            M = np.asarray(self.Lam.T @ np.asarray(self.Lam.T @ A).T)  # Λ'AΛ (A symmetric)
            M[np.diag_indices(self.q)] += 1.0
            self.M = M
            self.chol = sla.cho_factor(M, lower=True)
            self.lu = None
            return 2.0 * float(np.sum(np.log(np.diag(self.chol[0]))))
        M = (self.ZL.T @ self.ZL.multiply(w[:, None]).tocsc() + sp.identity(self.q)).tocsc()
        self.M = M
        if self.q <= DENSE_MAX:
            self.chol = sla.cho_factor(M.toarray(), lower=True)
            self.lu = None
            return 2.0 * float(np.sum(np.log(np.diag(self.chol[0]))))
        from scipy.sparse.linalg import splu

        self.lu = splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        return float(np.sum(np.log(np.abs(self.lu.U.diagonal()))))

    def solve(self, b) -> np.ndarray:
        """M⁻¹b for u-shaped b (optionally with a trailing column axis)."""
        if self.single:
            if self.k == 1:
                return b / (self.Mdiag[:, None] if b.ndim == 2 else self.Mdiag[:, None, None])
            col = b.ndim == 2
            bb = b[:, :, None] if col else b
            x = np.linalg.solve(self.M, bb)
            return x[:, :, 0] if col else x
        if self.lu is None:
            return sla.cho_solve(self.chol, b)
        return self.lu.solve(b)

    def inner(self, a, b) -> np.ndarray:
        """a'b summed over the u axes (a, b u-shaped with a trailing column axis)."""
        return np.einsum("jkp,jkm->pm", a, b) if self.single else a.T @ b

    def sqnorm(self, u) -> float:
        return float(np.sum(u * u))

    def inverse_blocks(self) -> np.ndarray:
        """Diagonal k×k blocks of M⁻¹ per level (single factor) or M⁻¹ itself (dense)."""
        if self.single:
            if self.k == 1:
                return (1.0 / self.Mdiag)[:, None, None]
            return np.linalg.inv(self.M)
        eye = np.eye(self.q)
        return sla.cho_solve(self.chol, eye) if self.lu is None else self.lu.solve(eye)

    def to_terms(self, u) -> list[np.ndarray]:
        """b = Λu per term as (n_levels, k) arrays."""
        out = []
        if self.single:
            b = u @ self.T1.T
            start = 0
            for t in self.terms:
                out.append(b[:, start : start + t.k])
                start += t.k
            return out
        for t, T, o in zip(self.terms, self.Ts, self.offsets):
            out.append(u[o : o + t.n_levels * t.k].reshape(t.n_levels, t.k) @ T.T)
        return out


@dataclass
class Response:
    """The response as glmer holds it: y (proportions for binomial), n, prior weights, offset."""

    family: object
    y: np.ndarray
    n: np.ndarray
    wt: np.ndarray
    offset: np.ndarray

    def devres(self, mu):
        return self.family.dev_resids(self.y, mu, self.wt)

    def aic(self, mu) -> float:
        return float(self.family.aic(self.y, self.n, mu, self.wt, float(np.sum(self.devres(mu)))))

    def eta_start(self):
        return self.family.link.linkfun(self.family.initialize(self.y, self.wt))


@dataclass
class Mode:
    """PIRLS at one (θ, β): the conditional mode and the pieces of the Laplace deviance."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    logdet: float
    w: np.ndarray  # working weights the final factor used
    iterations: int

    def laplace(self, resp: Response) -> float:
        return resp.aic(self.mu) + self.logdet + float(np.sum(self.u * self.u))


class PIRLSError(ArithmeticError):
    pass


def pirls(re: RandomEffects, resp: Response, X, beta, u, *, joint: bool, eta_start=None,
          maxit: int = 100, tol: float = 1e-10) -> Mode:
    """Penalised IRLS for û (and β̂ when ``joint``) at the θ set on ``re``.

    Starts from (u, β), or from ``eta_start`` (the family's starting linear predictor, as
    glmer's first iteration) when given. Stops when the largest change of u (and β) is
    below ``tol``; the log-determinant is that of the last factor, as lme4."""
    fam, link = resp.family, resp.family.link
    off = resp.offset
    fixed = off + X @ beta  # offset + Xβ (fixed through the loop unless joint)
    eta = eta_start if eta_start is not None else fixed + re.zlam(u)
    mu = link.linkinv(eta)
    pdev = float(np.sum(resp.devres(mu))) + re.sqnorm(u) if eta_start is None else np.inf
    previous = None  # the last step's change of u
    for it in range(1, maxit + 1):
        mueta = link.mu_eta(eta)
        w = resp.wt * mueta**2 / fam.variance(mu)
        resid = (resp.y - mu) / mueta
        logdet = re.factor(w)
        if joint:
            z = eta - off + resid
            cu = re.rhs(w, z)
            RZX = re.rhs(w, X)
            Cu, CX = re.solve(cu), re.solve(RZX)
            XW = X * w[:, None]
            S = X.T @ XW - re.inner(RZX, CX)
            new_beta = np.linalg.solve(S, XW.T @ z - _inner_vec(RZX, Cu)) if X.shape[1] else beta
            new_u = Cu - CX @ new_beta
        else:
            new_u = re.solve(re.rhs(w, eta - fixed + resid))
            new_beta = beta
        du, db = new_u - u, new_beta - beta

        def trial(step):
            cu_, cb_ = u + step * du, beta + step * db
            eta_new = (off + X @ cb_ if joint else fixed) + re.zlam(cu_)
            mu_new = link.linkinv(eta_new)
            return cu_, cb_, eta_new, mu_new, float(np.sum(resp.devres(mu_new))) + re.sqnorm(cu_)

        step = 1.0
        for _ in range(30):
            cu_, cb_, eta_new, mu_new, pnew = trial(step)
            if np.isfinite(pnew) and pnew <= pdev + 1e-10 * abs(pdev):
                break
            step /= 2
        else:
            raise PIRLSError("PIRLS step-halvings failed to reduce the penalised deviance")
        # Fisher scoring with a non-canonical link (Gamma with log) can overshoot and oscillate
        # about the mode, converging only slowly; when this step reverses the last one, take the
        # half step instead if it lowers the penalised deviance further (same fixed point).
        if previous is not None and float(np.vdot(du, previous)) < 0:
            half = trial(step / 2)
            if np.isfinite(half[4]) and half[4] < pnew:
                (cu_, cb_, eta_new, mu_new, pnew), step = half, step / 2
        previous = du
        size = step * max(float(np.max(np.abs(du), initial=0.0)), float(np.max(np.abs(db), initial=0.0)))
        u, beta, eta, mu, pdev = cu_, cb_, eta_new, mu_new, pnew
        if size < tol:
            return Mode(u, beta, eta, mu, logdet, w, it)
    raise PIRLSError(f"PIRLS did not converge in {maxit} iterations")


def _inner_vec(RZX, Cu) -> np.ndarray:
    """RZX'Cu: (p,) from u-shaped RZX (…, p) and u-shaped Cu."""
    if RZX.ndim == 3:
        return np.einsum("jkp,jk->p", RZX, Cu)
    return RZX.T @ Cu


def gh_rule(n: int):
    """Gauss–Hermite nodes and weights for the standard normal (weights sum to 1): lme4's GHrule."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / np.sqrt(2 * np.pi)


def agq_deviance(re: RandomEffects, resp: Response, X, mode: Mode, n_agq: int) -> float:
    """Adaptive Gauss–Hermite deviance around the mode for one scalar term (module doc)."""
    codes, J = re.codes, re.J
    link = resp.family.link
    fixed = resp.offset + X @ mode.beta
    u0 = mode.u[:, 0]
    devc0 = np.bincount(codes, resp.devres(mode.mu), minlength=J) + u0**2
    sd = 1.0 / np.sqrt(re.Mdiag)
    z, w = gh_rule(n_agq)
    mult = np.zeros(J)
    for zk, wk in zip(z, w):
        if zk == 0:
            mult += wk
            continue
        u = (u0 + zk * sd)[:, None]
        mu = link.linkinv(fixed + re.zlam(u))
        devc = np.bincount(codes, resp.devres(mu), minlength=J) + u[:, 0] ** 2
        mult += np.exp(-0.5 * (devc - devc0) + 0.5 * zk**2) * wk
    return float(np.sum(devc0) + mode.logdet - 2.0 * np.sum(np.log(mult)))
