"""The three uncertainty measures of the EBLUPs against independent dense computations.

(i) cond_sd: Var(u | y) = (Z'R⁻¹Z + G⁻¹)⁻¹ (lme4 condVar; FORMULAS §9 row 1);
(ii) pev_sd: Henderson's mixed-model equations, C²² of their inverse (FORMULAS §8.3);
(iii) mse_sd: g₁ + g₂ + 2g₃ with g₃ = tr[(∂b'/∂θ) V (∂b'/∂θ)' I_R⁻¹], b' = m'GZ'V⁻¹, here
     by central differences of b' on dense matrices and I_R = ½tr(P V_k P V_l) (FORMULAS
     §9.1), and against a parametric bootstrap (Monte Carlo error bound).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import BoundaryWarning


def _fit(form, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryWarning)
        return bc.lmm(form, data, **kw)


def _data(seed=3, n_a=12, n_b=5, reps=3):
    rng = np.random.default_rng(seed)
    rows = n_a * n_b * reps
    a, b = rng.integers(0, n_a, rows), rng.integers(0, n_b, rows)
    x = rng.normal(size=rows)
    w = rng.uniform(0.5, 2.0, rows)
    y = (1 + 0.5 * x + rng.normal(0, 1, n_a)[a] + rng.normal(0, 0.3, n_a)[a] * x
         + rng.normal(0, 0.6, n_b)[b] + rng.normal(size=rows) / np.sqrt(w))
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": [f"b{v}" for v in b], "w": w})


def _dense(fit):
    """Dense X, Z (lme4 term order, level-major), G, R, and the variance parameters."""
    d = fit._design
    X = d.X
    cols, blocks, params = [], [], []
    for t, S in zip(d.terms, fit.covariances):
        for lev in range(t.n_levels):
            for e in range(t.k):
                cols.append(t.X[:, e] * (t.codes == lev))
        blocks.append(np.kron(np.eye(t.n_levels), S))
    Z = np.column_stack(cols)
    from scipy.linalg import block_diag

    G = block_diag(*blocks)
    w = d.w * d.scale
    R = fit.sigma2 * np.diag(1 / w)
    return X, Z, G, R, w


DESIGNS = [
    ("y ~ x + (1|a) + (1|b)", {"weights": "w"}),      # crossed: dense q-space path
    ("y ~ x + (1 + x|a)", {"weights": "w"}),          # one factor, random slope: block path
    ("y ~ x + (1|a) + (0 + x|a)", {}),                # '||'-type diagonal, one factor
    ("y ~ x + (1|a/b)", {}),                          # nested: dense path
]


@pytest.mark.parametrize("form,kw", DESIGNS)
def test_condvar_and_henderson_pev_match_dense(form, kw):
    data = _data()
    fit = _fit(form, data, **kw)
    X, Z, G, R, w = _dense(fit)
    Ri = np.linalg.inv(R)
    Gi = np.linalg.pinv(G)
    # (i) condVar = (Z'R⁻¹Z + G⁻¹)⁻¹ = G − GZ'V⁻¹ZG (use the latter: G may be singular)
    V = Z @ G @ Z.T + R
    Vi = np.linalg.inv(V)
    cond = G - G @ Z.T @ Vi @ Z @ G
    # (ii) Henderson MME: C = [[X'R⁻¹X, X'R⁻¹Z], [Z'R⁻¹X, Z'R⁻¹Z + G⁻¹]]⁻¹, PEV(u) = C²²
    mme = np.block([[X.T @ Ri @ X, X.T @ Ri @ Z], [Z.T @ Ri @ X, Z.T @ Ri @ Z + Gi]])
    C = np.linalg.inv(mme)
    pev = C[X.shape[1]:, X.shape[1]:]
    r = fit.ranef()
    np.testing.assert_allclose(r.cond_sd**2, np.diag(cond), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(r.pev_sd**2, np.diag(pev), rtol=1e-6, atol=1e-10)
    # BLUP from the dense equations equals the conditional modes
    sol = C @ np.concatenate([X.T @ Ri @ (data.y.to_numpy()), Z.T @ Ri @ data.y.to_numpy()])
    np.testing.assert_allclose(r.value, sol[X.shape[1]:], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.fixef, sol[: X.shape[1]], rtol=1e-6)


def _dense_g3(fit):
    """g₃ of every random effect by central differences of b' = m'GZ'V⁻¹ on dense
    matrices, with the REML information ½tr(P V_k P V_l) (FORMULAS §9.1)."""
    X, Z, G, R, w = _dense(fit)
    d = fit._design
    # variance parameters: each Σ_i entry (a ≥ b), then σ²
    comps = []
    for ti, t in enumerate(d.terms):
        for j in range(t.k):
            for i in range(j, t.k):
                E = np.zeros((t.k, t.k))
                E[i, j] = E[j, i] = 1.0
                comps.append((ti, E))

    def G_of(par):
        from scipy.linalg import block_diag

        Ss = [S.copy() for S in fit.covariances]
        for (ti, E), v in zip(comps, par[:-1]):
            Ss[ti] = Ss[ti] + v * E
        return block_diag(*[np.kron(np.eye(t.n_levels), S) for t, S in zip(d.terms, Ss)])

    def B(par):
        Gp = G_of(par)
        V = Z @ Gp @ Z.T + (fit.sigma2 + par[-1]) * np.diag(1 / w)
        return Gp @ Z.T @ np.linalg.inv(V)

    m = len(comps) + 1
    V = Z @ G @ Z.T + R
    Vi = np.linalg.inv(V)
    P = Vi - Vi @ X @ np.linalg.inv(X.T @ Vi @ X) @ X.T @ Vi if fit.reml else Vi  # ML: V⁻¹
    Vk = [Z @ (G_of(np.eye(m)[k]) - G) @ Z.T for k in range(m - 1)] + [np.diag(1 / w)]
    info = np.array([[0.5 * np.trace(P @ Vk[k] @ P @ Vk[l]) for l in range(m)] for k in range(m)])
    Iinv = np.linalg.inv(info)
    dB = []
    for k in range(m):
        h = 1e-5 * max(abs(G).max(), fit.sigma2) * (1 if k < m - 1 else fit.sigma2 / max(abs(G).max(), 1e-12))
        e = np.zeros(m)
        e[k] = h
        dB.append((B(e) - B(-e)) / (2 * h))
    g3 = np.zeros(Z.shape[1])
    for k in range(m):
        for l in range(m):
            g3 += Iinv[k, l] * np.einsum("in,nm,im->i", dB[k], V, dB[l])
    if fit.reml:
        return g3, np.zeros_like(g3)
    # ML: b_ML = −½ I⁻¹ col tr[(X'V⁻¹X)⁻¹X'V⁻¹V_kV⁻¹X]; ∇g₁ by central differences
    XVXi = np.linalg.inv(X.T @ Vi @ X)
    t = np.array([np.trace(XVXi @ X.T @ Vi @ Vk[k] @ Vi @ X) for k in range(m)])
    b = -0.5 * Iinv @ t

    def g1(par):
        Gp = G_of(par)
        Vp = Z @ Gp @ Z.T + (fit.sigma2 + par[-1]) * np.diag(1 / w)
        return np.diag(Gp - Gp @ Z.T @ np.linalg.solve(Vp, Z @ Gp))

    grad = []
    for k in range(m):
        h = 1e-5 * (max(abs(G).max(), 1e-12) if k < m - 1 else fit.sigma2)
        e = np.zeros(m)
        e[k] = h
        grad.append((g1(e) - g1(-e)) / (2 * h))
    return g3, np.array(grad).T @ b


@pytest.mark.parametrize("form,kw", DESIGNS[:3] + [(DESIGNS[0][0], {"weights": "w", "method": "ML"}),
                                                    (DESIGNS[1][0], {"method": "ML"})])
def test_g3_matches_dense_numerical_derivative(form, kw):
    """REML: mse² − pev² = 2g₃; ML: 2g₃ − b_ML'∇g₁ with the ML information (FORMULAS §9.1)."""
    data = _data(seed=5, n_a=8, n_b=4, reps=3)
    fit = _fit(form, data, **kw)
    r = fit.ranef()
    g3, bias = _dense_g3(fit)
    np.testing.assert_allclose(r.mse_sd**2 - r.pev_sd**2, 2 * g3 - bias, rtol=2e-3, atol=1e-9)


@pytest.mark.parametrize("form,kw", DESIGNS + [(f, {**k, "method": "ML"}) for f, k in DESIGNS])
def test_measures_are_ordered(form, kw):
    fit = _fit(form, _data(seed=11), **kw)
    r = fit.ranef()
    assert (r.cond_sd <= r.pev_sd + 1e-12).all()
    assert (r.pev_sd <= r.mse_sd + 1e-12).all()
    p = fit.predict()
    assert (p.cond_sd <= p.pev_sd + 1e-12).all() and (p.pev_sd <= p.mse_sd + 1e-12).all()


def test_g3_against_parametric_bootstrap():
    """Bootstrap MSE at θ̂ ≈ g₁ + g₂ + g₃ (Kackar–Harville; the 2g₃ of mse_sd corrects the
    bias of g₁(θ̂) and is not what a bootstrap at θ̂ estimates). Small one-way design,
    8 groups of 5; the bound is 4 Monte Carlo standard errors of the averaged MSE."""
    rng = np.random.default_rng(2024)
    J, n = 8, 5
    g = np.repeat(np.arange(J), n)
    y = 10 + rng.normal(0, 1.0, J)[g] + rng.normal(0, 1.5, J * n)
    data = pd.DataFrame({"g": g, "y": y})
    fit = _fit("y ~ 1 + (1|g)", data)
    r = fit.ranef(bootstrap=400, seed=99)
    unc = fit._measures()
    comps = np.array([unc.components([0.0], [(0, j, 0, 1.0)]) for j in range(J)])
    kh = comps.sum(axis=1)  # g1 + g2 + g3 at θ̂
    boot = r.boot_sd.to_numpy() ** 2
    # Monte Carlo SE of the group-averaged bootstrap MSE (squared errors ~ scaled χ²₁):
    mcse = np.sqrt(2.0 / (400 * J)) * boot.mean() * 2  # ×2 for correlation across groups
    assert abs(boot.mean() - kh.mean()) <= 4 * mcse, (boot.mean(), kh.mean(), mcse)
    assert boot.mean() > (comps[:, 0] + comps[:, 1]).mean()  # θ̂ uncertainty is real
    # the same seed gives the same numbers
    again = fit.ranef(bootstrap=400, seed=99).boot_sd
    np.testing.assert_array_equal(again, r.boot_sd)


def test_predict_new_level_carries_the_between_variance():
    data = _data(seed=4)
    fit = _fit("y ~ x + (1|a)", data)
    new = pd.DataFrame({"x": [0.0], "a": [999]})
    p = fit.predict(new, allow_new_levels=True)
    tau2 = fit.varcorr.vcov[0]
    assert p.premium[0] == pytest.approx(fit.fixef["(Intercept)"])
    assert p.cond_sd[0] ** 2 == pytest.approx(tau2)
    assert p.pev_sd[0] ** 2 == pytest.approx(tau2 + fit.vcov.iloc[0, 0])


def test_ranef_algebra_runs_in_small_pages_and_restores_the_hint(monkeypatch):
    """ranef() writes its arrays with numpy's huge-page hint off (bayescred._pages: on a
    fragmented machine InstEval's ranef() took 7.0-7.5 s with it, 2.3 s without) and leaves
    numpy's switch as it found it, on or off."""
    from numpy._core.multiarray import _set_madvise_hugepage

    from bayescred.lmm import blockmatrix

    def hint():
        now = _set_madvise_hugepage(True)
        _set_madvise_hugepage(now)
        return now

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 4)
    data = pd.DataFrame({"g": g, "y": rng.normal(size=120) + rng.normal(size=30)[g]})
    seen, build = [], blockmatrix.TwoBlock.__init__

    def recording(self, *args, **kwargs):
        seen.append(hint())
        return build(self, *args, **kwargs)

    monkeypatch.setattr(blockmatrix.TwoBlock, "__init__", recording)
    before = hint()
    try:
        for start in (True, False):
            _set_madvise_hugepage(start)
            bc.lmm("y ~ 1 + (1 | g)", data).ranef()
            assert hint() is start
    finally:
        _set_madvise_hugepage(before)
    assert seen == [False, False]
