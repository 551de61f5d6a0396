"""The analytic gradient of the profiled REML/ML criterion equals central finite differences
of the criterion on random designs: one factor, correlated random slopes, crossed, nested,
with precision weights, ML and REML, at arbitrary θ (not only at the optimum, where it is
~0), on both paths of bayescred.lmm.fit: M as one dense matrix (``_newton_derivatives``, which
also gives the exact Hessian) and the two-block elimination (``_gradient``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc

FORMULAS = [
    "y ~ x + (1|a)",
    "y ~ (1|a)",
    "y ~ x + (1 + x|a)",
    "y ~ x + z + (1 + x + z|a)",
    "y ~ x + (1 + x|a) + (1|b)",
    "y ~ x + (1|a) + (1 + x|b) + (1|c)",
    "y ~ x + (1|b/c)",
    "y ~ x + (1|a) + (0 + x|a) + (1|b:c)",
]


def _data(seed):
    rng = np.random.default_rng(seed)
    n = 240
    a, b, c = rng.integers(0, 20, n), rng.integers(0, 6, n), rng.integers(0, 3, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = (1 + x + rng.normal(0, 1, 20)[a] + rng.normal(0, 0.5, 20)[a] * x + rng.normal(0, 0.7, 6)[b]
         + rng.normal(0, 0.3, 3)[c] * x + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "a": a, "b": b, "c": c, "w": rng.uniform(0.3, 3, n)})


def _fd_gradient(design, theta, reml, h=1e-6):
    out = np.empty(len(theta))
    for k in range(len(theta)):
        e = np.zeros(len(theta))
        e[k] = h
        out[k] = (design.deviance(theta + e, reml) - design.deviance(theta - e, reml)) / (2 * h)
    return out


@pytest.fixture(params=["newton", "two-block"])
def path(request, monkeypatch):
    """Which derivatives: those of Newton's method on M's diagonal blocks (one grouping factor,
    or a small design as one block: ``_newton_derivatives``), or the two-block elimination's
    (``_gradient``, through ``Design.solve``; small designs forced onto it)."""
    from bayescred.lmm import fit as engine

    if request.param == "two-block":
        monkeypatch.setattr(engine, "DENSE_EFFECTS", 0)
    return request.param


def _derivatives(d, theta, reml, path):
    if path == "newton":
        from bayescred.lmm import fit as engine

        return engine._newton_derivatives(d, theta, reml, order=1)[:2]
    sol = d.solve(theta, reml, gradient=True)
    return sol.deviance, sol.gradient


@pytest.mark.parametrize("form", FORMULAS)
@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("weighted", [False, True])
def test_analytic_gradient_equals_finite_differences(form, method, weighted, path):
    data = _data(seed=len(form) + 7 * weighted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, data, weights="w" if weighted else None, method=method)
    d, reml = fit._design, method == "REML"
    assert not d.sparse and d.newton == (path == "newton" or not d.q2)  # (one factor: always Newton)
    rng = np.random.default_rng(3)
    for _ in range(2):
        # away from the optimum, off-diagonal entries of T of either sign
        theta = np.array(d.theta_lower)
        theta = np.where(theta == 0, rng.uniform(0.2, 1.5, d.n_theta), rng.normal(0, 0.5, d.n_theta))
        dev, grad = _derivatives(d, theta, reml, path)
        assert dev == pytest.approx(d.deviance(theta, reml), rel=1e-13)
        fd = _fd_gradient(d, theta, reml)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(fd).max()))


def test_gradient_vanishes_at_an_interior_optimum():
    data = _data(seed=11)
    fit = bc.lmm("y ~ x + (1 + x|a) + (1|b)", data, weights="w")
    assert not fit.singular
    _, grad = fit._design.deviance_and_gradient(fit._sol.theta, True)
    assert np.abs(grad).max() < 1e-5


@pytest.mark.parametrize("form", FORMULAS)
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_exact_hessian_equals_finite_differences_of_the_gradient(form, method):
    """Newton's Hessian (``_newton_derivatives``, one block or one grouping factor's blocks)
    against central differences of its analytic gradient, with weights, away from the optimum."""
    from bayescred.lmm import fit as engine

    data = _data(seed=len(form))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, data, weights="w", method=method)
    d, reml = fit._design, method == "REML"
    assert d.newton
    rng = np.random.default_rng(4)
    theta = np.where(np.array(d.theta_lower) == 0, rng.uniform(0.2, 1.5, d.n_theta), rng.normal(0, 0.5, d.n_theta))
    _, grad, hess = engine._newton_derivatives(d, theta, reml, order=2)
    h = 1e-5
    fd = np.empty_like(hess)
    for k in range(d.n_theta):
        e = np.zeros(d.n_theta)
        e[k] = h
        fd[:, k] = (engine._newton_derivatives(d, theta + e, reml, 1)[1]
                    - engine._newton_derivatives(d, theta - e, reml, 1)[1]) / (2 * h)
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    assert np.array_equal(hess, hess.T)


@pytest.mark.filterwarnings("ignore::bayescred.errors.BoundaryWarning")
@pytest.mark.parametrize("form", FORMULAS)
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_newton_and_general_paths_give_the_same_fit(form, method, monkeypatch):
    """The same design fitted on either path (Newton's method on M's diagonal blocks; L-BFGS-B
    and the polish on the two-block elimination): criterion, gradient and solution at a
    common θ, and the optimum."""
    from bayescred.lmm import fit as engine

    data = _data(seed=3 * len(form))
    newton = bc.lmm(form, data, weights="w", method=method)
    monkeypatch.setattr(engine, "DENSE_EFFECTS", 0)
    monkeypatch.setattr(engine, "_newton", lambda *args, **kw: None)
    general = bc.lmm(form, data, weights="w", method=method)
    assert newton._design.newton and not general._design.dense
    reml = method == "REML"
    theta = newton._sol.theta * 1.1 + 0.05
    d1, g1, _ = engine._newton_derivatives(newton._design, theta, reml, order=2)
    s1, s2 = newton._design.solve(theta, reml), general._design.solve(theta, reml, gradient=True)
    assert d1 == pytest.approx(s2.deviance, rel=1e-12) and s1.deviance == pytest.approx(s2.deviance, rel=1e-12)
    np.testing.assert_allclose(g1, s2.gradient, rtol=1e-9, atol=1e-9)
    for a, b in ((s1.beta, s2.beta), (s1.u_spherical1, s2.u_spherical1), (s1.u_spherical2, s2.u_spherical2)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert s1.sigma2 == pytest.approx(s2.sigma2, rel=1e-12)
    assert newton.criterion == pytest.approx(general.criterion, rel=1e-11)
    assert newton.criterion <= general.criterion + 1e-9


def test_aggregated_input_gradient():
    """Cell means with within-cell SS: the pooled SS is a constant of r², the gradient
    still matches finite differences."""
    data = _data(seed=5)
    cells = data.groupby(["a", "b"], as_index=False).agg(y=("y", "mean"), n=("y", "size"))
    ss = float(((data.y - data.groupby(["a", "b"]).y.transform("mean")) ** 2).sum())
    fit = bc.lmm("y ~ 1 + (1|a) + (1|b)", cells, weights="n", within_ss=ss, within_df=len(data) - len(cells))
    theta = fit._sol.theta * 1.3 + 0.05
    _, grad = fit._design.deviance_and_gradient(theta, True)
    np.testing.assert_allclose(grad, _fd_gradient(fit._design, theta, True), rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore::bayescred.errors.BoundaryWarning")
@pytest.mark.parametrize("form", ["y ~ x + (1 + x|a) + (1|b)", "y ~ x + (1|b/c)", "y ~ x + (1|a) + (1 + x|b) + (1|c)"])
def test_sparse_products_path_gives_the_same_criterion_and_gradient(form, monkeypatch):
    """Large designs multiply Z₁'WZ₂ as a sparse matrix (fit.SPARSE_CELLS); small ones densely."""
    from bayescred.lmm import fit as engine

    data = _data(seed=21)
    monkeypatch.setattr(engine, "DENSE_EFFECTS", 0)  # the two-block path, whose cross block is compared
    dense = bc.lmm(form, data, weights="w")
    monkeypatch.setattr(engine, "SPARSE_CELLS", 0)
    sparse = bc.lmm(form, data, weights="w")
    from scipy import sparse as sps

    assert sps.issparse(sparse._design.A12m) and not sps.issparse(dense._design.A12m)
    assert type(sparse._design.cross).__name__ == "SparseCross"
    theta = dense._sol.theta * 1.2 + 0.05
    d1, g1 = dense._design.deviance_and_gradient(theta, True)
    d2, g2 = sparse._design.deviance_and_gradient(theta, True)
    assert d2 == pytest.approx(d1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g2, _fd_gradient(sparse._design, theta, True), rtol=1e-6, atol=1e-6)
    assert sparse.criterion == pytest.approx(dense.criterion, rel=1e-10)
