"""Newton's method (bayescred.lmm.fit._newton) against the general path (L-BFGS-B and the
polish) on random designs, boundary cases included: Newton's optimum is never worse.

The designs mix one factor with random slopes, crossed, nested and uncorrelated terms, with and
without weights, variances that are 0 in the data, REML and ML. Among them are the cases that
exposed two faults of the first version: a trust-region step from a non-convex start that
walked onto T_ii = 0 and stopped at a local optimum there (9.3 criterion units above the
optimum; the general path now gives a second opinion whenever Newton sets a variance to 0),
and a step clipped at a bound whose quadratic model predicted a rise, read as convergence."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.lmm import fit as engine

FORMS = ["y ~ x + (1|a)", "y ~ x + (x|a)", "y ~ x + (1|a) + (1|b)", "y ~ x + (x|a) + (1|b)", "y ~ 1 + (1|a/b)",
         "y ~ x + (1|a) + (0+x|a)", "y ~ x + (1|a) + (1|b) + (1|a:b)"]


def _designs(count: int):
    rng = np.random.default_rng(123)
    for it in range(count):
        form = FORMS[it % len(FORMS)]
        n, A, B = int(rng.integers(40, 300)), int(rng.integers(3, 15)), int(rng.integers(2, 6))
        a, b, x = rng.integers(0, A, n), rng.integers(0, B, n), rng.normal(size=n)
        sa, sb, ss = rng.choice([0, 0.3, 1, 3]), rng.choice([0, 0.5, 2]), rng.choice([0, 0.4])
        y = 1 + x + sa * rng.normal(size=A)[a] + sb * rng.normal(size=B)[b] + ss * rng.normal(size=A)[a] * x + rng.normal(size=n)
        data = pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": (a * 10 + b if "a/b" in form else b).astype(str),
                             "w": rng.uniform(0.3, 3, n)})
        yield it, form, data, {"weights": "w"} if it % 2 else {}


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_newton_optimum_is_never_worse_than_the_general_paths(method, monkeypatch):
    worse, newton_fits = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for it, form, data, kw in _designs(90):
            newton = bc.lmm(form, data, method=method, **kw)
            with monkeypatch.context() as m:
                m.setattr(engine, "_newton", lambda *args, **k: None)
                m.setattr(engine, "DENSE_EFFECTS", 0)
                general = bc.lmm(form, data, method=method, **kw)
            assert not general._design.dense
            newton_fits += newton._design.newton  # (a nested design with more than 64 effects is not)
            if newton.criterion > general.criterion + 1e-8 * abs(general.criterion):
                worse.append((it, form, newton.criterion - general.criterion))
    assert not worse
    assert newton_fits >= 75
