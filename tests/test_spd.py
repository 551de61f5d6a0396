"""log|S| and v'S^-1 v (bayescred.likelihood.spd): numpy, the PyTensor Op and its numba kernel
give the numbers of a Cholesky written with PyTensor's own linear algebra, and so do their
gradients."""

import numpy as np
import pytest

from bayescred.likelihood import spd


def _system(q, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(q, q))
    return A @ A.T + q * np.eye(q), rng.normal(size=q)


@pytest.mark.parametrize("q", [1, 2, 6, 30])
def test_numpy_matches_slogdet_and_solve(q):
    S, v = _system(q, q)
    logdet, quad = spd.logdet_quad(np, S, v)
    assert logdet == pytest.approx(np.linalg.slogdet(S)[1], rel=1e-12)
    assert quad == pytest.approx(v @ np.linalg.solve(S, v), rel=1e-12)


def test_numpy_refuses_a_matrix_that_is_not_positive_definite():
    with pytest.raises(np.linalg.LinAlgError):
        spd.logdet_quad(np, np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2))


def _graphs():
    import pytensor.tensor as pt

    S, v = pt.dmatrix("S"), pt.dvector("v")
    a, b = 0.7, -1.3  # weights of the two outputs, so that both gradients enter
    logdet, quad = spd.logdet_quad(pt, S, v)
    L = pt.linalg.cholesky(S)
    h = pt.linalg.solve_triangular(L, v, lower=True)
    reference = a * 2 * pt.sum(pt.log(pt.diag(L))) + b * pt.sum(h * h)
    ours = a * logdet + b * quad
    return (S, v), [ours, *pt.grad(ours, [S, v])], [reference, *pt.grad(reference, [S, v])]


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "NUMBA"])
@pytest.mark.parametrize("q", [1, 3, 12])
def test_op_and_gradient_match_pytensors_cholesky(mode, q):
    import pytensor

    inputs, ours, reference = _graphs()
    S, v = _system(q, 10 + q)
    got = pytensor.function(list(inputs), ours, mode=mode)(S, v)
    want = pytensor.function(list(inputs), reference, mode="FAST_COMPILE")(S, v)
    # PyTensor's Cholesky gradient reads the lower triangle only; on a symmetric S the
    # symmetric gradient (ours) and that one agree once both are symmetrised
    sym = lambda G: 0.5 * (G + G.T)  # noqa: E731
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(sym(got[1]), sym(want[1]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences():
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import verify_grad

    S0, v0 = _system(4, 3)

    def f(B, v):  # S = B B' + 4 I keeps every perturbed point symmetric positive definite
        logdet, quad = spd.logdet_quad(pt, B @ B.T + 4 * pt.eye(4), v)
        return 0.3 * logdet - 0.9 * quad

    B0 = np.linalg.cholesky(S0 - 4 * np.eye(4) + 1e-9 * np.eye(4))
    verify_grad(f, [B0, v0], rng=np.random.default_rng(0), mode=pytensor.compile.mode.get_mode("FAST_COMPILE"))


def test_numba_kernel_refuses_a_matrix_that_is_not_positive_definite():
    import pytensor
    import pytensor.tensor as pt

    S, v = pt.dmatrix("S"), pt.dvector("v")
    fn = pytensor.function([S, v], spd.logdet_quad(pt, S, v), mode="NUMBA")
    with pytest.raises(ValueError, match="not positive definite"):
        fn(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2))


def test_op_vectorises_over_a_leading_axis():
    """bc.sample evaluates deferred quantities vectorised over the draws (vectorize_graph)."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import vectorize_graph

    S, v = pt.dmatrix("S"), pt.dvector("v")
    out = spd.logdet_quad(pt, S, v)
    Sb, vb = pt.tensor3("Sb"), pt.dmatrix("vb")
    batched = vectorize_graph(list(out), {S: Sb, v: vb})
    systems = [_system(3, s) for s in range(4)]
    got = pytensor.function([Sb, vb], batched, mode="FAST_COMPILE")(np.stack([s for s, _ in systems]),
                                                                     np.stack([x for _, x in systems]))
    want = np.array([spd.logdet_quad(np, s, x) for s, x in systems])
    np.testing.assert_allclose(np.column_stack(got), want, rtol=1e-12)
