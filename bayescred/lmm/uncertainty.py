"""How uncertain are the EBLUPs? Three measures side by side, plus a parametric bootstrap.

Target μ = l'β + m'u (a random effect: l = 0, m = unit vector; a group's premium:
l = x₀, m = z₀ on its level). docs/formulas.md §9 (computation §9.5); G = Cov(u), H = Z'V⁻¹Z, V = ZGZ' + σ²W⁻¹.

(i)   cond_sd = √g₁,  g₁ = m'(G − GHG)m = σ² m'ΛM⁻¹Λ'm            (lme4 condVar; β, θ known)
(ii)  pev_sd  = √(g₁ + g₂), g₂ = d'(X'V⁻¹X)⁻¹d, d = l − X'V⁻¹ZGm   (Henderson [l;m]'C[l;m])
(iii) mse_sd  = √(g₁ + g₂ + 2g₃),  g₃ = tr[(∂b'/∂θ) V (∂b'/∂θ)' I(θ)⁻¹],  b' = m'GZ'V⁻¹
      (Prasad–Rao 1990, Datta–Lahiri 2000 for REML; I = ½tr(P V_k P V_l) the expected
      REML information of the variance parameters (the entries of each Σ_i and σ²)).
      ML fits use the ML information (V⁻¹ for P) and add the bias term −b_ML'∇g₁.

Every q-space quantity is read off the two-block factor of the fit (``TwoBlock``,
bayescred/lmm/blockmatrix.py: selected inversion, sparse parts plus a q₂-rank part), so
memory and time are linear in the number of risks for a fixed number of other effects.
The forms used (derivations in the comments):
  ∂B/∂θ_k = (I − GH)G_k Z'V⁻¹ with G_k = ∂G/∂θ_k, and, as B = GZ'V⁻¹ is homogeneous of
  degree 0 in (Σ entries, σ²), ∂B/∂σ² = −(I − GH)G Z'V⁻¹/σ² = −Σ_k ψ_k ∂B/∂θ_k/σ² (ψ_k the
  Σ entries). So with Ω = J'I⁻¹J, J = [I; −ψ'/σ²], on the Σ-entry directions only:
      g₃ = Σ_kl Ω_kl m'(I − GH)G_k H G_l(I − HG)m.
  The information needs only tr(G_k H_P) and tr(G_k H_P G_l H_P), H_P = Z'PZ = H − FF'
  (V_σ = W⁻¹ = (V − ZGZ')/σ², PVP = P): traces of level blocks of H.
  ML bias: ∂g₁/∂θ_k = m'(I − GH)G_k(I − HG)m and, g₁ being homogeneous of degree 1,
  σ²∂g₁/∂σ² = g₁ − m'(I − GH)G(I − HG)m.
Each measure is computed only when asked for (``ranef(measures=...)``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings

import numpy as np
import pandas as pd

from ..formula import _to_pandas
from ..progress import track
from .._pages import small_pages
from .blockmatrix import TwoBlock, rowdot
from .fit import _single_thread, conditional_modes, optimise, tri_index

MEASURES = ("cond_sd", "pev_sd", "mse_sd")


@contextlib.contextmanager
def _heavy():
    """One BLAS thread (the fit's rule) and small pages: the uncertainty algebra writes large
    arrays once, and with numpy's huge-page hint ``ranef()`` on InstEval took 7.0-7.5 s in a
    fresh process instead of 2.3 s (``bayescred._pages``)."""
    with _single_thread(), small_pages():
        yield


class Uncertainty:
    """The q-space quantities of a fit at θ̂ on its two-block factor (computed on first use)."""

    def __init__(self, fit):
        self.fit = fit
        d, sol = fit._design, fit._sol
        self.design = d
        self.s2 = sol.sigma2
        q1, q2 = d.J1 * d.k1, d.q2
        self.q1, self.q = q1, q1 + q2
        with _heavy():
            self.tb = TwoBlock(d, sol.Ts)
        AX = d.B1[:, :, 1:].reshape(q1, d.p)
        self.AX = np.vstack([AX, d.B2[:, 1:]]) if q2 else AX  # Z'WX
        self.Qinv = np.linalg.inv(sol.Qxx) if d.p else np.zeros((0, 0))
        self.pos = self._positions()
        # the variance parameters: (term, a, b) of each Σ_i entry in lme4's order, their values
        self.params = [(i, a, b) for i, t in enumerate(d.terms) for a, b in tri_index(t.k)]
        self.Sigma = [self.s2 * T @ T.T for T in sol.Ts]
        self.psi = np.array([self.Sigma[i][a, b] for i, a, b in self.params])

    @functools.cached_property
    def LxX(self) -> np.ndarray:
        """ΛM⁻¹Λ'Z'WX = GK (q, p), K = Z'V⁻¹X."""
        with _heavy():
            return self.tb.C_dot(self.AX)

    # -- the variance directions
    @staticmethod
    def _sym(a, b):
        return [(a, b), (b, a)] if a != b else [(a, a)]

    def _gamma(self, c) -> list[np.ndarray]:
        """Per-term blocks of G̃ = Σ_k c_k G_k − c_σ G/σ² for c = (c_k..., c_σ)."""
        out = [-c[-1] / self.s2 * S for S in self.Sigma]
        for ck, (i, a, b) in zip(c[:-1], self.params):
            for x, y in self._sym(a, b):
                out[i][x, y] += ck
        return out

    def _Gk_dot(self, k, F) -> np.ndarray:
        """G_k F for the k-th variance parameter and F of shape (q, p)."""
        i, a, b = self.params[k]
        idx = self._term_index(i)
        out = np.zeros_like(F)
        for x, y in self._sym(a, b):
            out[idx[:, x]] += F[idx[:, y]]
        return out

    @functools.cached_property
    def K(self) -> np.ndarray:
        """Z'V⁻¹X = (Z'WX − AΛM⁻¹Λ'Z'WX)/σ²."""
        return (self.AX - self.tb.A_dot(self.LxX)) / self.s2

    @functools.cached_property
    def F(self) -> np.ndarray:
        if not self.design.p:
            return np.zeros((self.q, 0))
        return self.K @ np.linalg.cholesky(self.s2 * self.Qinv)

    @functools.cached_property
    def info(self) -> np.ndarray:
        """Expected REML (or ML) information of (Σ entries..., σ²) (docs/formulas.md §9.1)."""
        d, s2, tb = self.design, self.s2, self.tb
        F = self.F if self.fit.reml else self.F[:, :0]
        dof = d.N - d.p if self.fit.reml else d.N
        Hs12, Hs22 = tb.Hs_blocks()
        q1 = self.q1
        slot_cache, ip_cache = {}, {}

        def slot(i, a):
            """(global indices over the levels of term i's effect a, its column in block 1 or None)."""
            if (i, a) not in slot_cache:
                idx = self._term_index(i)[:, a]
                col = idx[0] % d.k1 if i in d.block1 else None
                slot_cache[i, a] = (idx, col)
            return slot_cache[i, a]

        def block(s, t):
            """σ²H on the rows of slot s and the columns of slot t (not both in block 1)."""
            (i1, c1), (i2, c2) = slot(*s), slot(*t)
            if c1 is not None:
                return Hs12[np.ix_(i1, i2 - q1)]
            if c2 is not None:
                return Hs12[np.ix_(i2, i1 - q1)].T
            return Hs22[np.ix_(i1 - q1, i2 - q1)]

        def level_diag(s, t):
            """σ²H[(j, s), (j, t)] over the levels j of one term."""
            (i1, c1), (i2, c2) = slot(*s), slot(*t)
            if c1 is not None:
                return tb.Hb11[:, c1, c2] - rowdot(tb.W1Si[i1], tb.W1[i2])
            return Hs22[i1 - q1, i2 - q1]

        def ip(s1, s2_, s3, s4):
            """Σ_{j,j'} σ²H[(j,s1),(j',s2)] σ²H[(j,s3),(j',s4)] (terms of s1, s3 and of s2, s4 equal)."""
            key = (s1, s2_, s3, s4)
            if key in ip_cache:
                return ip_cache[key]
            (i1, c1), (i2, c2), (i3, c3), (i4, c4) = (slot(*s) for s in key)
            if c1 is not None and c2 is not None:  # both in block 1: level-diagonal H_b + q₂-rank part
                h12, h34 = tb.Hb11[:, c1, c2], tb.Hb11[:, c3, c4]
                W1, W1Si, Si = tb.W1, tb.W1Si, tb.Si
                G13 = (W1[i1].T @ W1[i3]).toarray()
                G42 = (W1[i4].T @ W1[i2]).toarray()
                val = (h12 @ h34 - h12 @ rowdot(W1Si[i3], W1[i4]) - h34 @ rowdot(W1Si[i1], W1[i2])
                       + float(np.sum((Si @ G13) * (Si @ G42).T)))
            else:
                val = float(np.sum(block(s1, s2_) * block(s3, s4)))
            ip_cache[key] = val
            return val

        m = len(self.params)
        GF = [self._Gk_dot(k, F) for k in range(m)]
        HGF = [tb.Hs_dot(g) / s2 for g in GF]
        FGF = [F.T @ g for g in GF]
        T1 = np.zeros(m)
        T2 = np.zeros((m, m))
        for k, (i, a, b) in enumerate(self.params):
            T1[k] = sum(float(np.sum(level_diag((i, y), (i, x)))) for x, y in self._sym(a, b)) / s2
            T1[k] -= float(np.trace(FGF[k]))
            for l in range(k, m):
                i2, c, e = self.params[l]
                t = sum(ip((i, y), (i2, u), (i, x), (i2, v)) for x, y in self._sym(a, b) for u, v in self._sym(c, e))
                T2[k, l] = T2[l, k] = (t / s2**2 - 2 * float(np.sum(GF[k] * HGF[l]))
                                       + float(np.sum(FGF[k] * FGF[l].T)))
        psi = self.psi
        info = np.zeros((m + 1, m + 1))
        info[:m, :m] = 0.5 * T2
        info[:m, m] = info[m, :m] = 0.5 / s2 * (T1 - T2 @ psi)
        info[m, m] = 0.5 / s2**2 * (dof - 2 * T1 @ psi + psi @ T2 @ psi)
        return info

    @functools.cached_property
    def info_inv(self) -> np.ndarray:
        return np.linalg.pinv(self.info)

    @functools.cached_property
    def directions(self) -> list[dict]:
        """Pieces of (I − GH)G_k for each Σ-entry parameter k (bayescred/lmm/blockmatrix.py)."""
        m = len(self.params)
        with _heavy():
            return [self.tb.direction(self._gamma(np.eye(m + 1)[k])) for k in range(m)]

    @functools.cached_property
    def Omega(self) -> np.ndarray:
        """I⁻¹ on the Σ-entry directions: the σ² direction is −Σ_k ψ_k G_k/σ² (module docstring)."""
        m = len(self.params)
        J = np.vstack([np.eye(m), -self.psi[None] / self.s2])
        return J.T @ self.info_inv @ J

    @functools.cached_property
    def g3(self) -> np.ndarray:
        """g₃ of every random effect: Σ_kl Ω_kl diag((I − GH)G_k H G_l(I − HG))."""
        with _heavy():
            return self.tb.g3_diag(self.directions, self.Omega) / self.s2

    @functools.cached_property
    def bias(self) -> tuple[dict, float] | None:
        """For ML θ̂ the MSE estimator adds −b_ML'∇g₁ (docs/formulas.md §9.1; Datta & Lahiri 2000):
        b_ML = −½ I⁻¹ col_k tr[(X'V⁻¹X)⁻¹ X'V⁻¹V_kV⁻¹X]; b'∇g₁ = m'(I − GH)G̃_b(I − HG)m + b_σ m'Cm
        with G̃_b = Σ_k b_k G_k − b_σG/σ² and C = ΛM⁻¹Λ' (module docstring). Returns
        (pieces of (I − GH)G̃_b, b_σ), None for REML."""
        if self.fit.reml:
            return None
        s2, K = self.s2, self.K
        XVX_inv = s2 * self.Qinv
        KGK = [K.T @ self._Gk_dot(k, K) for k in range(len(self.params))]
        t = [float(np.sum(XVX_inv * A)) for A in KGK]
        KGallK = sum((p * A for p, A in zip(self.psi, KGK)), np.zeros((self.design.p,) * 2))
        t.append(float(np.sum(XVX_inv * (self.fit._sol.Qxx / s2 - KGallK))) / s2)
        b = -0.5 * self.info_inv @ np.array(t)
        with _heavy():
            return self.tb.direction(self._gamma(b)), float(b[-1])

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
        with _heavy():
            return self._ranef_measures(measures)

    def _ranef_measures(self, measures):
        s2 = self.s2
        var = {}
        cdiag = self.tb.cond_diag()
        g1 = s2 * cdiag
        var["cond_sd"] = g1
        if "pev_sd" in measures or "mse_sd" in measures:
            g2 = s2 * np.einsum("ap,pq,aq->a", self.LxX, self.Qinv, self.LxX)
            var["pev_sd"] = g1 + g2
            if "mse_sd" in measures:
                bias = 0.0
                if self.bias is not None:
                    kb, b_sigma = self.bias
                    bias = self.tb.sandwich_diag(kb) + b_sigma * cdiag
                var["mse_sd"] = g1 + g2 + 2 * self.g3 - bias
        out = {}
        for name in measures:
            sd = np.sqrt(np.maximum(var[name], 0))
            out[name] = [sd[self._term_index(i)] for i in range(len(self.design.terms))]
        return out

    def _target(self, m_entries):
        """The random-effect part m of a target as a q-vector, or None."""
        if not m_entries:
            return None
        e = np.zeros(self.q)
        for i, lev, ef, v in m_entries:
            e[self.pos(i, lev, ef)] += v
        return e

    def components(self, l, m_entries):
        """g₁, g₂, g₃ of the target l'β + m'u; ``m_entries`` = [(term, level, effect, value)]."""
        e = self._target(m_entries)
        l = np.asarray(l, float)
        if e is None:
            g1, g3, a_vec = 0.0, 0.0, np.zeros(self.design.p)
        else:
            with _heavy():
                g1 = self.s2 * float(e @ self.tb.C_dot(e[:, None])[:, 0])
                a_vec = self.LxX.T @ e
                V = np.column_stack([self.tb.K_T_dot(k, e) for k in self.directions])
                g3 = float(np.sum(self.Omega * (V.T @ self.tb.Hs_dot(V)))) / self.s2
        dvec = l - a_vec
        g2 = float(self.s2 * dvec @ self.Qinv @ dvec) if self.design.p else 0.0
        return g1, g2, g3

    def ml_bias(self, m_entries) -> float:
        """b_ML'∇g₁ of the target (0 for REML fits)."""
        e = self._target(m_entries)
        if self.bias is None or e is None:
            return 0.0
        kb, b_sigma = self.bias
        with _heavy():
            Ce = self.tb.C_dot(e[:, None])[:, 0]
            Re = e - self.tb.A_dot(Ce[:, None])[:, 0]  # (I − HG)m = (I − AC)m
            return float(self.tb.K_T_dot(kb, e) @ Re) + b_sigma * float(e @ Ce)

    def _targets(self, newdata):
        """Fixed design rows, per-term (X, codes) and offsets of the rows of newdata."""
        fit = self.fit
        data = _to_pandas(fit._data if newdata is None else newdata)
        X = fit._fixed.transform(data)
        zs = [t.design_for(data) for t in self.design.terms]
        off = fit._fixed.offset_for(data)
        if isinstance(fit._offset_name, str) and fit._offset_name in data.columns:
            off += data[fit._offset_name].to_numpy(dtype=float)
        return data, X, zs, off

    def predict(self, newdata=None, bootstrap=None, seed=None) -> pd.DataFrame:
        with _heavy():
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
