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
    dense = DenseCross(A12.toarray(), J, k1, _lam2_right(rest))
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


def test_terms_start_at_their_moment_estimates():
    """Design.start: an intercept term starts at the Bühlmann–Straub moment estimate
    √(τ̂²/σ̂²) of its own one-way classification; another term at Halliwell's between matrix
    of its levels' own least-squares fits (here k = 1: a slope through the origin per level),
    both of the response less its least-squares fit on X."""
    from bayescred.credibility import buhlmann_straub

    rng = np.random.default_rng(7)
    n = 3000
    a, b, x = rng.integers(0, 200, n), rng.integers(0, 40, n), rng.normal(size=n)
    y = rng.normal(0, 2, 200)[a] + rng.normal(0, 0.5, 40)[b] * x + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str), "w": 1.0})
    fit = bc.lmm("y ~ 1 + (1|a) + (0 + x|b)", data)
    d = fit._design
    classical = buhlmann_straub(data.assign(r=d.y), "a", "r", "w")
    start = d.start()
    between, within = classical.structure["between"], classical.structure["within"]
    assert start[0] == pytest.approx(np.sqrt(between / within), rel=1e-10)
    # the slope term, level by level with lstsq: B_j, σ̂² = Σ RSS_j / Σ (n_j − 1), then
    # Û = Σ (B_j − B̄)² / (J − 1) − σ̂² mean_j (x_j'x_j)⁻¹
    slope = d.terms[1]
    fits = [np.linalg.lstsq(slope.X[slope.codes == j], d.y[slope.codes == j], rcond=None)
            for j in range(slope.n_levels)]
    B = np.array([f[0][0] for f in fits])
    sigma2 = sum(f[1][0] for f in fits) / (n - slope.n_levels)
    xx = np.array([slope.X[slope.codes == j, 0] @ slope.X[slope.codes == j, 0] for j in range(slope.n_levels)])
    U = B.var(ddof=1) - sigma2 * np.mean(1 / xx)
    assert start[1] == pytest.approx(np.sqrt(U / sigma2), rel=1e-10)


def _evaluations(monkeypatch):
    """The list that collects θ at every evaluation of the small-design criterion (the Newton path)."""
    calls = []
    original = engine._newton_derivatives

    def counted(d, theta, reml, order=0):
        calls.append(np.array(theta))
        return original(d, theta, reml, order)

    monkeypatch.setattr(engine, "_newton_derivatives", counted)
    return calls


def test_balanced_random_slopes_start_at_the_reml_optimum(monkeypatch):
    """With the same design in every level (sleepstudy's kind), the moment estimates of a
    random-slope term are REML's when they are inside the bounds: the optimiser starts at its
    optimum and checks it (lme4's θ = I start took 27 gradients on sleepstudy)."""
    rng = np.random.default_rng(3)
    levels, days = 18, np.arange(10.0)
    g, x = np.repeat(np.arange(levels), days.size), np.tile(days, levels)
    u = rng.multivariate_normal([0, 0], [[600, 10], [10, 35]], levels)
    y = 250 + u[g, 0] + (10 + u[g, 1]) * x + rng.normal(0, 25, g.size)
    data = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    calls = _evaluations(monkeypatch)
    fit = bc.lmm("y ~ x + (x|g)", data)
    np.testing.assert_allclose(fit._design.start(), fit._sol.theta, rtol=1e-6)
    assert 1 <= len(calls) <= 3


def test_balanced_crossed_intercepts_start_at_the_reml_optimum(monkeypatch):
    """Two crossed factors, every cell observed once (Penicillin's kind): with σ̂² from the
    least-squares fit with both factors fixed, each factor's moment estimate is the two-way
    ANOVA estimator, which is REML's when positive, so Newton's method starts at the optimum
    (from each factor's own one-way moments, which count the other factor as noise, it took 10
    evaluations on Penicillin)."""
    rng = np.random.default_rng(5)
    a, b = np.repeat(np.arange(24), 6), np.tile(np.arange(6), 24)
    y = 20 + rng.normal(0, 0.8, 24)[a] + rng.normal(0, 1.9, 6)[b] + rng.normal(0, 0.55, a.size)
    data = pd.DataFrame({"y": y, "a": a.astype(str), "b": b.astype(str)})
    calls = _evaluations(monkeypatch)
    fit = bc.lmm("y ~ 1 + (1|a) + (1|b)", data)
    np.testing.assert_allclose(fit._design.start(), fit._sol.theta, rtol=1e-6)
    assert 1 <= len(calls) <= 3


def test_a_term_without_enough_levels_to_estimate_starts_at_identity():
    """Halliwell's estimate needs more than k levels with more rows than columns and the
    columns not collinear within the level; otherwise the term starts at lme4's θ = I. A level
    whose x is constant is left out of the estimate, not allowed to make it singular."""
    rng = np.random.default_rng(11)
    x = np.tile([0.0, 1.0, 2.0, 3.0], 6)
    g = np.repeat(np.arange(6), 4)
    x[g == 5] = 1.0  # one level with a constant x: its two columns are collinear
    y = rng.normal(0, 3, 6)[g] + (1 + rng.normal(0, 2, 6)[g]) * x + rng.normal(0, 0.3, 24)
    data = pd.DataFrame({"y": y, "x": x, "z": rng.normal(size=24), "g": g.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = bc.lmm("y ~ x + (x|g)", data)._design
        start = d._regression_start(0)
        assert start is not None and np.all(np.isfinite(start)) and start[0] > 0 and start[2] > 0
        few = bc.lmm("y ~ x + (x + z|g)", data.iloc[:12])._design  # 3 levels for k = 3
    assert few._regression_start(0) is None
    np.testing.assert_array_equal(few.start(), [1.0, 0.0, 0.0, 1.0, 0.0, 1.0])


def test_regression_start_reads_block_ones_cross_products():
    """A term alone on its grouping factor (block 1) takes its per-level cross-products from
    the design's A₁₁ and B₁; any other term computes them from its rows: the same start."""
    rng = np.random.default_rng(12)
    g = np.repeat(np.arange(8), 5)
    x = rng.normal(size=40)
    w = rng.uniform(0.5, 2.0, 40)
    y = rng.normal(0, 2, 8)[g] + (1 + rng.normal(0, 1, 8)[g]) * x + rng.normal(0, 0.5, 40)
    data = pd.DataFrame({"y": y, "x": x, "w": w, "g": g.astype(str)})
    d = bc.lmm("y ~ x + (x|g)", data, weights="w")._design
    assert d.block1 == [0]
    shortcut = d._regression_start(0)
    d.block1 = []  # as if the term were not block 1: its rows are read
    np.testing.assert_allclose(d._regression_start(0), shortcut, rtol=1e-12)


@pytest.mark.parametrize("form", ["y ~ 1 + (1|a) + (1|b)", "y ~ x + (1|a) + (1|b/c)", "y ~ x + (x|a) + (1|b)",
                                  "y ~ 1 + (1|b) + (1|c)"])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_moment_start_reaches_the_optimum_of_lme4s_start(form, method):
    rng = np.random.default_rng(len(form))
    n = 800
    a, b, c, x = rng.integers(0, 60, n), rng.integers(0, 5, n), rng.integers(0, 3, n), rng.normal(size=n)
    y = (rng.normal(0, 1, 60)[a] + rng.normal(0, 0.4, 5)[b] + rng.normal(0, 0.05, 3)[c] * (form[-5] == "c")
         + x + rng.normal(size=n))
    data = pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "c": c, "w": rng.uniform(0.5, 2, n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, data, weights="w", method=method)
        d = fit._design
        reml = method == "REML"
        from_identity, _ = engine.optimise(d, reml, theta0=np.array([1.0 if lo == 0 else 0.0 for lo in d.theta_lower]))
    assert fit.criterion <= d.deviance(from_identity, reml) + 1e-9 * abs(fit.criterion)
    assert fit.criterion == pytest.approx(d.deviance(from_identity, reml), rel=1e-11)


def test_a_variance_held_at_zero_is_freed_when_the_criterion_falls_inward():
    """The criterion is even in each T_ii: θ_i = 0 is stationary. The credit-insurance ML fit
    from its moment start stops there, 0.003 above the optimum (docs: test_lmm_reference)."""
    cells = bc.datasets.load("credit_insurance")
    form = "mean_payment ~ 1 + (1|experience) + (1|status) + (1|status:experience)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm(form, cells, weights="count", within_ss=cells.attrs["within_ss"],
                     within_df=cells.attrs["within_df"], method="ML")
    d = fit._design
    stuck = np.array([0.0, *fit._sol.theta[1:]])
    inward = engine._inward(lambda th: d.deviance(th, False), stuck, np.array(d.theta_lower))
    assert inward is not None and inward[0] > 0
    assert fit._sol.theta[0] == pytest.approx(0.2095, abs=1e-3)
    assert fit.criterion == pytest.approx(5240.152, abs=1e-3)


def test_an_abnormal_line_search_at_the_optimum_needs_no_nelder_mead(monkeypatch):
    """In the rounding noise of the criterion L-BFGS-B's line search may end "ABNORMAL" at the
    optimum (lme4's Pastes from its moment start); the Newton polish, not that flag, decides
    whether Nelder–Mead is asked for a second opinion."""
    data = _crossed(n=600, la=60, lb=20)
    fit = bc.lmm("y ~ 1 + (1|a) + (1|b)", data)
    minimize, methods = engine.minimize, []

    def abnormal(*args, **kwargs):
        methods.append(kwargs["method"])
        res = minimize(*args, **kwargs)
        res.success, res.message = False, "ABNORMAL: "
        return res

    monkeypatch.setattr(engine, "minimize", abnormal)
    theta, message = engine.optimise(fit._design, True)
    assert methods == ["L-BFGS-B"] and message is None
    np.testing.assert_allclose(theta, fit._sol.theta, rtol=1e-7)


@pytest.mark.r
def test_a_line_search_in_the_rounding_noise_is_cut_short(rscript, tmp_path, monkeypatch):
    """lme4's Pastes from its moment start: L-BFGS-B reaches the optimum, then its line search
    probes the criterion's rounding noise 19 more times before it gives up ("ABNORMAL")."""
    import subprocess

    csv = tmp_path / "Pastes.csv"
    subprocess.run([rscript, "-e", f"write.csv(lme4::Pastes, '{csv}', row.names = FALSE)"], check=True)
    data = pd.read_csv(csv).astype({"batch": str, "cask": str})
    fit = bc.lmm("strength ~ 1 + (1|batch/cask)", data)
    optimum, near = fit._sol.theta, []
    solve = engine._solve

    def counting(design, theta, reml, gradient=False):
        if gradient and np.max(np.abs(theta - optimum)) <= 1e-9 * (1 + np.max(optimum)):
            near.append(theta)
        return solve(design, theta, reml, gradient)

    monkeypatch.setattr(engine, "_solve", counting)
    theta, message = engine.optimise(fit._design, True)
    assert message is None and fit.criterion == pytest.approx(246.990745853, abs=1e-8)
    assert len(near) <= 4


def test_balanced_nested_intercepts_start_at_the_reml_optimum(monkeypatch):
    """Casks within batches, two samples a cask (Pastes' kind): Henderson's method I
    (Design._intercepts_start) counts the casks' variance in the batches' means, so the start
    is the nested ANOVA estimator, REML's optimum when positive (from the one-way moments of
    each term Newton's method took 5 evaluations on Pastes)."""
    rng = np.random.default_rng(8)
    batch = np.repeat(np.arange(10), 6)
    cask = np.repeat(np.arange(30), 2)
    y = 60 + rng.normal(0, 1.3, 10)[batch] + rng.normal(0, 2.9, 30)[cask] + rng.normal(0, 0.8, batch.size)
    data = pd.DataFrame({"y": y, "batch": batch.astype(str), "cask": (cask % 3).astype(str)})
    calls = _evaluations(monkeypatch)
    fit = bc.lmm("y ~ 1 + (1|batch/cask)", data)
    np.testing.assert_allclose(fit._design.start(), fit._sol.theta, rtol=1e-6)
    assert 1 <= len(calls) <= 3


def test_intercepts_start_of_cell_means_equals_that_of_the_raw_rows():
    """Henderson's method I reads the weights and the pooled within-cell SS: cell means with
    their counts as weights (docs/formulas.md §6) start where the raw rows start, on an
    unbalanced crossed design."""
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 7, 300), rng.integers(0, 4, 300)
    y = rng.normal(0, 1.0, 7)[a] + rng.normal(0, 0.6, 4)[b] + rng.normal(0, 0.9, 7 * 4).reshape(7, 4)[a, b] + rng.normal(size=300)
    raw = pd.DataFrame({"y": y, "a": a.astype(str), "b": b.astype(str)})
    cells = raw.groupby(["a", "b"], as_index=False).agg(y=("y", "mean"), n=("y", "size"))
    ss = float(((raw.y - raw.groupby(["a", "b"]).y.transform("mean")) ** 2).sum())
    form = "y ~ 1 + (1|a) + (1|b) + (1|a:b)"
    one = bc.lmm(form, raw)._design
    other = bc.lmm(form, cells, weights="n", within_ss=ss, within_df=len(raw) - len(cells))._design
    assert one._intercepts_start() is not None
    # (τ²/σ² per unit of the internal weights, which have mean 1: the counts' mean apart)
    np.testing.assert_allclose(other._intercepts_start() / other.scale, one._intercepts_start(), rtol=1e-9)


def test_a_variance_the_data_do_not_show_starts_and_stays_at_zero(monkeypatch):
    """Level means that vary less than their sampling noise (Dyestuff2's kind): the moment
    estimate is negative, so the term starts at its bound 0, where Newton's method finds the
    criterion rising inward and stops (it walked 0.1 -> 0 in 3 more evaluations before)."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(6), 5)
    y = 5 + rng.normal(0, 3.0, g.size)
    y -= np.bincount(g, y)[g] / 5 - 5 + 0.01 * np.arange(6)[g]  # level means all but equal
    data = pd.DataFrame({"y": y, "g": g.astype(str)})
    calls = _evaluations(monkeypatch)
    with pytest.warns(bc.errors.BoundaryWarning):
        fit = bc.lmm("y ~ 1 + (1|g)", data)
    assert fit._design.start()[0] == 0.0 and fit.theta[0] == 0.0 and fit.singular
    assert len(calls) == 1
