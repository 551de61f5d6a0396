"""The off-diagonal block of a crossed design (bayescred.lmm.crossblock): the products summed
over the nonzeros of Z₁'WZ₂ (numba kernels, large designs) equal the dense BLAS products
(small designs), whatever the terms' sizes; S⁻¹ from its factor is the inverse, symmetric to
the last bit; the optimiser evaluates no gradient twice; big factorisations use BLAS's threads."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import bayescred as bc
from bayescred.lmm import fit as engine
from bayescred.lmm.crossblock import MIRROR_MIN, DenseCross, SparseCross, symmetric_inverse


def _lam2_right(rest):
    """XΛ₂ column block by column block, the definition (Λ₂ = bd(I ⊗ T_i))."""

    def right(X, Ts):
        out = np.zeros_like(X)
        for i, (o, n, k) in rest.items():
            for level in range(n):
                cols = slice(o + level * k, o + (level + 1) * k)
                out[:, cols] = X[:, cols] @ Ts[i]
        return out

    return right


@pytest.mark.parametrize("k1", [1, 2])
@pytest.mark.parametrize("rest", [{1: (0, 20, 1)}, {1: (0, 20, 1), 3: (20, 7, 2)}, {2: (0, 9, 3)}])
def test_sparse_products_equal_dense_products(k1, rest):
    rng = np.random.default_rng(k1 + len(rest))
    J = 50
    q2 = sum(n * k for _, n, k in rest.values())
    A12 = sp.random(J * k1, q2, density=0.15, random_state=rng, format="csr")
    sparse = SparseCross(A12, J, k1, rest)
    dense = DenseCross(A12, J, k1, _lam2_right(rest))
    P = rng.normal(size=(J, k1, k1))
    P = P @ np.swapaxes(P, 1, 2)
    A22 = rng.normal(size=(q2, q2))
    A22 = A22 + A22.T
    H = sparse.schur_rest(A22, P)
    np.testing.assert_allclose(H, dense.schur_rest(A22, P), rtol=0, atol=1e-12)
    assert np.array_equal(H, H.T)
    Ts = {i: np.tril(rng.normal(size=(k, k))) for i, (_, _, k) in rest.items()}
    Ts[0] = np.full((k1, k1), np.nan)  # the largest factor's term: never read by Λ₂
    Si = rng.normal(size=(q2, q2))
    Si = Si + Si.T
    for S in (Si, np.asfortranarray(Si)):
        np.testing.assert_allclose(sparse.level_quadratic(Ts, S), dense.level_quadratic(Ts, S), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [40, MIRROR_MIN + 20])
def test_symmetric_inverse_is_the_inverse(n):
    rng = np.random.default_rng(n)
    B = rng.normal(size=(n, n))
    S = B @ B.T + n * np.eye(n)
    Si = symmetric_inverse(np.linalg.cholesky(S).copy(order="F"))
    assert np.array_equal(Si, Si.T)
    np.testing.assert_allclose(Si @ S, np.eye(n), atol=1e-12)


def _crossed(n=5000, la=1000, lb=300, seed=4):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, la, n), rng.integers(0, lb, n)
    y = rng.normal(0, 1, la)[a] + rng.normal(0, 0.7, lb)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "a": a.astype(str), "b": b.astype(str)})


def test_large_crossed_design_runs_on_the_nonzeros_and_equals_the_dense_path(monkeypatch):
    data = _crossed()  # 1,000 x 300 levels: beyond SPARSE_CELLS
    sparse = bc.lmm("y ~ 1 + (1|a) + (1|b)", data)
    assert isinstance(sparse._design.cross, SparseCross)
    monkeypatch.setattr(engine, "SPARSE_CELLS", np.inf)
    dense = bc.lmm("y ~ 1 + (1|a) + (1|b)", data)
    assert isinstance(dense._design.cross, DenseCross)
    assert sparse.criterion == pytest.approx(dense.criterion, rel=1e-12)
    theta = dense._sol.theta * 1.3
    d1, g1 = dense._design.deviance_and_gradient(theta, True)
    d2, g2 = sparse._design.deviance_and_gradient(theta, True)
    assert d2 == pytest.approx(d1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-8, atol=1e-8 * np.abs(g1).max())


def test_no_gradient_is_evaluated_twice(monkeypatch):
    """The polish starts where L-BFGS-B stopped: its criterion and gradient there are reused."""
    data = _crossed(n=600, la=60, lb=20)
    fit = bc.lmm("y ~ 1 + (1|a) + (1|b)", data)
    calls = []
    solve = engine._solve

    def counting(design, theta, reml, gradient=False):
        calls.append((np.asarray(theta).tobytes(), gradient))
        return solve(design, theta, reml, gradient)

    monkeypatch.setattr(engine, "_solve", counting)
    engine.optimise(fit._design, True)
    with_gradient = [key for key, gradient in calls if gradient]
    assert len(with_gradient) == len(set(with_gradient))
    assert not {key for key, gradient in calls if not gradient} & set(with_gradient)


def test_large_schur_complements_use_blas_threads():
    controller = engine._blas_controller()
    if controller is None:
        pytest.skip("threadpoolctl finds no BLAS")

    def threads():
        return max(lib["num_threads"] for lib in controller.info())

    with engine._single_thread():
        assert threads() == 1
        with engine._threads_for(engine.THREADED_ORDER - 1):
            assert threads() == 1
        with engine._threads_for(engine.THREADED_ORDER):
            assert threads() == engine._blas_threads()
        assert threads() == 1
