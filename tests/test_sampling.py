"""bc.sample: reproducible DataTrees with log-likelihood, posterior predictive and exact
conditional premiums; the sampled posterior mean premium equals the credibility premium when
the variances are fixed at REML. Compiled models are reused (module fixtures) to keep this fast."""

import arviz as az
import numpy as np
import pytest
import xarray as xr

import bayescred as bc
from bayescred.models import buhlmann


@pytest.fixture(scope="module")
def t31():
    return bc.datasets.load("buhlmann_table31")


@pytest.fixture(scope="module")
def t31_model(t31):
    return buhlmann(t31, group="class", response="loss")


@pytest.fixture(scope="module")
def t31_tree(t31_model):
    return bc.sample(t31_model, draws=500, tune=500, chains=2, random_seed=11)


def test_datatree_groups(t31_tree):
    assert isinstance(t31_tree, xr.DataTree)
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data"} <= set(t31_tree.children)
    post = t31_tree["posterior"]
    for name in ("collective", "between", "within", "k", "Z", "premium", "u", "premium_conditional_mean"):
        assert name in post.data_vars, name
    assert post["premium"].dims == ("chain", "draw", "class")
    assert list(post["class"].values) == [1, 2, 3]
    assert t31_tree["log_likelihood"]["loss"].dims == ("chain", "draw", "class")
    np.testing.assert_array_equal(t31_tree["observed_data"]["loss"].values, [650.0, 750.0, 850.0])
    # premium = collective + u, draw by draw
    np.testing.assert_allclose(post["premium"] - post["u"], post["collective"].broadcast_like(post["u"]), rtol=1e-12)


def test_loo_runs_on_the_marginal_model(t31_tree):
    loo = az.loo(t31_tree, var_name="loss")
    assert np.isfinite(loo.elpd)


def test_same_seed_same_numbers(t31_model, t31_tree):
    again = bc.sample(t31_model, draws=500, tune=500, chains=2, random_seed=11)
    np.testing.assert_array_equal(again["posterior"]["premium"].values, t31_tree["posterior"]["premium"].values)
    other = bc.sample(t31_model, draws=500, tune=500, chains=2, random_seed=12)
    assert not np.array_equal(other["posterior"]["premium"].values, t31_tree["posterior"]["premium"].values)


def test_seed_is_required(t31_model):
    with pytest.raises(TypeError):
        bc.sample(t31_model, draws=10)
    with pytest.raises(ValueError, match="random_seed is required"):
        bc.sample(t31_model, draws=10, random_seed=None)
    with pytest.raises(ValueError, match="draws"):
        bc.sample(t31_model, draws=0, random_seed=1)


def test_exact_conditional_draws_match_their_moments(t31_tree):
    # given each draw's hyperparameters, premium ~ N(premium_conditional_mean, tau2 (1 - Z)):
    # the standardised residuals must be standard normal
    post = t31_tree["posterior"]
    z = (post["premium"] - post["premium_conditional_mean"]) / np.sqrt(post["between"] * (1 - post["Z"]))
    z = z.values.ravel()
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 4 / np.sqrt(2 * z.size)


def test_sampled_premiums_equal_credibility_premiums_at_reml(t31):
    # variances fixed at REML (Table 3.1: tau2 8437.5, sigma2 6250; REFERENCE-VALUES §3.2) and a flat
    # prior on the collective: posterior mean premiums = 665.625, 750, 834.375 within Monte Carlo error
    model = buhlmann(t31, group="class", response="loss",
                     priors={"collective": "flat", "between_sd": np.sqrt(8437.5), "within_sd": np.sqrt(6250.0)})
    tree = bc.sample(model, draws=1000, tune=500, chains=2, random_seed=3)
    post = tree["posterior"]
    for name in ("premium", "premium_conditional_mean"):
        mean = post[name].mean(("chain", "draw")).values
        mcse = az.mcse(post, var_names=[name])[name].values
        assert np.all(np.abs(mean - [665.625, 750.0, 834.375]) < 4 * mcse), (name, mean, mcse)
    # the collective's posterior is N(X_z, tau2/Z.) = N(750, 3333.33) (FORMULAS.md §2, Var(beta_hat) §3.3)
    sd = float(post["collective"].std())
    assert sd == pytest.approx(np.sqrt((8437.5 + 6250 / 4) / 3), rel=0.1)
