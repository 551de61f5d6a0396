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


# ---------------------------------------------------------------- the lean nutpie compilation

def _flat_to_point(compiled, x):
    names, slices, shapes = compiled.shape_info
    return {n: x[s].reshape(shape) for n, s, shape in zip(names, slices, shapes) if s.stop <= compiled.n_dim}


def _call(cfunc, *args):
    import ctypes

    def ptr(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    return cfunc.ctypes(*[ptr(a) if isinstance(a, np.ndarray) else a for a in args])


def _factory_model(factory, other=False, drop_risk=None):
    """A factory's model on bundled data; ``other``: another portfolio of the same size (the
    responses and weights changed); ``drop_risk``: one risk fewer."""
    if factory == "poisson_gamma":
        data = bc.datasets.load("sim_poisson_gamma")
        if other:
            data = data.assign(claims=data["claims"].to_numpy()[::-1], exposure=data["exposure"] * 1.7)
        data = data if drop_risk is None else data[data["company"] != drop_risk]
        return bc.models.poisson_gamma(data, group="company", claims="claims", exposure="exposure")
    data = bc.datasets.load("hachemeister")
    if other:
        data = data.assign(severity=data["severity"] * 1.3 + 100, claims=data["claims"].to_numpy()[::-1])
    data = data if drop_risk is None else data[data["state"] != drop_risk]
    if factory == "hachemeister":
        return bc.models.hachemeister(data, group="state", response="severity", time="period", weight="claims")
    return bc.models.buhlmann_straub(data, group="state", response="severity", weight="claims")


def _swap(compiled, model):
    """``compiled`` with ``model``'s data (and data-scaled prior parameters) swapped in."""
    from bayescred._nutpie import compile_model
    from bayescred.sampling import _stored

    other = compile_model(model, _stored(model))
    return compiled.with_data(**{v.name: other.shared_data[k] for v, k in other.shared_var_keys.items()})


@pytest.mark.parametrize("swapped", [False, True], ids=["own data", "another portfolio swapped in"])
@pytest.mark.parametrize("factory", ["buhlmann_straub", "hachemeister", "poisson_gamma"])
def test_lean_compilation_gives_pymcs_log_density_gradient_and_trace_values(factory, swapped):
    # bayescred._nutpie replaces nutpie's C wrappers (2.5 s of numba compilation per process):
    # at random points its log density, gradient and stored values must be PyMC's own, also
    # after another portfolio's data are swapped into the compiled model
    from bayescred._nutpie import compile_model
    from bayescred.sampling import _stored

    model = _factory_model(factory)
    compiled = compile_model(model, _stored(model))
    if swapped:
        model = _factory_model(factory, other=True)
        compiled = _swap(compiled, model)
    logp_ref = model.compile_logp()
    values = {v.name: v for v in model.value_vars}
    rv_of = {model.rvs_to_values[rv].name: rv for rv in model.free_RVs}
    free = [n for n in compiled.shape_info[0] if n in rv_of]
    dlogp_ref = model.compile_dlogp([rv_of[n] for n in free])  # in the compiled model's order
    names = [n for n in compiled.shape_info[0]]
    outputs = model.replace_rvs_by_values([values[n] if n in values else model[n] for n in names])
    expand_ref = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.normal(0, 0.5, compiled.n_dim) + compiled.initial_point_func(1)
        grad, logp = np.zeros(compiled.n_dim), np.zeros(1)
        status = _call(compiled.compiled_logp_func, compiled.n_dim, x, grad, logp, compiled.user_data.ctypes.data)
        assert status == 0
        point = _flat_to_point(compiled, x)
        assert logp[0] == pytest.approx(float(logp_ref(point)), rel=1e-10)
        np.testing.assert_allclose(grad, dlogp_ref(point), rtol=1e-8, atol=1e-10)
        out = np.zeros(compiled.n_expanded)
        status = _call(compiled.compiled_expand_func, compiled.n_dim, compiled.n_expanded, x, out,
                       compiled.user_data.ctypes.data)
        assert status == 0
        expected = np.concatenate([np.ravel(v) for v in expand_ref(point)])
        np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_lean_expand_refuses_data_of_another_size():
    # with one row fewer the per-row values no longer fill the trace: an error status, never
    # a read past the end (bc.sample recompiles when the data change size). A factory's model
    # stores its parameters alone, so a plain PyMC model with a per-row deterministic stands in
    import pymc as pm

    from bayescred._nutpie import compile_model
    from bayescred.sampling import _stored

    def model_of(x):
        with pm.Model() as model:
            data = pm.Data("x", x)
            slope = pm.Normal("slope")
            pm.Deterministic("fitted", slope * data)
            pm.Normal("y", slope * data, 1.0, observed=np.ones_like(x))
        return model

    x = np.linspace(0.0, 1.0, 12)
    model = model_of(x)
    assert "fitted" in _stored(model)
    compiled = compile_model(model, _stored(model))
    compiled = compiled.with_data(x=x[:-1])
    point = compiled.initial_point_func(1)
    out = np.zeros(compiled.n_expanded)
    assert _call(compiled.compiled_expand_func, compiled.n_dim, compiled.n_expanded, point, out,
                 compiled.user_data.ctypes.data) == -3


def test_lean_compilation_reports_a_non_finite_log_density():
    from bayescred._nutpie import compile_model

    model = buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss")
    compiled = compile_model(model, ["collective"])
    x = np.full(compiled.n_dim, 800.0)  # log standard deviations of e^800: overflow
    status = _call(compiled.compiled_logp_func, compiled.n_dim, x, np.zeros(compiled.n_dim), np.zeros(1),
                   compiled.user_data.ctypes.data)
    assert status in (3, 4)
    longer = np.zeros(compiled.n_dim + 1)  # a point of the wrong size
    assert _call(compiled.compiled_logp_func, compiled.n_dim + 1, longer, np.zeros(compiled.n_dim + 1), np.zeros(1),
                 compiled.user_data.ctypes.data) == -1


def test_wrappers_are_loaded_from_the_disk_cache_for_any_portfolio_of_the_same_structure():
    # the data (and the data-scaled default priors) stay out of the compiled code, so a second
    # portfolio fitted with the same factory finds both C wrappers in PyTensor's numba cache
    import pytensor

    from bayescred._nutpie import compile_model

    if not pytensor.config.numba__cache:
        pytest.skip("PyTensor's numba cache is switched off (PYTENSOR_FLAGS numba__cache=False)")
    compile_model(buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss"), ["collective"])
    other = buhlmann(bc.datasets.load("hachemeister"), group="state", response="severity")
    again = compile_model(other, ["collective"])
    assert again.compiled_logp_func._cache_hits == 1
    assert again.compiled_expand_func._cache_hits == 1


def test_wrappers_of_another_version_of_the_module_are_not_read_back(monkeypatch):
    # the wrappers' disk-cache key holds a hash of bayescred/_nutpie.py: a wrapper compiled by
    # another version of it (other inlining, other rewrites) is compiled afresh, not loaded
    import pytensor

    from bayescred import _nutpie

    if not pytensor.config.numba__cache:
        pytest.skip("PyTensor's numba cache is switched off (PYTENSOR_FLAGS numba__cache=False)")
    model = buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss")
    _nutpie.compile_model(model, ["collective"])
    assert _nutpie.compile_model(model, ["collective"]).compiled_logp_func._cache_hits == 1
    import uuid

    another = f"another version {uuid.uuid4()}"  # new on every run: nothing cached under it
    monkeypatch.setattr(_nutpie, "_version_of_this_file", lambda: another)
    assert _nutpie.compile_model(model, ["collective"]).compiled_logp_func._cache_hits == 0


def test_marginal_factories_compute_risk_level_quantities_after_sampling():
    # Z and the conditional-mean premium are not carried through the sampler (ModelInfo.after)
    # but computed from the draws: they must equal PyMC's deterministics at the same draws
    import pymc as pm

    from bayescred.sampling import _stored

    data = bc.datasets.load("hachemeister")
    model = bc.models.hierarchical(data.assign(region=np.where(data["state"] <= 2, "a", "b")),
                                   levels=["region", "state"], response="severity", weight="claims")
    assert not {"Z", "premium", "Z_region", "premium_region"} & set(_stored(model))
    tree = bc.sample(model, draws=50, tune=200, chains=1, random_seed=2)
    post = tree["posterior"].to_dataset()
    ref = pm.compute_deterministics(post, var_names=["Z", "Z_region", "premium", "premium_region"], model=model,
                                    progressbar=False)
    for mine, theirs in (("Z", "Z"), ("Z_region", "Z_region"), ("premium_conditional_mean", "premium"),
                         ("premium_region_conditional_mean", "premium_region")):
        np.testing.assert_allclose(post[mine].values, ref[theirs].values, rtol=1e-10, err_msg=mine)


@pytest.mark.parametrize("factory", ["hachemeister_diagonal", "hachemeister_correlated", "crossed"])
def test_regression_and_crossed_compute_risk_level_quantities_after_sampling(factory):
    # as above for Hachemeister's credibility matrices A, coefficients and premiums and the
    # crossed model's Z and premiums: numpy after sampling, equal to PyMC's deterministics
    import pymc as pm

    from bayescred.sampling import _stored

    if factory == "crossed":
        credit = bc.datasets.load("credit_insurance")
        model = bc.models.crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                                  within_ss=credit.attrs["within_ss"], within_df=credit.attrs["within_df"])
        pairs = {"Z": "Z", "premium_conditional_mean": "premium"}
    else:
        model = bc.models.hachemeister(bc.datasets.load("hachemeister"), group="state", time="period",
                                       response="severity", weight="claims", centering="group",
                                       structure=factory.split("_")[1])
        pairs = {"A": "A", "risk_coef_conditional_mean": "risk_coef", "premium_conditional_mean": "premium", "k": "k"}
    assert not set(pairs.values()) - {"k"} & set(_stored(model))
    post = bc.sample(model, draws=50, tune=200, chains=1, random_seed=2)["posterior"].to_dataset()
    free = [rv.name for rv in model.free_RVs]
    ref = pm.compute_deterministics(post[free], var_names=list(set(pairs.values())), model=model, progressbar=False)
    for mine, theirs in pairs.items():
        np.testing.assert_allclose(post[mine].values, ref[theirs].values, rtol=1e-9, atol=1e-12, err_msg=mine)


def _every_factory():
    """Each factory's model on bundled data, marginal and latent where both exist."""
    h = bc.datasets.load("hachemeister")
    p = bc.datasets.load("sim_poisson_gamma")
    credit = bc.datasets.load("credit_insurance")
    region = h.assign(region=np.where(h["state"] <= 2, "a", "b"))
    m = bc.models
    builders = {
        "buhlmann": lambda lk: m.buhlmann(h, group="state", response="severity", likelihood=lk),
        "buhlmann_straub": lambda lk: m.buhlmann_straub(h, group="state", response="severity", weight="claims",
                                                        likelihood=lk),
        "hierarchical": lambda lk: m.hierarchical(region, levels=["region", "state"], response="severity",
                                                  weight="claims", likelihood=lk),
        "hachemeister_correlated": lambda lk: m.hachemeister(h, group="state", time="period", response="severity",
                                                             weight="claims", likelihood=lk, structure="correlated"),
        "crossed": lambda lk: m.crossed(credit, factors=["status", "experience"], response="mean_payment",
                                        weight="count", within_ss=credit.attrs["within_ss"],
                                        within_df=credit.attrs["within_df"], likelihood=lk),
        "poisson_gamma": lambda lk: m.poisson_gamma(p, group="company", claims="claims", exposure="exposure",
                                                    likelihood=lk),
        "gamma_severity": lambda lk: m.gamma_severity(h, group="state", severity="severity", claims="claims",
                                                      likelihood=lk),
    }
    cases = [(f"{name}-{lk}", build, lk) for name, build in builders.items() for lk in ("marginal", "latent")]
    cases += [("poisson_lognormal-latent", lambda lk: m.poisson_lognormal(p, group="company", claims="claims",
                                                                          exposure="exposure"), "latent"),
              ("gamma_lognormal-latent", lambda lk: m.gamma_lognormal(h, group="state", severity="severity",
                                                                      claims="claims"), "latent")]
    return cases


@pytest.mark.parametrize("build,likelihood", [c[1:] for c in _every_factory()], ids=[c[0] for c in _every_factory()])
def test_deterministics_after_sampling_equal_pymcs(build, likelihood):
    # a factory's deterministics (and the pointwise log-likelihood) are not carried through the
    # sampler but evaluated afterwards by the model's own graph, vectorised over the draws and
    # run by numpy (sampling._evaluate): at random draws they must equal PyMC's own
    import pymc as pm
    import xarray as xr

    from bayescred.sampling import _evaluate, _stored

    model = build(likelihood)
    assert _stored(model) == [rv.name for rv in model.free_RVs]
    draws = pm.draw(model.free_RVs, draws=6, random_seed=4)
    post = xr.Dataset({rv.name: xr.DataArray(np.asarray(v).reshape(2, 3, *np.shape(v)[1:]),
                                             dims=("chain", "draw", *[f"{rv.name}_{i}" for i in range(np.ndim(v) - 1)]))
                       for rv, v in zip(model.free_RVs, draws)})
    names = [d.name for d in model.deterministics]
    got = _evaluate(model, post, names)
    ref = pm.compute_deterministics(post, var_names=names, model=model, progressbar=False)
    for name in names:
        assert got[name].dims[:2] == ("chain", "draw")
        np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-10, atol=1e-12, err_msg=name)
