"""Hachemeister's summed log density as an Op (bayescred.likelihood.regression): its value is
regression_loglik's sum, and its gradient (written by hand, module docstring) equals
PyTensor's automatic gradient of regression_loglik and finite differences, in Python and
numba modes, also at a singular between matrix (correlation -1, a zero variance). Value and
gradient come from one node, one kernel call."""

import numpy as np
import pytest

from bayescred.likelihood import gaussian, regression
from test_likelihood import random_regression_stats

DATA = ("M", "b", "c", "n", "sum_log_w")


def _point(corr, sd=(1.3, 0.7)):
    u01 = corr * sd[0] * sd[1]
    return (0.4, -0.9), (sd[0] ** 2, u01, sd[1] ** 2), 1.6


def _graphs(stats):
    import pytensor.tensor as pt

    xs = [pt.dscalar(n) for n in ("b0", "b1", "u00", "u01", "u11", "s2")]
    data = {k: pt.as_tensor(np.asarray(stats[k], float)) for k in DATA}
    ours = regression.loglik_total(pt, xs[:2], xs[2:5], xs[5], data)
    fast = {"M": gaussian._mat(data["M"]), "b": (data["b"][:, 0], data["b"][:, 1]),
            **{k: data[k] for k in ("c", "n", "sum_log_w")}}
    U = (xs[2], xs[3], xs[3], xs[4])
    reference = gaussian.regression_loglik(pt, xs[:2], U, xs[5], fast)[0].sum()
    return xs, [ours, *pt.grad(ours, xs)], [reference, *pt.grad(reference, xs)]


def test_numpy_total_is_the_sum_of_regression_loglik():
    stats = random_regression_stats(np.random.default_rng(3))
    beta, U, s2 = _point(0.4)
    fast = {"M": gaussian._mat(stats["M"]), "b": (stats["b"][:, 0], stats["b"][:, 1]),
            **{k: stats[k] for k in ("c", "n", "sum_log_w")}}
    want = gaussian.regression_loglik(np, beta, (U[0], U[1], U[1], U[2]), s2, fast)[0].sum()
    assert regression.loglik_total(np, beta, U, s2, stats) == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "NUMBA"])
@pytest.mark.parametrize("corr, sd", [(0.4, (1.3, 0.7)), (-1.0, (1.3, 0.7)), (0.0, (1.3, 0.0))])
def test_op_and_gradient_match_pytensors_gradient_of_regression_loglik(mode, corr, sd):
    import pytensor

    stats = random_regression_stats(np.random.default_rng(5), J=9)
    xs, ours, reference = _graphs(stats)
    beta, U, s2 = _point(corr, sd)
    point = (*beta, *U, s2)
    got = pytensor.function(xs, ours, mode=mode)(*point)
    want = pytensor.function(xs, reference, mode="FAST_COMPILE")(*point)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


def test_gradient_matches_finite_differences():
    import pytensor
    import pytensor.tensor as pt
    from pytensor.gradient import verify_grad

    stats = random_regression_stats(np.random.default_rng(8))
    data = {k: pt.as_tensor(np.asarray(stats[k], float)) for k in DATA}

    def f(b0, b1, u00, u01, u11, s2):
        return regression.loglik_total(pt, (b0, b1), (u00, u01, u11), s2, data)

    beta, U, s2 = _point(0.3)
    verify_grad(f, [np.array(x) for x in (*beta, *U, s2)], rng=np.random.default_rng(0),
                mode=pytensor.compile.mode.get_mode("FAST_COMPILE"))


def test_value_and_gradient_are_one_node_and_second_derivatives_are_refused():
    import pytensor
    import pytensor.tensor as pt

    stats = random_regression_stats(np.random.default_rng(2))
    xs, ours, _ = _graphs(stats)
    fn = pytensor.function(xs, ours, mode="NUMBA")
    ops = [type(node.op).__name__ for node in fn.maker.fgraph.apply_nodes]
    assert ops.count("RegressionLoglik") == 1, ops
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pt.grad(ours[1], xs[0])
