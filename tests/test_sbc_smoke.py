"""Smoke version of benchmarks/sbc.py (simulation-based calibration): a few replicates per
factory, each reusing the factory's compiled model. With R replicates and ranks on 0..99,
a calibrated sampler gives ranks spread over the whole range; a broken likelihood (e.g. a
wrong variance) piles them at one end. The full study (100 replicates, histograms) is in
benchmarks/sbc.py and RESULTS.md."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SBC_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "sbc.py"


@pytest.fixture(scope="module")
def sbc():
    spec = importlib.util.spec_from_file_location("bayescred_sbc", SBC_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(sbc, name, replicates):
    ranks = sbc.ranks(name, replicates, seed=3, draws=200, tune=200, chains=2)
    assert ranks, name
    for param, r in ranks.items():
        assert len(r) == replicates
        # under uniformity on 0..99, P(all R ranks in one outer fifth) = 2 * 0.2^R: a wrong
        # likelihood sends the truth to the tails of the posterior every time
        assert not np.all(r < 20) and not np.all(r > 79), (name, param, r)
        assert sbc.uniformity_pvalue(r, bins=4) > 1e-4, (name, param, r)


def test_sbc_buhlmann_straub(sbc):
    check(sbc, "buhlmann_straub", 12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["buhlmann", "hierarchical", "hachemeister", "poisson_gamma", "crossed"])
def test_sbc_other_factories(sbc, name):
    check(sbc, name, 12)
