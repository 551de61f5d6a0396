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
