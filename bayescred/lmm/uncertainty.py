"""How uncertain are the EBLUPs? Three measures side by side, plus a parametric bootstrap.

Target μ = l'β + m'u (a random effect: l = 0, m = unit vector; a group's premium:
l = x₀, m = z₀ on its level). docs/formulas.md §9; G = Cov(u), H = Z'V⁻¹Z, V = ZGZ' + σ²W⁻¹.

(i)   cond_sd = √g₁,  g₁ = m'(G − GHG)m = σ² m'ΛM⁻¹Λ'm            (lme4 condVar; β, θ known)
(ii)  pev_sd  = √(g₁ + g₂), g₂ = d'(X'V⁻¹X)⁻¹d, d = l − X'V⁻¹ZGm   (Henderson [l;m]'C[l;m])
(iii) mse_sd  = √(g₁ + g₂ + 2g₃),  g₃ = tr[(∂b'/∂θ) V (∂b'/∂θ)' I(θ)⁻¹],  b' = m'GZ'V⁻¹
      (Prasad–Rao 1990, Datta–Lahiri 2000 for REML; I = ½tr(P V_k P V_l) the expected
      REML information of the variance parameters (the entries of each Σ_i and σ²)).
      ML fits use the ML information (V⁻¹ for P) and add the bias term −b_ML'∇g₁.

All q-space algebra runs on ``BlockMatrix`` (bayescred/lmm/blockmatrix.py): per-level
blocks of the largest grouping factor, a low-rank coupling through the remaining q₂
effects and dense q₂ blocks, so memory and time are linear in the number of risks (the
nested Jewell portfolio with 6,000 risks in 50 sectors needs no q×q matrix). Each
measure is computed only when asked for (``ranef(measures=...)``). The needed q-space
forms (derivations in the comments):
  ∂B/∂θ_k = (I − GH)G_k Z'V⁻¹,  ∂B/∂σ² = −GZ'V⁻¹W⁻¹V⁻¹   (B = GZ'V⁻¹)
  Z'V⁻¹W⁻¹V⁻¹Z = (H − HGH)/σ²,  Z'V⁻¹W⁻¹V⁻¹W⁻¹V⁻¹Z = (H − 2HGH + HGHGH)/σ⁴
  tr(PW⁻¹PW⁻¹) = [N − p − 2tr(GH_P) + tr(GH_PGH_P)]/σ⁴,  H_P = Z'PZ = H − FF'.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pandas as pd

from ..progress import track
from .blockmatrix import BlockMatrix, ProductSum
from .fit import _single_thread, tri_index

MEASURES = ("cond_sd", "pev_sd", "mse_sd")


class Uncertainty:
    """The q-space quantities of a fit at θ̂ as block matrices (computed on first use)."""

    def __init__(self, fit):
        self.fit = fit
        d, sol = fit._design, fit._sol
        self.design = d
        s2 = sol.sigma2
        self.s2 = s2
        T1 = d.T1(sol.Ts)
        J, k1, q1, q2 = d.J1, d.k1, d.J1 * d.k1, d.q2
        self.q = q1 + q2
        if q2:
            if d.sparse:  # the fit factored all of M by sparse LU: read the blocks off Z'WZ
                A12, A22 = d.A[:q1, q1:].toarray(), d.A[q1:, q1:].toarray()
            else:
                A12, A22 = d.A12.reshape(q1, q2), d.A22
            A = BlockMatrix(d.A11, X12=A12, X21=A12.T, X22=A22)
            AX = np.vstack([d.B1[:, :, 1:].reshape(q1, d.p), d.B2[:, 1:]])
            Lam = BlockMatrix(np.broadcast_to(T1, (J, k1, k1)).copy(), X22=d.Lam2(sol.Ts).toarray())
        else:
            A = BlockMatrix(d.A11)
            AX = d.B1[:, :, 1:].reshape(q1, d.p)
            Lam = BlockMatrix(np.broadcast_to(T1, (J, k1, k1)).copy())
        self.A, self.AX, self.Lam = A, AX, Lam
        with _single_thread():
            self.Minv = (Lam.T @ A @ Lam + BlockMatrix.identity(J, k1, q2)).inv()
            self.LxX = Lam @ (self.Minv @ (Lam.T @ AX))  # GK: (q, p)
        self.Qinv = np.linalg.inv(sol.Qxx) if d.p else np.zeros((0, 0))
        self.pos = self._positions()

    # -- the measures' matrices, each built on first use
    @functools.cached_property
    def condvar(self) -> ProductSum:
        """G − GHG = σ²ΛM⁻¹Λ'."""
        return ProductSum().add(self.s2, self.Lam @ self.Minv, self.Lam.T)

    @functools.cached_property
    def G(self) -> BlockMatrix:
        return self.s2 * (self.Lam @ self.Lam.T)

    @functools.cached_property
    def H(self) -> BlockMatrix:
        AL = self.A @ self.Lam
        return (self.A - AL @ self.Minv @ AL.T) / self.s2

    @functools.cached_property
    def K(self) -> np.ndarray:
        """Z'V⁻¹X = (Z'WX − AΛM⁻¹Λ'Z'WX)/σ²."""
        return (self.AX - self.A @ self.LxX) / self.s2

    @functools.cached_property
    def F(self) -> np.ndarray:
        if not self.design.p:
            return np.zeros((self.q, 0))
        return self.K @ np.linalg.cholesky(self.s2 * self.Qinv)

    @functools.cached_property
    def IGH(self) -> BlockMatrix:
        return BlockMatrix.identity(self.design.J1, self.design.k1, self.design.q2) - self.G @ self.H

    @functools.cached_property
    def Gk(self) -> list[BlockMatrix]:
        """G_k = ∂G/∂(entry (a,b) of Σ_i), one per variance parameter."""
        d = self.design
        J, k1, q2 = d.J1, d.k1, d.q2
        out = []
        for i, t in enumerate(d.terms):
            for a, b in tri_index(t.k):
                D = np.zeros((J, k1, k1))
                X22 = np.zeros((q2, q2)) if q2 else None
                idx = np.array([[self.pos(i, lev, e) for e in range(t.k)] for lev in range(t.n_levels)])
                if i in d.block1:
                    off = idx[0, 0]
                    D[:, off + a, off + b] = D[:, off + b, off + a] = 1.0
                else:
                    ia, ib = idx[:, a] - J * k1, idx[:, b] - J * k1
                    X22[ia, ib] = X22[ib, ia] = 1.0
                out.append(BlockMatrix(D, X22=X22))
        return out

    @functools.cached_property
    def GkH(self) -> list[BlockMatrix]:
        return [Gk @ self.H for Gk in self.Gk]

    @functools.cached_property
    def info(self) -> np.ndarray:
        """Expected REML (or ML) information of (Σ entries..., σ²) (docs/formulas.md §9.1)."""
        d, s2, G, H = self.design, self.s2, self.G, self.H
        F = self.F if self.fit.reml else self.F[:, :0]
        dof = d.N - d.p if self.fit.reml else d.N
        mats = self.Gk + [G]
        AHs = self.GkH + [G @ H]
        FAF = [A.quad(F) for A in mats]

        def trGHP(a):
            return mats[a].trace_of_product(H) - float(np.trace(FAF[a]))

        def trGHPGHP(a, b):
            t1 = AHs[a].trace_of_product(AHs[b])
            t2 = float(np.sum(F * AHs[a].dot(mats[b].dot(F))))
            t3 = float(np.sum(FAF[a] * FAF[b].T))
            return t1 - 2 * t2 + t3

        m = len(self.Gk)
        info = np.zeros((m + 1, m + 1))
        for a in range(m):
            for b in range(a, m):
                info[a, b] = info[b, a] = 0.5 * trGHPGHP(a, b)
            info[a, m] = info[m, a] = 0.5 / s2 * (trGHP(a) - trGHPGHP(a, m))
        info[m, m] = 0.5 / s2**2 * (dof - 2 * trGHP(m) + trGHPGHP(m, m))
        return info

    @functools.cached_property
    def info_inv(self) -> np.ndarray:
        return np.linalg.pinv(self.info)

    @functools.cached_property
    def S(self) -> ProductSum:
        """Σ_kl I⁻¹_kl (∂B/∂θ_k) V (∂B/∂θ_l)': m'(·)m is g₃ of target m."""
        G, H, s2 = self.G, self.H, self.s2
        HG = H @ G
        HGH = HG @ H
        Hw = (H - HGH) / s2
        Hww = (H - HGH * 2.0 + (HGH @ G) @ H) / s2**2
        left = [self.IGH @ Gk for Gk in self.Gk]  # (I − GH)G_k
        m = len(left)
        Iinv = self.info_inv
        S = ProductSum().add(Iinv[m, m], G @ Hww, G)
        HwG = Hw @ G
        for a in range(m):
            HL = H @ left[a].T
            for b in range(m):
                S.add(Iinv[b, a], left[b], HL)
            S.add(-Iinv[a, m], left[a], HwG, symmetrise=True)
        return S

    @functools.cached_property
    def bias(self) -> ProductSum | None:
        """For ML θ̂ the MSE estimator adds −b_ML'∇g₁ (docs/formulas.md §9.1; Datta & Lahiri 2000):
        b_ML = −½ I⁻¹ col_k tr[(X'V⁻¹X)⁻¹ X'V⁻¹V_kV⁻¹X], ∂g₁/∂θ_k = m'(I − GH)G_k(I − HG)m,
        ∂g₁/∂σ² = m'G(H − HGH)G m/σ². Returns Σ_k b_k ∂(G − GHG)/∂θ_k (None for REML)."""
        if self.fit.reml:
            return None
        G, H, s2, K = self.G, self.H, self.s2, self.K
        XVX_inv = s2 * self.Qinv
        t = [float(np.sum(XVX_inv * Gk.quad(K))) for Gk in self.Gk]
        t.append(float(np.sum(XVX_inv * (self.fit._sol.Qxx / s2 - G.quad(K)))) / s2)
        b = -0.5 * self.info_inv @ np.array(t)
        out = ProductSum().add(b[-1] / s2, G @ (H - H @ G @ H), G)
        for bk, Gk in zip(b[:-1], self.Gk):
            out.add(bk, self.IGH @ Gk, self.IGH.T)
        return out

    # -- layout: (term, level, effect) -> global index in q-space
    def _positions(self):
        d = self.design
        off, start = {}, 0
        for i in d.block1:
            off[i] = start
            start += d.k[i]
        q1 = d.J1 * d.k1

        def pos(i, level, e):
            if i in off:
                return level * d.k1 + off[i] + e
            return q1 + d.rest_offset[i] + level * d.k[i] + e

        return pos

    def _term_index(self, i) -> np.ndarray:
        """(n_levels, k) global indices of term i's effects."""
        d, t = self.design, self.design.terms[i]
        lev, e = np.meshgrid(np.arange(t.n_levels), np.arange(t.k), indexing="ij")
        if i in d.block1:
            off = sum(d.k[j] for j in d.block1[: d.block1.index(i)])
            return lev * d.k1 + off + e
        return d.J1 * d.k1 + d.rest_offset[i] + lev * t.k + e

    # -- measures
    def ranef_measures(self, measures=MEASURES) -> dict[str, list[np.ndarray]]:
        """The requested SDs per term as (n_levels, k) arrays (lme4 term order)."""
        with _single_thread():
            return self._ranef_measures(measures)

    def _ranef_measures(self, measures):
        s2 = self.s2
        var = {}
        g1 = self.condvar.diagonal()
        var["cond_sd"] = g1
        if "pev_sd" in measures or "mse_sd" in measures:
            g2 = s2 * np.einsum("ap,pq,aq->a", self.LxX, self.Qinv, self.LxX)
            var["pev_sd"] = g1 + g2
            if "mse_sd" in measures:
                bias = 0.0 if self.bias is None else self.bias.diagonal()
                var["mse_sd"] = g1 + g2 + 2 * self.S.diagonal() - bias
        out = {}
        for name in measures:
            sd = np.sqrt(np.maximum(var[name], 0))
            out[name] = [sd[self._term_index(i)] for i in range(len(self.design.terms))]
        return out

    def _target(self, m_entries):
        """The random-effect part m of a target as (global indices, values), or None."""
        vals: dict[int, float] = {}
        for i, lev, e, v in m_entries:
            a = self.pos(i, lev, e)
            vals[a] = vals.get(a, 0.0) + v
        if not vals:
            return None
        return np.array(list(vals)), np.array(list(vals.values()))

    def components(self, l, m_entries):
        """g₁, g₂, g₃ of the target l'β + m'u; ``m_entries`` = [(term, level, effect, value)]."""
        target = self._target(m_entries)
        l = np.asarray(l, float)
        if target is None:
            g1, g3, a_vec = 0.0, 0.0, np.zeros(self.design.p)
        else:
            idx, mv = target
            g1 = float(mv @ self.condvar.sub(idx) @ mv)
            a_vec = self.LxX[idx].T @ mv
            g3 = float(mv @ self.S.sub(idx) @ mv)
        dvec = l - a_vec
        g2 = float(self.s2 * dvec @ self.Qinv @ dvec) if self.design.p else 0.0
        return g1, g2, g3

    def ml_bias(self, m_entries) -> float:
        """b_ML'∇g₁ of the target (0 for REML fits)."""
        target = self._target(m_entries)
        if self.bias is None or target is None:
            return 0.0
        idx, mv = target
        return float(mv @ self.bias.sub(idx) @ mv)

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
        with _single_thread():
            return self._predict(newdata, bootstrap, seed)

    def _predict(self, newdata, bootstrap, seed) -> pd.DataFrame:
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
        acc = None
        boot = copy.copy(d)
        for _ in track(range(B), "parametric bootstrap"):
            us = simulate_into(boot, fit, rng)
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


def simulate_into(boot, fit, rng) -> list[np.ndarray]:
    """Draw a new response from the fitted model (u* ~ N(0, Σ̂) per term, ε* ~ N(0, σ̂²/w), and
    the pooled within-cell SS of aggregated input) and set it on ``boot``, a copy of the fit's
    design; returns the simulated effects per term. The parametric bootstrap's one step."""
    d = fit._design
    us = [rng.multivariate_normal(np.zeros(t.k), S, size=t.n_levels, method="cholesky")
          for t, S in zip(d.terms, fit.covariances)]
    y = d.X @ fit.fixef.to_numpy() + sum(np.einsum("nk,nk->n", t.X, u[t.codes]) for t, u in zip(d.terms, us))
    y = y + rng.standard_normal(d.n_rows) * np.sqrt(fit.sigma2 / (d.w * d.scale))
    wss = fit.sigma2 * rng.chisquare(d.within_df) if d.within_df else 0.0
    boot.set_response(y, wss)
    return us
