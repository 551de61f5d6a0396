"""The crossed classification's Woodbury terms (bayescred.likelihood.woodbury): numpy, the
PyTensor Op and its numba kernel give log|S| and v'S^-1 v of S and v built densely, and their
gradients equal those of the same terms written with PyTensor's own scatter and Cholesky."""

import numpy as np
import pytest

from bayescred.likelihood import woodbury


def _design(na, nb, seed, empty=0.3):
    """A crossed design with some empty cells: the cells' levels, 1/D and r/D."""
    rng = np.random.default_rng(seed)
    cells = [(i, j) for i in range(na) for j in range(nb) if rng.random() > empty or (i == 0 or j == 0)]
    ia, ib = (np.array(x) for x in zip(*cells))
    stats = {"index_a": ia, "index_b": ib, "size_a": na, "size_b": nb}
    return stats, rng.uniform(0.2, 3.0, len(ia)), rng.normal(size=len(ia))


def _dense(sd_a, sd_b, inv_d, dr, stats):
    na, nb = stats["size_a"], stats["size_b"]
    F = np.zeros((len(inv_d), na + nb))
    F[np.arange(len(inv_d)), stats["index_a"]] = sd_a
    F[np.arange(len(inv_d)), na + stats["index_b"]] = sd_b
    return np.eye(na + nb) + F.T @ (inv_d[:, None] * F), F.T @ dr


@pytest.mark.parametrize("na, nb", [(2, 2), (3, 3), (20, 10)])
def test_numpy_matches_the_dense_system(na, nb):
    stats, inv_d, dr = _design(na, nb, na)
    S, v = _dense(0.7, 1.4, inv_d, dr, stats)
    logdet, quad = woodbury.logdet_quad(np, 0.7, 1.4, inv_d, dr, stats)
    assert logdet == pytest.approx(np.linalg.slogdet(S)[1], rel=1e-12)
    assert quad == pytest.approx(v @ np.linalg.solve(S, v), rel=1e-12)


def _graphs(stats):
    """(inputs, ours, reference): value and gradient of 0.7 log|S| - 1.3 v'S^-1 v in
    (sd_a, sd_b, 1/D, r/D), from the Op and from PyTensor's scatter and Cholesky."""
    import pytensor.tensor as pt

    sa, sb, inv_d, dr = pt.dscalar("sa"), pt.dscalar("sb"), pt.dvector("inv_d"), pt.dvector("dr")
    logdet, quad = woodbury.logdet_quad(pt, sa, sb, inv_d, dr, stats)
    ours = 0.7 * logdet - 1.3 * quad
    na, nb = stats["size_a"], stats["size_b"]
    ia, jb = stats["index_a"], na + stats["index_b"]
    S = pt.eye(na + nb)
    S = pt.inc_subtensor(S[ia, ia], inv_d * sa**2)
    S = pt.inc_subtensor(S[jb, jb], inv_d * sb**2)
    S = pt.inc_subtensor(S[ia, jb], inv_d * sa * sb)
    S = pt.inc_subtensor(S[jb, ia], inv_d * sa * sb)
    v = pt.inc_subtensor(pt.zeros(na + nb)[ia], dr * sa)
    v = pt.inc_subtensor(v[jb], dr * sb)
    L = pt.linalg.cholesky(S)
    h = pt.linalg.solve_triangular(L, v, lower=True)
    reference = 0.7 * 2 * pt.sum(pt.log(pt.diag(L))) - 1.3 * pt.sum(h * h)
    wrt = [sa, sb, inv_d, dr]
    return wrt, [ours, *pt.grad(ours, wrt)], [reference, *pt.grad(reference, wrt)]


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "NUMBA"])
@pytest.mark.parametrize("na, nb", [(2, 3), (20, 10)])
def test_op_and_gradient_match_pytensors_own_algebra(mode, na, nb):
    import pytensor

    stats, inv_d, dr = _design(na, nb, 7 + na)
    wrt, ours, reference = _graphs(stats)
    point = (0.8, 1.7, inv_d, dr)
    got = pytensor.function(wrt, ours, mode=mode)(*point)
    want = pytensor.function(wrt, reference, mode="FAST_COMPILE")(*point)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences():
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import verify_grad

    stats, inv_d, dr = _design(3, 4, 1)

    def f(sa, sb, inv_d, dr):
        logdet, quad = woodbury.logdet_quad(pt, sa, sb, inv_d, dr, stats)
        return 0.3 * logdet - 0.9 * quad

    verify_grad(f, [np.array(0.9), np.array(1.3), inv_d, dr], rng=np.random.default_rng(0),
                mode=pytensor.compile.mode.get_mode("FAST_COMPILE"))


def test_numba_kernel_refuses_a_system_that_is_not_positive_definite():
    import pytensor
    import pytensor.tensor as pt

    stats, inv_d, dr = _design(2, 2, 0, empty=0.0)
    sa, sb, d, r = pt.dscalar(), pt.dscalar(), pt.dvector(), pt.dvector()
    fn = pytensor.function([sa, sb, d, r], woodbury.logdet_quad(pt, sa, sb, d, r, stats), mode="NUMBA")
    with pytest.raises(ValueError, match="not positive definite"):
        fn(1.0, 1.0, -np.ones_like(inv_d), dr)
