"""bc.sample's three sampler backends (bayescred.sampling's module docstring): nutpie with
bayescred's lean wrappers only for the nutpie and PyTensor versions they were tested with,
nutpie's public compile API otherwise, PyMC's NUTS without nutpie or when nutpie cannot
compile the model. Each path gives a valid posterior with the same variables, names the
backend in the posterior's ``bayescred_sampler`` attribute, and the same seed gives the same
draws."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import _nutpie
from bayescred.errors import SamplerFallbackWarning

pytest.importorskip("nutpie")

SETTINGS = {"draws": 300, "tune": 300, "chains": 2, "cores": 1}


def _model():
    # Table 3.1 (3 classes): a fresh model per test, so no compiled model is shared between paths
    return bc.models.buhlmann(bc.datasets.load("buhlmann_table31"), group="class", response="loss")


def _versions(monkeypatch, **versions):
    """Make ``_nutpie`` see these installed versions (the others as installed)."""
    seen = _nutpie._version
    monkeypatch.setattr(_nutpie, "_version", lambda package: versions.get(package, seen(package)))


def _tested_versions():
    """One version inside each range of the first tested combination (its lower bound)."""
    return {package: spec.split(",")[0].removeprefix(">=") for package, spec in _nutpie.TESTED[0].items()}


def _untested(monkeypatch):
    _versions(monkeypatch, nutpie="0.99.0")


def _without_nutpie(monkeypatch):
    monkeypatch.setitem(sys.modules, "nutpie", None)  # `import nutpie` raises ImportError


PATHS = {
    "nutpie-lean": lambda monkeypatch: None,  # as installed (the tests skip outside the tested versions)
    "nutpie": _untested,
    "pymc": _without_nutpie,
}


MODELS = {}  # the model each backend sampled in ``trees``: it holds that backend's compiled model


@pytest.fixture(scope="module")
def trees():
    """Each backend's posterior, sampled twice with the same seed, once with another."""
    out = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for backend, select in PATHS.items():
            monkeypatch.undo()
            select(monkeypatch)
            if backend == "nutpie-lean" and not _nutpie.supported():
                continue
            model = _model()
            out[backend] = [bc.sample(model, random_seed=seed, **SETTINGS) for seed in (7, 7, 8)]
            MODELS[backend] = model
    return out


def _of(trees, backend):
    if backend not in trees:
        pytest.skip(f"the installed nutpie and PyTensor are outside bayescred._nutpie.TESTED: {_nutpie.TESTED}")
    return trees[backend]


@pytest.mark.parametrize("backend", list(PATHS))
def test_each_path_names_its_backend_and_gives_a_valid_posterior(trees, backend):
    tree = _of(trees, backend)[0]
    post = tree["posterior"].to_dataset()
    assert post.attrs["bayescred_sampler"] == backend
    assert dict(post.sizes)["chain"] == 2 and dict(post.sizes)["draw"] == 300
    for name, values in post.data_vars.items():
        assert np.isfinite(values.values).all(), name
    assert int(tree["sample_stats"]["diverging"].sum()) <= 3
    # Table 3.1's grand mean is 750; the posterior of the collective is centred there
    assert float(post["collective"].mean()) == pytest.approx(750, abs=0.2 * float(post["collective"].std()))
    # the same posterior as PyMC's NUTS samples: each hyperparameter's mean and SD agree
    reference = trees["pymc"][0]["posterior"].to_dataset()
    for name in ("collective", "between_sd", "within_sd"):
        sd = float(reference[name].std())
        assert float(post[name].mean()) == pytest.approx(float(reference[name].mean()), abs=0.25 * sd), name
        assert float(post[name].std()) == pytest.approx(sd, rel=0.2), name


@pytest.mark.parametrize("backend", ["nutpie-lean", "nutpie"])
def test_every_path_gives_the_same_variables_and_groups(trees, backend):
    tree, reference = _of(trees, backend)[0], trees["pymc"][0]
    assert set(tree.children) == set(reference.children)
    for group in reference.children:
        mine, theirs = tree[group].to_dataset(), reference[group].to_dataset()
        if group == "sample_stats":  # each sampler reports its own statistics; both report divergences
            assert "diverging" in mine and "diverging" in theirs
            continue
        assert set(mine.data_vars) == set(theirs.data_vars), group
        for name in mine.data_vars:
            assert mine[name].dims == theirs[name].dims and mine[name].shape == theirs[name].shape, name


@pytest.mark.parametrize("backend", list(PATHS))
def test_the_same_seed_gives_the_same_draws_on_each_path(trees, backend):
    first, again, other = (tree["posterior"].to_dataset() for tree in _of(trees, backend))
    for name in first.data_vars:
        np.testing.assert_array_equal(first[name].values, again[name].values, err_msg=name)
    assert not np.array_equal(first["collective"].values, other["collective"].values)


def test_lean_and_public_nutpie_compilations_sample_the_same_posterior(trees):
    # the lean path's log density is PyMC's at random points (tests/test_sampling.py), but not
    # to the last bit: it compiles the graph with one more rewrite (_nutpie._mode) and inlines
    # it into its wrapper, where LLVM may contract arithmetic across PyTensor's nodes, so the
    # two paths' NUTS trajectories part after a few hundred draws. Same variables, and the same
    # posterior within Monte Carlo error.
    import arviz as az

    lean, public = (_of(trees, backend)[0]["posterior"].to_dataset() for backend in ("nutpie-lean", "nutpie"))
    assert set(lean.data_vars) == set(public.data_vars)
    for name in (rv.name for rv in MODELS["nutpie"].free_RVs):
        se = np.hypot(*(float(az.mcse(post[[name]], method="mean")[name]) for post in (lean, public)))
        assert abs(float(lean[name].mean()) - float(public[name].mean())) < 4 * se, name


@pytest.mark.parametrize("versions,expected", [
    ({}, True),
    ({"nutpie": "0.16.10"}, False),
    ({"nutpie": "0.17.0"}, False),
    ({"nutpie": "0.17.0rc1"}, False),
    ({"pytensor": "3.4.0"}, False),
    ({"pytensor": "3.3.7"}, False),
    ({"nutpie": "not a version"}, False),
    ({"pytensor": None}, False),
])
def test_the_version_gate_admits_only_the_tested_ranges(monkeypatch, versions, expected):
    _versions(monkeypatch, **{**_tested_versions(), **versions})  # None: not installed
    assert _nutpie.supported() is expected


def _failing_compile(*args, **kwargs):
    raise RuntimeError("no such helper in this nutpie")


def test_a_failing_lean_compile_falls_back_to_nutpies_public_api(monkeypatch, trees):
    _versions(monkeypatch, **_tested_versions())
    monkeypatch.setattr(_nutpie, "compile_model", _failing_compile)
    with pytest.warns(SamplerFallbackWarning, match="'nutpie-lean'.*no such helper.*using 'nutpie'"):
        # the model nutpie's public API compiled in ``trees``: the fallback finds it compiled
        tree = bc.sample(MODELS["nutpie"], random_seed=7, **SETTINGS)
    assert tree["posterior"].attrs["bayescred_sampler"] == "nutpie"
    np.testing.assert_array_equal(tree["posterior"]["collective"].values,
                                  trees["nutpie"][0]["posterior"]["collective"].values)


def test_a_failing_nutpie_compile_falls_back_to_pymc(monkeypatch):
    import nutpie

    _untested(monkeypatch)
    monkeypatch.setattr(nutpie, "compile_pymc_model", _failing_compile)
    with pytest.warns(SamplerFallbackWarning, match="'nutpie'.*RuntimeError.*using 'pymc'"):
        tree = bc.sample(_model(), random_seed=7, **SETTINGS)
    assert tree["posterior"].attrs["bayescred_sampler"] == "pymc"


def test_asking_for_nutpie_never_falls_back_to_pymc(monkeypatch):
    import nutpie

    _untested(monkeypatch)
    monkeypatch.setattr(nutpie, "compile_pymc_model", _failing_compile)
    with pytest.raises(RuntimeError, match="no such helper"):
        bc.sample(_model(), random_seed=7, sampler="nutpie", **SETTINGS)
    _without_nutpie(monkeypatch)
    with pytest.raises(ImportError, match="sampler='nutpie' needs nutpie"):
        bc.sample(_model(), random_seed=7, sampler="nutpie", **SETTINGS)


def test_nutpie_absent_is_silent_and_nutpie_broken_is_named(monkeypatch, trees):
    import builtins
    import warnings

    _without_nutpie(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerFallbackWarning)
        tree = bc.sample(MODELS["pymc"], random_seed=7, **SETTINGS)
    assert tree["posterior"].attrs["bayescred_sampler"] == "pymc"
    monkeypatch.undo()
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # installed, but its compiled extension does not load
        if name == "nutpie":
            raise ImportError("undefined symbol: PyInit__lib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.warns(SamplerFallbackWarning, match="nutpie could not be imported.*undefined symbol.*using 'pymc'"):
        tree = bc.sample(MODELS["pymc"], random_seed=7, **SETTINGS)
    assert tree["posterior"].attrs["bayescred_sampler"] == "pymc"
    np.testing.assert_array_equal(tree["posterior"]["collective"].values,
                                  trees["pymc"][0]["posterior"]["collective"].values)


def test_asking_for_pymc_uses_pymc_with_nutpie_installed(trees):
    post = bc.sample(_model(), random_seed=7, sampler="pymc", **SETTINGS)["posterior"].to_dataset()
    assert post.attrs["bayescred_sampler"] == "pymc"
    np.testing.assert_array_equal(post["collective"].values, trees["pymc"][0]["posterior"]["collective"].values)


@pytest.mark.parametrize("backend", ["nutpie-lean", "nutpie"])
def test_data_swapped_into_a_compiled_model_give_a_fresh_compilations_draws(monkeypatch, trees, backend):
    # after pm.set_data the compiled model is reused through nutpie's with_data (SBC, coverage
    # studies): its draws are those of a model compiled afresh with the new data, on each path
    import pymc as pm

    _of(trees, backend)
    other = bc.datasets.load("buhlmann_table31").assign(loss=lambda d: d["loss"] * 1.5 + 40)
    new = {var.name: var.get_value() for var in bc.models.buhlmann(other, group="class", response="loss").data_vars}
    PATHS[backend](monkeypatch)
    fresh = _model()
    pm.set_data(new, model=fresh)
    expected = bc.sample(fresh, random_seed=7, **SETTINGS)["posterior"]
    assert expected.attrs["bayescred_sampler"] == backend
    model = MODELS[backend]
    before = {var.name: var.get_value() for var in model.data_vars}
    pm.set_data(new, model=model)
    try:
        post = bc.sample(model, random_seed=7, **SETTINGS)["posterior"]
    finally:
        pm.set_data(before, model=model)
    assert post.attrs["bayescred_sampler"] == backend
    np.testing.assert_array_equal(post["collective"].values, expected["collective"].values)
    assert not np.array_equal(post["collective"].values, trees[backend][0]["posterior"]["collective"].values)


def test_the_lean_wrapper_inlines_the_graphs_own_function_not_pytensors_wrappers():
    """_nutpie._inlined hands the wrapper the graph's own Python function (calling the node
    functions), to be inlined as Numba IR, rather than PyTensor's final and cache wrappers around
    it, which numba would optimise and emit again; and a plain numba function's own body."""
    pytest.importorskip("nutpie")
    import numba
    import pytensor
    import pytensor.tensor as pt

    x = pt.dvector("x")
    fn = pytensor.function([x], [pt.sum(pt.exp(x)), pt.exp(x)], mode="NUMBA")
    final = fn.vm.jit_fn
    inlined = _nutpie._inlined(final)
    assert inlined is not final and inlined.targetoptions.get("inline") == "always"
    assert "jitable_func" not in inlined.py_func.__code__.co_names  # past the cache wrapper
    assert inlined.py_func is not final.py_func
    total, values = numba.njit(lambda v: inlined(v))(np.array([0.0, 1.0]))
    np.testing.assert_allclose([total, *values], [1 + np.e, 1.0, np.e])
    plain = numba.njit(lambda v: v + 1.0)
    assert _nutpie._inlined(plain).py_func is plain.py_func


def test_the_lean_mode_removes_an_expand_then_squeeze_and_keeps_other_dimshuffles():
    """_nutpie._mode() is PyTensor's NUMBA mode plus a rewrite of Squeeze(ExpandDims(x)) to x
    (pairs PyTensor's numba rewrites leave around scalar shared variables); a pair of
    DimShuffles that does something stays, and the values are PyTensor's."""
    pytest.importorskip("nutpie")
    import pytensor
    import pytensor.tensor as pt

    s = pytensor.shared(np.array(2.0), name="s")
    m = pt.dmatrix("m")
    back = pt.expand_dims(s, 0).squeeze(0)
    identity = _nutpie._expand_then_squeeze().transform
    fgraph = pytensor.graph.fg.FunctionGraph(outputs=[back], clone=False)
    assert identity(fgraph, back.owner) == [s]
    swapped = m.dimshuffle(1, 0).dimshuffle("x", 0, 1)  # a transpose then a new axis: kept
    fgraph = pytensor.graph.fg.FunctionGraph([m], [swapped], clone=False)
    assert identity(fgraph, swapped.owner) is None

    # in a factory's log density and gradient, PyTensor's own NUMBA mode leaves such pairs
    model = bc.models.buhlmann(pd.DataFrame({"risk": np.repeat(np.arange(4), 3), "y": np.arange(12.0)}), "risk", "y")
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    logp = model.logp()
    outputs = [logp, *pytensor.grad(logp, values)]
    point = [np.asarray(v) for v in model.initial_point().values()]

    def pairs(fn):
        return [node for node in fn.maker.fgraph.apply_nodes if "Squeeze" in str(node.op)
                and node.inputs[0].owner is not None and "ExpandDims" in str(node.inputs[0].owner.op)]

    plain = pytensor.function(values, outputs, mode="NUMBA")
    ours = pytensor.function(values, outputs, mode=_nutpie._mode())
    assert pairs(plain) and not pairs(ours)
    for got, want in zip(ours(*point), plain(*point)):
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_the_lean_mode_reads_the_first_coordinate_as_a_native_scalar():
    """nutpie's log density reads its first parameter as x[:1] reshaped to a scalar (the others
    as x[i]); PyTensor's NUMBA mode keeps that as a slice, a squeeze and a conversion (a strided
    view numba compiles on a machine's first fit), _nutpie._mode() as the native scalar read
    the other coordinates get. The values are PyTensor's; a slice of another length stays."""
    pytest.importorskip("nutpie")
    import pytensor
    import pytensor.tensor as pt

    x = pt.dvector("x")
    point = np.array([0.5, 2.0, 3.0])

    def ops(fn):
        return [str(node.op) for node in fn.maker.fgraph.toposort()]

    out = pt.exp(x[:1].reshape(())) * x[1] + x[2]
    plain = pytensor.function([x], out, mode="NUMBA")
    ours = pytensor.function([x], out, mode=_nutpie._mode())
    assert "Subtensor{:stop}" in ops(plain) and "Squeeze{axis=0}" in ops(plain)
    assert "Subtensor{:stop}" not in ops(ours) and "Squeeze{axis=0}" not in ops(ours)
    assert ops(ours).count("ScalarSubtensor{i}") == 3
    np.testing.assert_allclose(ours(point), plain(point), rtol=1e-15)
    np.testing.assert_allclose(ours(point), np.exp(0.5) * 2.0 + 3.0, rtol=1e-15)

    two = pt.exp(x[:2]).sum()  # a longer slice is not a coordinate
    kept = pytensor.function([x], two, mode=_nutpie._mode())
    assert any("Subtensor" in op and "Scalar" not in op for op in ops(kept))
    np.testing.assert_allclose(kept(point), np.exp(0.5) + np.exp(2.0), rtol=1e-15)


def test_the_lean_compilation_builds_no_c_code(monkeypatch):
    """The start values and shapes nutpie evaluates a few times are PyTensor functions in Python,
    not C compiled by gcc (0.5 s of a machine's first fit); the setting is PyTensor's as before."""
    pytest.importorskip("nutpie")
    import nutpie.compile_pymc as ncp
    import pymc.initial_point
    import pytensor

    seen, before = [], pytensor.config.cxx

    def recording(original):
        def call(*args, **kwargs):
            seen.append(pytensor.config.cxx)
            return original(*args, **kwargs)
        return call

    for module, name in ((pymc.initial_point, "make_initial_point_fn"), (ncp, "_make_functions")):
        monkeypatch.setattr(module, name, recording(getattr(module, name)))
    _nutpie.compile_model(_model(), ["collective", "between_sd", "within_sd"])
    assert seen and set(seen) == {""}
    assert pytensor.config.cxx == before
