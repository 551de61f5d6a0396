"""Uncertainty measures from the block (sparse-factor) algebra equal the dense q×q algebra.

(a) the two-block factor's operators (selected inverse, σ²H, (I − GH)G̃ and its quadratic
    forms) equal numpy on the dense matrices;
(b) cond_sd, pev_sd and mse_sd of ``ranef()`` equal a dense implementation of FORMULAS §9
    (G − GHG; + d'(X'V⁻¹X)⁻¹d; + 2g₃ with the REML/ML information and, for ML, the bias
    term) to 1e-10 on crossed, nested and one-factor designs small enough for dense;
(c) the Jewell hierarchical portfolio, 6,000 risks in 50 sectors, gets every measure
    (it raised MemoryError with the dense algebra) and ``bayescred lmm --json`` prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag

import bayescred as bc
from bayescred.lmm.fit import tri_index


def _dense_pieces(fit):
    """Dense Λ, A = Z'WZ, C = ΛM⁻¹Λ' and σ²H = σ²Z'V⁻¹Z of a fit, in the two-block order."""
    d, sol = fit._design, fit._sol
    unc = fit._measures()
    q = unc.q
    cols, lam = np.zeros((d.n_rows, q)), np.zeros((q, q))
    for i, (t, T) in enumerate(zip(d.terms, sol.Ts)):
        idx = unc._term_index(i)
        for lev in range(t.n_levels):
            lam[np.ix_(idx[lev], idx[lev])] = T
            for e in range(t.k):
                cols[:, idx[lev, e]] = t.X[:, e] * (t.codes == lev)
    A = cols.T @ (cols * d.w[:, None])
    C = lam @ np.linalg.solve(lam.T @ A @ lam + np.eye(q), lam.T)
    return lam, A, C, A - A @ C @ A


@pytest.mark.parametrize("form", ["y ~ x + (1|a) + (1|b)", "y ~ x + (1 + x|a) + (1|b)", "y ~ x + (1|b/c)",
                                  "y ~ x + (1 + x|a)", "y ~ x + (1|a) + (x|b) + (1|c)"])
def test_two_block_factor_equals_dense(form):
    """Selected inversion and the sparse + rank-q₂ operators of TwoBlock equal dense algebra."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, _small(), weights="w")
    unc = fit._measures()
    tb, q, q1 = unc.tb, unc.q, unc.q1
    lam, A, C, Hs = _dense_pieces(fit)
    rng = np.random.default_rng(0)
    V = rng.normal(size=(q, 3))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.cond_diag(), np.diag(C), **tol)
    np.testing.assert_allclose(tb.C_dot(V), C @ V, **tol)
    np.testing.assert_allclose(tb.A_dot(V), A @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.Hs_dot(V), Hs @ V, rtol=1e-10, atol=1e-10 * np.abs(Hs).max())
    H12, H22 = tb.Hs_blocks()
    np.testing.assert_allclose(H12, Hs[:q1, q1:], rtol=1e-10, atol=1e-10 * np.abs(Hs).max())
    np.testing.assert_allclose(H22, Hs[q1:, q1:], rtol=1e-10, atol=1e-10 * np.abs(Hs).max())
    # a direction G̃ with random per-term blocks: K = (I − GH)G̃ = (I − CA)G̃
    gam = [(lambda B: B + B.T)(rng.normal(size=(t.k, t.k))) for t in fit._design.terms]
    Gt = np.zeros((q, q))
    for i, t in enumerate(fit._design.terms):
        idx = unc._term_index(i)
        for lev in range(t.n_levels):
            Gt[np.ix_(idx[lev], idx[lev])] = gam[i]
    K = (np.eye(q) - C @ A) @ Gt
    k = tb.direction(gam)
    e = rng.normal(size=q)
    np.testing.assert_allclose(tb.K_T_dot(k, e), K.T @ e, rtol=1e-10, atol=1e-10 * np.abs(K).max())
    np.testing.assert_allclose(tb.sandwich_diag(k), np.diag(K @ (np.eye(q) - A @ C)), rtol=1e-10,
                               atol=1e-10 * np.abs(K).max())
    Omega = np.array([[0.7]])
    np.testing.assert_allclose(tb.g3_diag([k], Omega), 0.7 * np.diag(K @ Hs @ K.T), rtol=1e-10,
                               atol=1e-10 * np.abs(K @ Hs @ K.T).max())
    # several directions (one per term, one on every term) mixed by a symmetric Ω with zeros,
    # as the MSE's g₃ mixes them: Σ_kl Ω_kl diag(K_k σ²H K_l')
    gams = [[g if j == i else np.zeros_like(g) for j, g in enumerate(gam)] for i in range(len(gam))] + [gam]
    Ks = []
    for g in gams:
        Gt = np.zeros((q, q))
        for i, t in enumerate(fit._design.terms):
            idx = unc._term_index(i)
            for lev in range(t.n_levels):
                Gt[np.ix_(idx[lev], idx[lev])] = g[i]
        Ks.append((np.eye(q) - C @ A) @ Gt)
    m = len(gams)
    Omega = rng.normal(size=(m, m))
    Omega = Omega + Omega.T
    Omega[0, -1] = Omega[-1, 0] = 0.0
    want = sum(Omega[a, b] * np.diag(Ks[a] @ Hs @ Ks[b].T) for a in range(m) for b in range(m))
    scale = max(np.abs(Ka @ Hs @ Ka.T).max() for Ka in Ks)
    np.testing.assert_allclose(tb.g3_diag([tb.direction(g) for g in gams], Omega), want, rtol=1e-9,
                               atol=1e-10 * scale)


def test_sampled_diag_equals_dense():
    import scipy.sparse as sps

    from bayescred.lmm.blockmatrix import sampled_diag

    rng = np.random.default_rng(1)
    A = sps.random(40, 15, density=0.2, random_state=2, format="csr")
    B = sps.random(40, 15, density=0.3, random_state=3, format="csr")
    M = rng.normal(size=(15, 15))
    np.testing.assert_allclose(sampled_diag(A, M, B), np.diag(A.toarray() @ M @ B.toarray().T), rtol=1e-12,
                               atol=1e-14)


def _dense_measures(fit):
    """cond, pev and mse variances of every random effect by dense FORMULAS §9."""
    d, sol = fit._design, fit._sol
    s2 = sol.sigma2
    Zc, Gb, Gk_list = [], [], []
    for t, T in zip(d.terms, sol.Ts):
        Zc.append(np.column_stack([t.X[:, e] * (t.codes == lev) for lev in range(t.n_levels) for e in range(t.k)]))
        Gb.append(np.kron(np.eye(t.n_levels), s2 * T @ T.T))
    Z, G = np.hstack(Zc), block_diag(*Gb)
    sizes = [t.n_levels * t.k for t in d.terms]
    start = np.concatenate([[0], np.cumsum(sizes)])
    for i, t in enumerate(d.terms):
        for a, b in tri_index(t.k):
            E = np.zeros((t.k, t.k))
            E[a, b] = E[b, a] = 1.0
            Gk = np.zeros_like(G)
            Gk[start[i] : start[i + 1], start[i] : start[i + 1]] = np.kron(np.eye(t.n_levels), E)
            Gk_list.append(Gk)
    X = d.X
    Winv = np.diag(1 / d.w)
    V = Z @ G @ Z.T + s2 * Winv
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    Pm = P if fit.reml else Vi
    Vk = [Z @ Gk @ Z.T for Gk in Gk_list] + [Winv]
    info = np.array([[0.5 * np.trace(Pm @ A @ Pm @ B) for B in Vk] for A in Vk])
    Iinv = np.linalg.pinv(info)
    B = G @ Z.T @ Vi
    dB = [(Gk - G @ Z.T @ Vi @ Z @ Gk) @ Z.T @ Vi for Gk in Gk_list] + [-B @ Winv @ Vi]
    g1 = np.diag(G - B @ Z @ G)
    Dm = -X.T @ Vi @ Z @ G  # columns d = l − X'V⁻¹ZGm with l = 0 (internal units = user units for u)
    g2 = np.einsum("pa,pq,qa->a", Dm, np.linalg.inv(XVX), Dm)
    g3 = sum(Iinv[k, l] * np.diag(dB[k] @ V @ dB[l].T) for k in range(len(Vk)) for l in range(len(Vk)))
    mse = g1 + g2 + 2 * g3
    if not fit.reml:
        t = [np.trace(np.linalg.solve(XVX, X.T @ Vi @ Vkk @ Vi @ X)) for Vkk in Vk]
        bml = -0.5 * Iinv @ np.array(t)
        grads = [np.diag((np.eye(len(G)) - G @ Z.T @ Vi @ Z) @ Gk @ (np.eye(len(G)) - Z.T @ Vi @ Z @ G))
                 for Gk in Gk_list]
        H = Z.T @ Vi @ Z
        grads.append(np.diag(G @ (H - H @ G @ H) @ G) / s2)
        mse -= sum(b * g for b, g in zip(bml, grads))
    return g1, g1 + g2, mse


def _small(seed=4):
    rng = np.random.default_rng(seed)
    n = 150
    a, b, c = rng.integers(0, 18, n), rng.integers(0, 5, n), rng.integers(0, 3, n)
    x = rng.normal(size=n)
    y = 2 + x + rng.normal(0, 1, 18)[a] + rng.normal(0, 0.4, 18)[a] * x + rng.normal(0, 0.8, 5)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "c": c, "w": rng.uniform(0.5, 2, n)})


@pytest.mark.parametrize("form", ["y ~ x + (1|a) + (1|b)", "y ~ x + (1 + x|a) + (1|b)", "y ~ x + (1|b/c)",
                                  "y ~ x + (1 + x|a)", "y ~ x + (1|a) + (x|b) + (1|c)"])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_block_measures_equal_dense_formulas(form, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, _small(), weights="w", method=method)
    r = fit.ranef()
    cond, pev, mse = _dense_measures(fit)
    # dense order is term by term, level by level, effect by effect, as ranef's rows
    np.testing.assert_allclose(r.cond_sd ** 2, cond, rtol=1e-10)
    np.testing.assert_allclose(r.pev_sd ** 2, pev, rtol=1e-10)
    np.testing.assert_allclose(r.mse_sd ** 2, mse, rtol=1e-9)


@pytest.mark.parametrize("form", ["y ~ x + (1|a) + (1|b)", "y ~ x + (1 + x|a) + (1|b)"])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_measures_at_the_boundary_equal_dense_formulas(form, method):
    """A term with a zero variance (θ on its bound, Λ singular) changes nothing: the
    factor-based measures still equal the dense ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, _small(), weights="w", method=method)
        theta = fit.theta.copy()
        theta[-1] = 0.0  # the last term's variance on its bound
        if "1 + x" in form:
            theta[2] = 0.0  # and the slope of (1 + x | a) perfectly correlated with its intercept
        at = fit.at(theta)
    r = at.ranef()
    cond, pev, mse = _dense_measures(at)
    np.testing.assert_allclose(r.cond_sd ** 2, cond, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.pev_sd ** 2, pev, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.mse_sd ** 2, mse, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_target_components_equal_the_ranef_diagonal(method):
    """predict's per-target path (K'm, then m'KHK'm) equals the diagonal read by ranef()."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm("y ~ x + (1 + x|a) + (1|b)", _small(), weights="w", method=method)
    r = fit.ranef()
    unc = fit._measures()
    rows = []
    for i, t in enumerate(fit._design.terms):
        for lev in range(t.n_levels):
            for e in range(t.k):
                g1, g2, g3 = unc.components(np.zeros(fit._design.p), [(i, lev, e, 1.0)])
                rows.append((g1, g1 + g2, g1 + g2 + 2 * g3 - unc.ml_bias([(i, lev, e, 1.0)])))
    rows = np.array(rows)
    np.testing.assert_allclose(rows[:, 0], r.cond_sd ** 2, rtol=1e-10)
    np.testing.assert_allclose(rows[:, 1], r.pev_sd ** 2, rtol=1e-10)
    np.testing.assert_allclose(rows[:, 2], r.mse_sd ** 2, rtol=1e-9)


def test_measures_after_a_sparse_lu_fit(monkeypatch):
    """Designs whose remaining factors are too many for the dense Schur complement are
    fitted by sparse LU; their measures come from the same block algebra."""
    from bayescred.lmm import fit as engine

    ref = bc.lmm("y ~ x + (1|a) + (1|b)", _small(), weights="w").ranef()
    monkeypatch.setattr(engine, "SCHUR_MAX", -1)
    fit = bc.lmm("y ~ x + (1|a) + (1|b)", _small(), weights="w")
    assert fit._design.sparse
    r = fit.ranef()
    for col in ("cond_sd", "pev_sd", "mse_sd"):
        np.testing.assert_allclose(r[col], ref[col], rtol=1e-6)


def test_measures_can_be_asked_for_one_at_a_time():
    fit = bc.lmm("y ~ x + (1|a) + (1|b)", _small())
    full = fit.ranef()
    only = fit.ranef(measures=("cond_sd",))
    assert list(only.columns) == ["grp", "level", "term", "value", "cond_sd"]
    np.testing.assert_array_equal(only.cond_sd, full.cond_sd)
    with pytest.raises(bc.errors.ArgumentError, match="unknown ranef measure"):
        fit.ranef(measures=("posterior_sd",))


def _jewell(risks=6000, sectors=50, seed=1):
    rng = np.random.default_rng(seed)
    periods = rng.integers(1, 6, risks)
    risk = np.repeat(np.arange(risks), periods)
    sector = risk % sectors
    w = rng.uniform(0.5, 2, len(risk))
    sector_effect, risk_effect = rng.normal(0, 5, sectors), rng.normal(0, 8, risks)
    y = 100 + sector_effect[sector] + risk_effect[risk] + rng.normal(0, 10, len(risk)) / np.sqrt(w)
    return pd.DataFrame({"y": y, "sector": sector, "risk": risk, "w": w})


def test_jewell_6000_risks_conditional_sds_fast():
    fit = bc.lmm("y ~ 1 + (1 | sector/risk)", _jewell(), weights="w")
    t = time.perf_counter()
    r = fit.ranef(measures=("cond_sd",))
    elapsed = time.perf_counter() - t
    assert len(r) == 6050 and np.all(np.isfinite(r.cond_sd)) and np.all(r.cond_sd > 0)
    assert elapsed < 5.0  # lme4's ranef(condVar = TRUE): 0.5 s; here ~0.1-0.3 s


def test_jewell_6000_risks_every_measure_and_cli_json(tmp_path):
    import tracemalloc

    data = _jewell()
    fit = bc.lmm("y ~ 1 + (1 | sector/risk)", data, weights="w")
    tracemalloc.start()
    r = fit.ranef()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # memory linear in the effects: one dense 6,050² matrix is 293 MB
    assert np.all(np.isfinite(r[["cond_sd", "pev_sd", "mse_sd"]].to_numpy()))
    assert np.all(r.cond_sd <= r.pev_sd + 1e-12) and np.all(r.pev_sd <= r.mse_sd + 1e-12)
    csv = tmp_path / "jewell.csv"
    data.to_csv(csv, index=False)
    out = subprocess.run([sys.executable, "-m", "bayescred", "lmm", "y ~ 1 + (1 | sector/risk)", "--data", str(csv),
                          "--weights", "w", "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(json.loads(out.stdout)["ranef"]) == 6050
