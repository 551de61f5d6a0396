"""The linear-algebra paths of the profiled criterion agree: dense Schur complement of the
factors after the largest (block-eliminated) one, and the general sparse LU used when that
complement would be too large. (The one-factor block path is checked against dense
Henderson equations in test_lmm_uncertainty.py.)"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.lmm import fit as engine


def _data(seed=8):
    rng = np.random.default_rng(seed)
    n = 400
    a, b, c = rng.integers(0, 30, n), rng.integers(0, 7, n), rng.integers(0, 4, n)
    x = rng.normal(size=n)
    y = 1 + x + rng.normal(0, 1, 30)[a] + rng.normal(0, 0.5, 30)[a] * x + rng.normal(0, 0.7, 7)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "c": c, "w": rng.uniform(0.5, 2, n)})


@pytest.mark.parametrize("form", ["y ~ x + (1 + x|a) + (1|b)", "y ~ x + (1|a) + (1|b) + (1|c)",
                                  "y ~ x + (1|b/c)"])
def test_sparse_lu_path_equals_schur_and_block_paths(form, monkeypatch):
    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = bc.lmm(form, data, weights="w")
        monkeypatch.setattr(engine, "SCHUR_MAX", -1)  # every multi-factor model goes sparse
        alt = bc.lmm(form, data, weights="w")
    assert alt._design.sparse and not ref._design.sparse
    assert alt.criterion == pytest.approx(ref.criterion, rel=1e-10)
    th = ref._sol.theta
    assert alt._design.deviance(th, True) == pytest.approx(ref._design.deviance(th, True), rel=1e-12)
    np.testing.assert_allclose(alt.fixef, ref.fixef, rtol=1e-6)
    np.testing.assert_allclose(alt.varcorr.vcov, ref.varcorr.vcov, rtol=1e-5)
    for m1, m2 in zip(alt._modes, ref._modes):
        np.testing.assert_allclose(m1, m2, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_criterion_equals_explicit_gaussian_formula(method):
    """FORMULAS §8.4: d_REML = log|V| + log|X'V⁻¹X| + r'V⁻¹r + (n − p) log 2π and
    d_ML = log|V| + r'V⁻¹r + n log 2π (with Σ log w inside log|V|), at the estimates and at
    an arbitrary θ, for a crossed model with weights and a random slope."""
    data = _data(seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm("y ~ x + (1 + x|a) + (1|b)", data, weights="w", method=method)
    for g in (fit, fit.at(fit.theta * np.array([0.7, 0.3, 1.4, 0.5]))):
        d = g._design
        X, y, w = d.X, data.y.to_numpy(), data.w.to_numpy()
        Zc, Gb = [], []
        for t, S in zip(d.terms, g.covariances):
            for lev in range(t.n_levels):
                for e in range(t.k):
                    Zc.append(t.X[:, e] * (t.codes == lev))
            Gb.append(np.kron(np.eye(t.n_levels), S))
        from scipy.linalg import block_diag

        Z, G = np.column_stack(Zc), block_diag(*Gb)
        V = Z @ G @ Z.T + g.sigma2 * np.diag(1 / w)
        Vi = np.linalg.inv(V)
        beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
        r = y - X @ beta
        n, p = X.shape
        dev = np.linalg.slogdet(V)[1] + r @ Vi @ r
        if method == "REML":
            dev += np.linalg.slogdet(X.T @ Vi @ X)[1] + (n - p) * np.log(2 * np.pi)
        else:
            dev += n * np.log(2 * np.pi)
        assert g.criterion == pytest.approx(dev, rel=1e-10)
        np.testing.assert_allclose(g.fixef, beta, rtol=1e-8)


def test_weight_scale_and_row_order_invariance():
    """w -> c·w leaves the criterion and variance components unchanged and scales σ² by c
    (FORMULAS §8.4); permuting rows changes nothing."""
    data = _data(seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bc.lmm("y ~ x + (1|a) + (1|b)", data, weights="w")
        b = bc.lmm("y ~ x + (1|a) + (1|b)", data.assign(w=data.w * 1e4), weights="w")
        c = bc.lmm("y ~ x + (1|a) + (1|b)", data.sample(frac=1.0, random_state=1), weights="w")
    assert b.criterion == pytest.approx(a.criterion, rel=1e-9)
    assert b.sigma2 == pytest.approx(1e4 * a.sigma2, rel=1e-6)
    np.testing.assert_allclose(b.varcorr.vcov[:2], a.varcorr.vcov[:2], rtol=1e-6)
    assert c.criterion == pytest.approx(a.criterion, rel=1e-10)
    np.testing.assert_allclose(c.varcorr.vcov, a.varcorr.vcov, rtol=1e-6)
