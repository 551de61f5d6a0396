"""The small dense decompositions of bc.lmm's REML path (bayescred/lmm/fit.py), which call
LAPACK directly or use closed forms instead of numpy.linalg: each equals numpy's answer and
refuses what numpy refuses."""

import warnings

import numpy as np
import pytest

from bayescred.lmm.fit import LeastSquares, _block_inverse, _eigh, _inverse


def _pd_blocks(rng, J, k, scale=1.0):
    A = rng.normal(size=(J, k, k)) * scale
    return A @ A.transpose(0, 2, 1) + np.eye(k)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_block_inverse_equals_numpy(k, scale):
    """M's level blocks T'AT + I: the 2 × 2 adjugate (and the 1 × 1 reciprocal) give numpy's
    inverse and log-determinant, from nearly I to condition numbers of ~1e6."""
    M = _pd_blocks(np.random.default_rng(k), 30, k, scale)
    inverse, logdet = _block_inverse(M)
    np.testing.assert_allclose(inverse, np.linalg.inv(M), rtol=1e-9, atol=1e-15)
    assert logdet == pytest.approx(float(np.sum(np.linalg.slogdet(M)[1])), rel=1e-12)


def test_block_inverse_refuses_a_block_that_is_not_positive_definite():
    M = _pd_blocks(np.random.default_rng(0), 5, 2)
    M[3] = [[1.0, 2.0], [2.0, 1.0]]  # determinant −3
    with pytest.raises(np.linalg.LinAlgError):
        _block_inverse(M)
    M[3] = np.nan
    with pytest.raises(np.linalg.LinAlgError):
        _block_inverse(M)


def test_inverse_and_eigh_equal_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    np.testing.assert_allclose(_inverse(a), np.linalg.inv(a), rtol=1e-10)
    s = a + a.T
    values, vectors = _eigh(s)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(s), rtol=1e-12)
    np.testing.assert_allclose((vectors * values) @ vectors.T, s, atol=1e-12)
    np.testing.assert_allclose(_eigh(s, vectors=False), values, rtol=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        _inverse(np.ones((3, 3)))


def test_least_squares_equals_lstsq_and_sees_collinear_columns():
    rng = np.random.default_rng(2)
    n = 50
    X = np.column_stack([np.ones(n), rng.normal(size=n) * 1e4, rng.integers(0, 2, n)])
    w = rng.uniform(0.2, 3.0, n)
    y = X @ [1.0, 2e-3, -0.5] + rng.normal(size=n)
    ls = LeastSquares(X, w)
    sw = np.sqrt(w)
    np.testing.assert_allclose(ls.solve(y), np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0], rtol=1e-10)
    assert ls.full_rank
    assert not LeastSquares(np.column_stack([X, X[:, 1] - 3 * X[:, 2]]), w).full_rank
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a zero singular value is left unfitted, without a division by 0
        zero = LeastSquares(np.column_stack([X, np.zeros(n)]), w)
    assert not zero.full_rank and zero.solve(y)[-1] == 0.0
    empty = LeastSquares(np.zeros((n, 0)), w)
    assert empty.full_rank and empty.solve(y).shape == (0,)


def test_block_inverse_of_one_large_block_by_its_cholesky_factor():
    """A small design of several factors has M as one q × q block: inverse and log-determinant
    from its Cholesky factor equal numpy's; a block that is not positive definite is refused."""
    M = _pd_blocks(np.random.default_rng(5), 1, 40)
    inverse, logdet = _block_inverse(M)
    np.testing.assert_allclose(inverse, np.linalg.inv(M), rtol=1e-9, atol=1e-14)
    assert np.array_equal(inverse[0], inverse[0].T)
    assert logdet == pytest.approx(float(np.linalg.slogdet(M[0])[1]), rel=1e-12)
    M[0, 3, 3] = -1.0
    with pytest.raises(np.linalg.LinAlgError):
        _block_inverse(M)
