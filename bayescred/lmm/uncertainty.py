"""How uncertain are the EBLUPs? Three measures side by side, plus a parametric bootstrap.

Target μ = l'β + m'u (a random effect: l = 0, m = unit vector; a group's premium:
l = x₀, m = z₀ on its level). FORMULAS §9; G = Cov(u), H = Z'V⁻¹Z, V = ZGZ' + σ²W⁻¹.

(i)   cond_sd = √g₁,  g₁ = m'(G − GHG)m = σ² m'ΛM⁻¹Λ'm            (lme4 condVar; β, θ known)
(ii)  pev_sd  = √(g₁ + g₂), g₂ = d'(X'V⁻¹X)⁻¹d, d = l − X'V⁻¹ZGm   (Henderson [l;m]'C[l;m])
(iii) mse_sd  = √(g₁ + g₂ + 2g₃),  g₃ = tr[(∂b'/∂θ) V (∂b'/∂θ)' I(θ)⁻¹],  b' = m'GZ'V⁻¹
      (Prasad–Rao 1990, Datta–Lahiri 2000 for REML; I = ½tr(P V_k P V_l) the expected
      REML information of the variance parameters (the entries of each Σ_i and σ²)).
      ML fits use the ML information (V⁻¹ for P) and add the bias term −b_ML'∇g₁.

All q-space algebra runs on stacked blocks (J, k, k): one block per risk when the model
has a single grouping factor (cost linear in the number of risks), a single dense q×q
block otherwise. The needed q-space forms (derivations in the comments):
  ∂B/∂θ_k = (I − GH)G_k Z'V⁻¹,  ∂B/∂σ² = −GZ'V⁻¹W⁻¹V⁻¹   (B = GZ'V⁻¹)
  Z'V⁻¹W⁻¹V⁻¹Z = (H − HGH)/σ²,  Z'V⁻¹W⁻¹V⁻¹W⁻¹V⁻¹Z = (H − 2HGH + HGHGH)/σ⁴
  tr(PW⁻¹PW⁻¹) = [N − p − 2tr(GH_P) + tr(GH_PGH_P)]/σ⁴,  H_P = Z'PZ = H − FF'.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import scipy.linalg as sla

from .fit import tri_index

DENSE_LIMIT = 6000  # largest q handled as one dense block (crossed/nested designs)


def _mm(*mats):
    out = mats[0]
    for m in mats[1:]:
        out = np.matmul(out, m)
    return out


def _t(a):
    return np.swapaxes(a, -1, -2)


def _tr(a, b):
    """tr(A B) summed over blocks (broadcasting (1,k,k) against (J,k,k))."""
    a, b = np.broadcast_arrays(a, b)
    return float(np.einsum("jab,jba->", a, b))


class Uncertainty:
    """The q-space quantities of a fit at θ̂, in stacked-block form."""

    def __init__(self, fit):
        self.fit = fit
        d, sol = fit._design, fit._sol
        self.design = d
        s2 = sol.sigma2
        self.s2 = s2
        T1 = d.T1(sol.Ts)
        if d.q2 == 0:
            self.block = True
            A = d.A11
            AX = d.B1[:, :, 1:]
            Lam = T1[None]
            self.pos = self._block_positions()
        else:
            q1 = d.J1 * d.k1
            q = q1 + d.q2
            if q > DENSE_LIMIT:
                raise MemoryError(f"uncertainty measures for q = {q} > {DENSE_LIMIT} crossed random effects")
            self.block = False
            A = np.zeros((q, q))
            A[:q1, :q1] = sla.block_diag(*d.A11)
            A12 = d.A12.reshape(q1, d.q2)
            A[:q1, q1:] = A12
            A[q1:, :q1] = A12.T
            A[q1:, q1:] = d.A22
            AX = np.vstack([d.B1[:, :, 1:].reshape(q1, d.p), d.B2[:, 1:]])
            Lam = sla.block_diag(np.kron(np.eye(d.J1), T1), d.Lam2(sol.Ts).toarray())
            A, AX, Lam = A[None], AX[None], Lam[None]
            self.pos = self._dense_positions()
        k = A.shape[1]
        eye = np.eye(k)
        M = _mm(_t(Lam), A, Lam) + eye
        Minv = np.linalg.inv(M)
        self.condvar = s2 * _mm(Lam, Minv, _t(Lam))  # G − GHG
        xX = _mm(Minv, _t(Lam), AX)
        self.LxX = _mm(Lam, xX)  # GK: (J, k, p)
        self.Qinv = np.linalg.inv(sol.Qxx) if d.p else np.zeros((0, 0))
        self.G = s2 * _mm(Lam, _t(Lam))
        AL = _mm(A, Lam)
        self.H = (A - _mm(AL, Minv, _t(AL))) / s2
        K = (AX - _mm(AL, xX)) / s2  # Z'V⁻¹X
        self.F = _mm(K, np.linalg.cholesky(s2 * self.Qinv)) if d.p else np.zeros(K.shape[:2] + (0,))
        self.Gk = self._derivative_matrices(k)
        self.info = self._information()
        self.info_inv = np.linalg.pinv(self.info)
        self.S = self._g3_matrices()
        self.bias = None if fit.reml else self._ml_bias_matrix(K)

    # -- layout: (term, level, effect) -> (block j, index a)
    def _block_positions(self):
        d = self.design
        off, start = {}, 0
        for i in d.block1:
            off[i] = start
            start += d.k[i]
        return lambda i, level, e: (level, off[i] + e)

    def _dense_positions(self):
        d = self.design
        off, start = {}, 0
        for i in d.block1:
            off[i] = start
            start += d.k[i]
        q1 = d.J1 * d.k1

        def pos(i, level, e):
            if i in off:
                return 0, level * d.k1 + off[i] + e
            return 0, q1 + d.rest_offset[i] + level * d.k[i] + e

        return pos

    def _derivative_matrices(self, k):
        """G_k = ∂G/∂(entry (a,b) of Σ_i), one per variance parameter, as (1, k, k)."""
        d = self.design
        out = []
        for i, t in enumerate(d.terms):
            for a, b in tri_index(t.k):
                Gk = np.zeros((1, k, k))
                levels = range(1) if self.block else range(t.n_levels)
                for lev in levels:
                    _, ia = self.pos(i, lev, a)
                    _, ib = self.pos(i, lev, b)
                    Gk[0, ia, ib] = 1.0
                    Gk[0, ib, ia] = 1.0
                out.append(Gk)
        return out

    def _information(self):
        """Expected REML (or ML) information of (Σ entries..., σ²) (FORMULAS §9.1)."""
        d, s2, G, H = self.design, self.s2, self.G, self.H
        F = self.F if self.fit.reml else self.F[..., :0]
        dof = d.N - d.p if self.fit.reml else d.N

        def trGHP(A):
            return _tr(A, H) - float(np.einsum("jap,jab,jbp->", F, np.broadcast_to(A, H.shape), F))

        def FtAF(A):
            return np.einsum("jap,jab,jbq->pq", F, np.broadcast_to(A, H.shape), F)

        def trGHPGHP(A, B):
            AH, BH = _mm(A, H), _mm(B, H)
            t1 = _tr(AH, BH)
            t2 = float(np.einsum("jap,jab,jbp->", F, _mm(AH, B), F))
            t3 = float(np.sum(FtAF(A) * FtAF(B).T))
            return t1 - 2 * t2 + t3

        mats = self.Gk
        m = len(mats)
        info = np.zeros((m + 1, m + 1))
        for a in range(m):
            for b in range(a, m):
                info[a, b] = info[b, a] = 0.5 * trGHPGHP(mats[a], mats[b])
            info[a, m] = info[m, a] = 0.5 / s2 * (trGHP(mats[a]) - trGHPGHP(mats[a], G))
        info[m, m] = 0.5 / s2**2 * (dof - 2 * trGHP(G) + trGHPGHP(G, G))
        return info

    def _g3_matrices(self):
        """Σ_kl I⁻¹_kl (∂B/∂θ_k) V (∂B/∂θ_l)' as stacked blocks: m'(·)m is g₃ of target m."""
        G, H, s2 = self.G, self.H, self.s2
        eye = np.eye(H.shape[-1])
        IGH = eye - _mm(G, H)
        HGH = _mm(H, G, H)
        Hw = (H - HGH) / s2
        Hww = (H - 2 * HGH + _mm(HGH, G, H)) / s2**2
        left = [_mm(IGH, Gk) for Gk in self.Gk]  # (I − GH)G_k
        m = len(left)
        Iinv = self.info_inv
        S = np.zeros(np.broadcast_shapes(G.shape, H.shape))
        for a in range(m):
            for b in range(m):
                S = S + Iinv[a, b] * _mm(left[a], H, _t(left[b]))
            cross = -_mm(left[a], Hw, G)
            S = S + Iinv[a, m] * (cross + _t(cross))
        S = S + Iinv[m, m] * _mm(G, Hww, G)
        return S

    def _ml_bias_matrix(self, K):
        """For ML θ̂ the MSE estimator adds −b_ML'∇g₁ (FORMULAS §9.1; Datta & Lahiri 2000):
        b_ML = −½ I⁻¹ col_k tr[(X'V⁻¹X)⁻¹ X'V⁻¹V_kV⁻¹X], ∂g₁/∂θ_k = m'(I − GH)G_k(I − HG)m,
        ∂g₁/∂σ² = m'G(H − HGH)G m/σ². Returns Σ_k b_k ∂(G − GHG)/∂θ_k as stacked blocks."""
        G, H, s2 = self.G, self.H, self.s2
        XVX_inv = s2 * self.Qinv
        t = [float(np.sum(XVX_inv * np.einsum("jap,jab,jbq->pq", K, np.broadcast_to(Gk, H.shape), K)))
             for Gk in self.Gk]
        KGK = np.einsum("jap,jab,jbq->pq", K, np.broadcast_to(G, H.shape), K)
        t.append(float(np.sum(XVX_inv * (self.fit._sol.Qxx / s2 - KGK))) / s2)
        b = -0.5 * self.info_inv @ np.array(t)
        eye = np.eye(H.shape[-1])
        IGH = eye - _mm(G, H)
        out = sum(bk * _mm(IGH, Gk, _t(IGH)) for bk, Gk in zip(b[:-1], self.Gk))
        return out + b[-1] * _mm(G, H - _mm(H, G, H), G) / s2

    # -- measures
    def ranef_measures(self):
        """cond, pev, mse SDs per term as (n_levels, k) arrays (lme4 term order)."""
        d, s2 = self.design, self.s2
        cond_d = np.diagonal(self.condvar, axis1=1, axis2=2)
        pev_extra = s2 * np.einsum("jap,pq,jaq->ja", self.LxX, self.Qinv, self.LxX)
        g3_d = np.diagonal(self.S, axis1=1, axis2=2)
        bias_d = np.zeros_like(g3_d) if self.bias is None else np.diagonal(
            np.broadcast_to(self.bias, self.S.shape), axis1=1, axis2=2)
        cond, pev, mse = [], [], []
        for i, t in enumerate(d.terms):
            c = np.empty((t.n_levels, t.k))
            pv, ms = np.empty_like(c), np.empty_like(c)
            for lev in range(t.n_levels):
                for e in range(t.k):
                    j, a = self.pos(i, lev, e)
                    g1 = cond_d[j, a]
                    g2 = pev_extra[j, a]
                    jj = min(j, g3_d.shape[0] - 1)
                    g3 = g3_d[jj, a]
                    c[lev, e], pv[lev, e], ms[lev, e] = g1, g1 + g2, g1 + g2 + 2 * g3 - bias_d[jj, a]
            cond.append(np.sqrt(np.maximum(c, 0)))
            pev.append(np.sqrt(np.maximum(pv, 0)))
            mse.append(np.sqrt(np.maximum(ms, 0)))
        return cond, pev, mse

    def _target(self, m_entries):
        """The random-effect part m of a target as (block j, vector), or None."""
        block = {}
        for i, lev, e, v in m_entries:
            j, a = self.pos(i, lev, e)
            block.setdefault(j, np.zeros(self.H.shape[-1]))[a] += v
        if len(block) > 1:
            raise ValueError("a target may touch only one risk's block")
        return next(iter(block.items())) if block else None

    def components(self, l, m_entries):
        """g₁, g₂, g₃ of the target l'β + m'u; ``m_entries`` = [(term, level, effect, value)]."""
        target = self._target(m_entries)
        l = np.asarray(l, float)
        if target is None:
            g1, g3, a_vec = 0.0, 0.0, np.zeros(self.design.p)
        else:
            j, mv = target
            g1 = float(mv @ self.condvar[j] @ mv)
            a_vec = self.LxX[j].T @ mv
            g3 = float(mv @ self.S[min(j, self.S.shape[0] - 1)] @ mv)
        dvec = l - a_vec
        g2 = float(self.s2 * dvec @ self.Qinv @ dvec) if self.design.p else 0.0
        return g1, g2, g3

    def ml_bias(self, m_entries) -> float:
        """b_ML'∇g₁ of the target (0 for REML fits)."""
        target = self._target(m_entries)
        if self.bias is None or target is None:
            return 0.0
        j, mv = target
        return float(mv @ self.bias[min(j, self.bias.shape[0] - 1)] @ mv)

    def _targets(self, newdata):
        """Fixed design rows, per-term (X, codes) and offsets of the rows of newdata."""
        fit = self.fit
        data = fit._data if newdata is None else newdata
        from .model import _to_pandas

        data = _to_pandas(data)
        X = fit._fixed.transform(data)
        zs = [t.design_for(data) for t in self.design.terms]
        off = fit._fixed.offset_for(data)
        if isinstance(fit._offset_name, str) and fit._offset_name in data.columns:
            off += data[fit._offset_name].to_numpy(dtype=float)
        return data, X, zs, off

    def predict(self, newdata=None, bootstrap=None, seed=None) -> pd.DataFrame:
        fit = self.fit
        data, X, zs, off = self._targets(newdata)
        beta = fit.fixef.to_numpy()
        prem, cond, pev, mse = [], [], [], []
        for r in range(len(data)):
            entries, value, new_var = [], float(X[r] @ beta + off[r]), 0.0
            for i, (Zi, codes) in enumerate(zs):
                lev = codes[r]
                if lev < 0:  # unseen level: û = 0, its u adds Var(z'u) = z'Σz to every measure
                    new_var += float(Zi[r] @ fit.covariances[i] @ Zi[r])
                    continue
                value += float(Zi[r] @ fit._modes[i][lev])
                entries += [(i, lev, e, Zi[r, e]) for e in range(Zi.shape[1])]
            g1, g2, g3 = self.components(X[r], entries)
            g1 += new_var
            prem.append(value)
            cond.append(np.sqrt(max(g1, 0)))
            pev.append(np.sqrt(max(g1 + g2, 0)))
            mse.append(np.sqrt(max(g1 + g2 + 2 * g3 - self.ml_bias(entries), 0)))
        out = pd.DataFrame({"premium": prem, "cond_sd": cond, "pev_sd": pev, "mse_sd": mse}, index=data.index)
        if bootstrap:
            if seed is None:
                raise ValueError("the parametric bootstrap needs an explicit seed")
            out["boot_sd"] = self._bootstrap(bootstrap, seed, targets=(X, zs))
        return out

    # -- parametric bootstrap
    def bootstrap_ranef(self, B: int, seed: int):
        rmse = self._bootstrap(B, seed, targets=None)
        return rmse

    def _bootstrap(self, B, seed, targets):
        """Parametric bootstrap of the prediction error at θ̂: simulate u*, ε* from the
        fit, refit by the same criterion, average the squared error of the new EBLUPs
        (of each u, or of the premiums of ``targets``). Returns RMSEs."""
        from .fit import optimise
        from .model import conditional_modes

        fit, d = self.fit, self.design
        rng = np.random.default_rng(seed)
        w = d.w * d.scale
        base = d.X @ fit.fixef.to_numpy()
        acc = None
        boot = copy.copy(d)
        for _ in range(B):
            us = [rng.multivariate_normal(np.zeros(t.k), S, size=t.n_levels, method="cholesky")
                  for t, S in zip(d.terms, fit.covariances)]
            y = base + sum(np.einsum("nk,nk->n", t.X, u[t.codes]) for t, u in zip(d.terms, us))
            y = y + rng.standard_normal(d.n_rows) * np.sqrt(fit.sigma2 / w)
            wss = fit.sigma2 * rng.chisquare(d.within_df) if d.within_df else 0.0
            boot.set_response(y, wss)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theta, _ = optimise(boot, fit.reml, theta0=fit._sol.theta, polish=False)
            sol = boot.solve(theta, fit.reml)
            modes = conditional_modes(boot, sol)
            if targets is None:
                err = np.concatenate([(m - u).ravel() for m, u in zip(modes, us)])
            else:
                X, zs = targets
                beta_hat = boot.beta0 + sol.beta
                err = X @ (beta_hat - fit.fixef.to_numpy())
                for (Zi, codes), m, u, S in zip(zs, modes, us, fit.covariances):
                    ok = codes >= 0
                    err[ok] += np.einsum("nk,nk->n", Zi[ok], m[codes[ok]] - u[codes[ok]])
                    fresh = rng.multivariate_normal(np.zeros(len(S)), S, size=int((~ok).sum()), method="cholesky")
                    err[~ok] -= np.einsum("nk,nk->n", Zi[~ok], fresh)
            acc = err**2 if acc is None else acc + err**2
        rmse = np.sqrt(acc / B)
        if targets is None:
            out, start = [], 0
            for t in d.terms:
                out.append(rmse[start : start + t.n_levels * t.k].reshape(t.n_levels, t.k))
                start += t.n_levels * t.k
            return out
        return rmse
