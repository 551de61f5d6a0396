"""Compile a PyMC model for nutpie with lean, disk-cached C wrappers.

``nutpie.compile_pymc_model`` wraps PyTensor's numba function in a C callback whose body
(array broadcasting, ``np.all(np.isfinite(...))``) numba compiles anew in every process:
about 2.5 s, whatever the model, although PyTensor's own numba code is cached on disk.
The wrappers here copy the gradient and the trace values with plain loops, and for a model
whose data are frozen into the graph they are registered with PyTensor's numba cache under
a key derived from the wrapped function's own key, so a later process loads them from
disk. Everything else (the PyTensor functions, the shared-data layout, the sampler) is
nutpie's own, so nutpie samples the same log density.

Measured on the 1,000-risk Bühlmann benchmark in a fresh process: compilation 3.6 s ->
about 0.9 s, of which about 0.3 s is numba initialising itself (``benchmarks/bench_bayes.py``).
The nutpie helpers used are those of nutpie 0.16 (pinned in ``pyproject.toml``);
``tests/test_sampling.py`` checks that the log density and gradient equal nutpie's.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

_LOGP_SRC = """
def logp(dim, x_, grad_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        value, grad = inner(carray(x_, ({n_dim},)){user_data})
    except Exception:
        return 1
    logp_[0] = value[()]
    status = 0
    for i in range({n_dim}):
        grad_[i] = grad[i]
        if not isfinite(grad[i]):
            status = 3
    if status == 0 and not isfinite(logp_[0]):
        status = 4
    return status
"""
# nutpie's callback contract: write logp and its gradient and return 0; 1 (an error in the
# log density, e.g. a failed Cholesky), 3 (non-finite gradient) or 4 (non-finite logp) make
# nutpie reject the point, as its own wrapper does.

_EXPAND_SRC = """
def expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim} or expanded != {n_expanded}:
        return -1
    try:
        (values,) = inner(carray(x_, ({n_dim},)){user_data})
    except Exception:
        return -2
    for i in range({n_expanded}):
        out_[i] = values[i]
    return 0
"""
# Writes the values nutpie stores for one draw: the parameters and the kept deterministics.


def compile_model(model, var_names, freeze: bool):
    """nutpie's ``CompiledPyMCModel`` for ``model``: as ``nutpie.compile_pymc_model(model,
    var_names=..., freeze_model=freeze)`` but with the lean wrappers."""
    import nutpie.compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn
    from pymc.model.transform.optimization import freeze_dims_and_data

    if freeze:
        model = freeze_dims_and_data(model)
    initial_point = ncp._wrap_with_lock(make_initial_point_fn(
        model=model, default_strategy="support_point", jitter_rvs=set(model.free_RVs), return_transformed=True))
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, reparameterized = ncp._make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=initial_point, var_names=var_names)

    keys, shared_data = {}, {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var not in keys:
            keys[var] = f"shared_{len(keys)}"
            value = np.array(var.get_value(), order="C", copy=True)
            value.flags.writeable = False
            shared_data[keys[var]] = value
    user_data = ncp.make_user_data(keys, shared_data)

    def wrap(src, fn, signature):
        jit_fn = fn.vm.jit_fn
        if fn.get_shared():  # data passed at run time through user_data: nutpie's extraction
            inner = ncp.make_extraction_fn(jit_fn, shared_data, [keys[v] for v in fn.get_shared()], user_data.dtype)
            return _cfunc(src.format(n_dim=n_dim, n_expanded=n_expanded, user_data=", user_data_"), inner, signature, None)
        return _cfunc(src.format(n_dim=n_dim, n_expanded=n_expanded, user_data=""), jit_fn, signature, _cache_key(jit_fn))

    logp_c = wrap(_LOGP_SRC, logp_pt, _logp_signature())
    expand_c = wrap(_EXPAND_SRC, expand_pt, _expand_signature())
    dims, coords = ncp._prepare_dims_and_coords(model, shape_info, reparameterized)
    return ncp.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords, _shapes={n: tuple(s) for n, _, s in zip(*shape_info)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=initial_point_fn,
        shared_data=shared_data, shared_var_keys=keys, user_data=user_data, n_expanded=n_expanded,
        shape_info=shape_info, logp_func=logp_pt, expand_func=expand_pt, reparameterized_names=reparameterized)


def _cache_key(jit_fn) -> str | None:
    """PyTensor's cache key of the wrapped function (None when PyTensor could not cache it)."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    return CACHED_SRC_FUNCTIONS.get(getattr(jit_fn, "py_func", None))


def _cfunc(src: str, inner, signature, inner_key: str | None):
    """Compile the wrapper ``src`` around ``inner`` as a C callback; cached on disk (in
    PyTensor's numba cache) when ``inner`` is, under a key covering both sources."""
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    name = src.split("def ", 1)[1].split("(", 1)[0]
    key = None if inner_key is None else hashlib.sha256(f"{src}\n{inner_key}".encode()).hexdigest()
    env = {"__name__": __name__, "inner": inner, "carray": numba.carray, "isfinite": math.isfinite}
    fn = compile_numba_function_src(src, name, env, cache_key=None if key is None else f"bayescred_{name}_{key}")
    return numba.cfunc(signature, cache=key is not None)(fn)


def _logp_signature():
    from numba import types

    double = types.CPointer(types.double)
    return types.int64(types.uint64, double, double, double, types.voidptr)


def _expand_signature():
    from numba import types

    double = types.CPointer(types.double)
    return types.int64(types.uint64, types.uint64, double, double, types.voidptr)
