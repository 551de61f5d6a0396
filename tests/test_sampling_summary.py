"""bc.sample(..., per_risk="summary"): per-risk summaries computed a block of risks at a time
equal the summaries of the full draws (exactly where the quantity is a function of the
hyperparameter draws, within Monte Carlo error where it is a conditional draw); per-risk draws
that would not fit in memory are refused before sampling, naming the way out."""

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.errors import ArgumentError, PosteriorSizeError
from bayescred.models import _gaussian
from bayescred.models._base import SUMMARY_STATISTICS

R = 300


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(5)
    risk = np.repeat(np.arange(R), 4)
    w = rng.uniform(1, 3, len(risk))
    y = 100 + np.repeat(rng.normal(0, 10, R), 4) + rng.normal(0, 20, len(risk)) / np.sqrt(w)
    return bc.models.buhlmann_straub(pd.DataFrame({"risk": risk, "y": y, "w": w}), "risk", "y", "w")


@pytest.fixture(scope="module")
def both(model):
    kw = dict(random_seed=3, draws=200, tune=200, chains=2, progressbar=False)
    return bc.sample(model, **kw), bc.sample(model, per_risk="summary", **kw)


def test_groups_and_layout(both):
    _, summary = both
    assert set(summary.children) == {"posterior", "sample_stats", "risk_summary"}
    assert "premium" not in summary["posterior"].data_vars  # no per-risk draws kept
    rs = summary["risk_summary"]
    assert set(rs.data_vars) == {"premium", "premium_conditional_mean", "Z"}
    assert rs["premium"].dims == ("risk", "statistic")
    assert list(rs["statistic"].values) == list(SUMMARY_STATISTICS)
    assert list(rs["risk"].values) == list(range(R))


@pytest.mark.parametrize("block", [None, 7 * 400 * _gaussian.SUMMARY_THREADS])
def test_summaries_of_the_same_posterior(model, both, block, monkeypatch):
    """Same seed, same hyperparameter draws. Z and the conditional-mean premium are functions of
    them: equal summaries to rounding, in one block or in blocks of 7 risks. The drawn premium
    is a fresh conditional draw: its mean and quantiles agree within Monte Carlo error."""
    draws, summary = both
    if block:
        monkeypatch.setattr(_gaussian, "SUMMARY_BLOCK", block)
        summary = bc.sample(model, random_seed=3, draws=200, tune=200, chains=2, progressbar=False, per_risk="summary")
    np.testing.assert_array_equal(draws["posterior"]["collective"].values, summary["posterior"]["collective"].values)
    rs = summary["risk_summary"]
    for name in ("Z", "premium_conditional_mean"):
        x = draws["posterior"][name].values.reshape(-1, R)
        np.testing.assert_allclose(rs[name].sel(statistic="mean"), x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(rs[name].sel(statistic="sd"), x.std(0, ddof=1), rtol=1e-8, atol=1e-12)
        for q in (5, 50, 95):
            np.testing.assert_allclose(rs[name].sel(statistic=f"q{q:02d}"), np.quantile(x, q / 100, axis=0), rtol=1e-12)
    x = draws["posterior"]["premium"].values.reshape(-1, R)
    se = x.std(0, ddof=1) / np.sqrt(x.shape[0])
    z = (rs["premium"].sel(statistic="mean").values - x.mean(0)) / (np.sqrt(2) * se)
    assert np.mean(np.abs(z) < 3) > 0.98
    np.testing.assert_allclose(rs["premium"].sel(statistic="sd"), x.std(0, ddof=1), rtol=0.25)


def test_numbers_do_not_depend_on_the_number_of_cores(model, monkeypatch):
    """Blocks of 5 risks, each with its own spawned stream: 1 core or 3 give the same summaries."""
    monkeypatch.setattr(_gaussian, "SUMMARY_BLOCK", 5 * 400 * _gaussian.SUMMARY_THREADS)
    got = []
    for cores in (1, 3):
        monkeypatch.setattr(_gaussian.os, "cpu_count", lambda: cores)
        tree = bc.sample(model, random_seed=4, draws=200, tune=100, chains=2, progressbar=False, per_risk="summary")
        got.append(tree["risk_summary"]["premium"].values)
    np.testing.assert_array_equal(got[0], got[1])


def test_refusals(model):
    with pytest.raises(ArgumentError, match="per_risk must be"):
        bc.sample(model, random_seed=1, per_risk="some")
    with pytest.raises(ArgumentError, match="log_likelihood=True"):
        bc.sample(model, random_seed=1, per_risk="summary", log_likelihood=True)
    latent = bc.models.buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss",
                                likelihood="latent")
    with pytest.raises(ArgumentError, match="Bühlmann–Straub marginal"):
        bc.sample(latent, random_seed=1, per_risk="summary")


def test_too_large_is_refused_before_sampling(model, monkeypatch):
    """A machine of 1 MiB: 2 chains x 200 draws x 300 risks x 6 values x 8 bytes does not fit."""
    import bayescred.sampling as S

    monkeypatch.setattr(S.os, "sysconf", lambda name: 1024 if name == "SC_PAGE_SIZE" else 1024)
    with pytest.raises(PosteriorSizeError, match="per_risk='summary'"):
        bc.sample(model, random_seed=1, draws=200, chains=2)


def test_every_risks_draws_cost_the_four_arrays_kept_and_no_more(model):
    """With per_risk="draws", the exact conditional draws need the memory of what is kept (Z,
    premium_conditional_mean, premium, u: four arrays of draws x risks) and no copies on the way
    (the premiums are shifted back in place, Z overwrites the precisions, the conditional mean's
    array holds the draw's SD first): peak traced memory at most 4.5 arrays (8 before)."""
    import tracemalloc

    import xarray as xr

    from bayescred.models._base import info_of

    info = info_of(model)
    rng = np.random.default_rng(0)
    chains, draws = 2, 300
    post = xr.Dataset({name: (("chain", "draw"), rng.uniform(50, 150, (chains, draws)))
                       for name in ("collective", "between", "within")},
                      coords={"chain": range(chains), "draw": range(draws)})
    array = chains * draws * R * 8
    tracemalloc.start()
    try:
        out = info.augment(model, post, np.random.default_rng(1), False, False)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(out["posterior"]) == {"Z", "premium_conditional_mean", "premium", "u"}
    assert kept / array == pytest.approx(4, abs=0.1)
    assert peak / array < 4.5


def test_per_risk_draws_are_written_in_small_pages_and_the_hint_is_restored(model, monkeypatch):
    """bc.sample writes the posterior's arrays with numpy's transparent-huge-page hint off
    (bayescred._pages.small_pages: on a fragmented machine each 2 MB fault waited for the kernel to
    compact memory, 1.2-1.4 s for the 1,000-risk Bühlmann's draws) and leaves numpy's switch as
    it found it, on or off."""
    from numpy._core.multiarray import _set_madvise_hugepage

    from bayescred.models._base import info_of

    def hint():
        now = _set_madvise_hugepage(True)
        _set_madvise_hugepage(now)
        return now

    info = info_of(model)
    seen = []
    augment = info.augment

    def recording(*args):
        seen.append(hint())
        return augment(*args)

    monkeypatch.setattr(info, "augment", recording)
    before = hint()
    try:
        for start in (True, False):
            _set_madvise_hugepage(start)
            bc.sample(model, random_seed=1, draws=20, tune=20, chains=1, progressbar=False)
            assert hint() is start
    finally:
        _set_madvise_hugepage(before)
    assert seen == [False, False]
