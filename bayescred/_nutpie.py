"""Compile a PyMC model for nutpie with lean, disk-cached C wrappers.

``nutpie.compile_pymc_model`` wraps PyTensor's numba function in a C callback whose body
(array broadcasting, ``np.all(np.isfinite(...))``, the unpacking of the data) numba compiles
anew in every process: about 2.5 s, whatever the model, although PyTensor's own numba code
is cached on disk. The wrappers here are generated as source: they unpack the data from
nutpie's user-data record by fixed offsets and copy the gradient and the trace values with
plain loops, and they are registered with PyTensor's numba cache under a key derived from
their source and the wrapped function's own key. The data (and the data-scaled default
priors, ``priors.from_data``) stay shared variables, so the compiled code depends on the
model's structure only: a later process, fitting any portfolio with the same factory, loads
it from disk. Everything else (the PyTensor functions, the user-data layout, ``with_data``,
the sampler) is nutpie's own.

Measured on the 1,000-risk Bühlmann benchmark in a fresh process: compilation 3.6 s ->
about 0.8 s, of which about 0.3 s is numba initialising itself (``benchmarks/bench_bayes.py``).
The helpers used are private to nutpie (``_wrap_with_lock``, ``_make_functions``,
``make_user_data``, ``_prepare_dims_and_coords``, ``address_as_void_pointer``) and to PyTensor
(its numba cache: ``CACHED_SRC_FUNCTIONS``, ``compile_numba_function_src``), so this path is
taken only for the versions it was tested with (:data:`TESTED`, :func:`supported`);
``bc.sample`` uses nutpie's public ``compile_pymc_model`` otherwise
(``tests/test_sampling_backends.py``). ``tests/test_sampling.py`` checks the log density,
gradient and trace values against PyMC's.
"""

from __future__ import annotations

import functools
import hashlib
import math
from importlib import metadata

import numpy as np

# The package versions this module was tested with: one mapping per tested combination,
# each package's PEP 440 range (pre-releases excluded). Add a combination once
# tests/test_sampling.py and tests/test_sampling_backends.py pass with it.
TESTED = (
    {"nutpie": ">=0.16.11,<0.17", "pytensor": ">=3.3.8,<3.4"},
)


def _version(package: str) -> str | None:
    """The installed version of ``package`` (None when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def supported() -> bool:
    """Whether the installed nutpie and PyTensor fall within one of the :data:`TESTED` combinations."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    def within(package: str, spec: str) -> bool:
        installed = _version(package)
        try:
            return installed is not None and Version(installed) in SpecifierSet(spec)
        except InvalidVersion:
            return False

    return any(all(within(package, spec) for package, spec in combination.items()) for combination in TESTED)

_LOGP_SRC = """
def logp(dim, x_, grad_, logp_, user_data_):
    try:
{unpack}        value, grad = inner(carray(x_, (dim,)){shared})
    except Exception:
        return 1
    if grad.shape[0] != dim:
        return -1
    logp_[0] = value[()]
    status = 0
    for i in range(dim):
        grad_[i] = grad[i]
        if not isfinite(grad[i]):
            status = 3
    if status == 0 and not isfinite(logp_[0]):
        status = 4
    return status
"""
# nutpie's callback contract: write logp and its gradient and return 0; 1 (an error in the
# log density, e.g. a failed Cholesky), 3 (non-finite gradient) or 4 (non-finite logp) make
# nutpie reject the point, as its own wrapper does. The sizes are read at run time, so the
# source (and the disk-cache key) does not depend on the number of risks.

_EXPAND_SRC = """
def expand(dim, expanded, x_, out_, user_data_):
    try:
{unpack}        (values,) = inner(carray(x_, (dim,)){shared})
    except Exception:
        return -2
    if values.shape[0] != expanded:  # data of another size swapped in
        return -3
    for i in range(expanded):
        out_[i] = values[i]
    return 0
"""
# Writes the values nutpie stores for one draw: the parameters and the kept deterministics
# (-3 when data of another size were swapped in: bc.sample compiles again for new shapes).

_IDENTITY_SRC = """
def expand(dim, expanded, x_, out_, user_data_):
    for i in range(expanded):
        out_[i] = x_[i]
    return 0
"""
# When nutpie is to store the parameters alone, it stores its own coordinates: the draw as it
# is, with no PyTensor function behind it (numba compiled the parameters' transforms in the
# expansion for 0.6-0.9 s on a machine's first fit); bc.sample maps them back afterwards
# (sampling._constrain).


def compile_model(model, var_names):
    """nutpie's ``CompiledPyMCModel`` for ``model``: as ``nutpie.compile_pymc_model(model,
    var_names=...)`` but with the lean wrappers. The data stay shared variables (swapped with
    ``with_data``). When ``var_names`` are the model's free variables alone, the trace holds the
    sampler's unconstrained coordinates under the value variables' names (e.g.
    ``within_sd_log__``), for ``sampling._constrain`` to transform back."""
    import nutpie.compile_pymc as ncp
    import pytensor
    from pymc.initial_point import make_initial_point_fn

    unconstrained = sorted(var_names) == sorted(rv.name for rv in model.free_RVs)
    # nutpie evaluates the start values and shapes in Python, a few times: PyTensor's Python
    # implementations, not C compiled by gcc (0.5 s of a machine's first fit); the log density numba
    with pytensor.config.change_flags(cxx=""):
        initial_point = ncp._wrap_with_lock(make_initial_point_fn(
            model=model, default_strategy="support_point", jitter_rvs=set(model.free_RVs), return_transformed=True))
        n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, reparameterized = ncp._make_functions(
            model, mode=_mode(), compute_grad=True, join_expanded=True,
            pymc_initial_point_fn=initial_point, var_names=[] if unconstrained else var_names)

    keys, shared_data = {}, {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var not in keys:
            keys[var] = f"shared_{len(keys)}"
            value = np.array(var.get_value(), order="C", copy=True)
            value.flags.writeable = False
            shared_data[keys[var]] = value
    user_data = ncp.make_user_data(keys, shared_data)

    def wrap(src, fn, signature):
        unpack, shared = _unpack_source(fn, keys, shared_data, user_data.dtype)
        src = src.format(unpack=unpack, shared=shared)
        return _cfunc(src, fn.vm.jit_fn, signature)

    logp_c = wrap(_LOGP_SRC, logp_pt, _logp_signature())
    expand_c = (_cfunc(_IDENTITY_SRC, None, _expand_signature()) if unconstrained
                else wrap(_EXPAND_SRC, expand_pt, _expand_signature()))
    dims, coords = ncp._prepare_dims_and_coords(model, shape_info, reparameterized)
    return ncp.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords, _shapes={n: tuple(s) for n, _, s in zip(*shape_info)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=initial_point_fn,
        shared_data=shared_data, shared_var_keys=keys, user_data=user_data, n_expanded=n_expanded,
        shape_info=shape_info, logp_func=logp_pt, expand_func=expand_pt,
        # nutpie drops the values of these names from the posterior: kept when they are the trace
        reparameterized_names=[] if unconstrained else reparameterized)


def _mode():
    """PyTensor's NUMBA mode with two more rewrites after its own: :func:`_first_coordinate`
    and :func:`_expand_then_squeeze`."""
    from pytensor.compile.mode import get_mode
    from pytensor.graph.rewriting.basic import dfs_rewriter

    return get_mode("NUMBA").register((dfs_rewriter(_first_coordinate(), _expand_then_squeeze()), 100.5))


@functools.cache
def _first_coordinate():
    """A rewrite of ``ScalarFromTensor(Squeeze(x[:1]))``, for a vector ``x``, to PyTensor's
    native scalar read of ``x[0]``. The log density reads its first parameter from the
    sampler's point as a slice (the others as ``x[i]``, which PyTensor's numba rewrites read as
    native scalars); the squeezed slice's numba functions (a strided view and its squeeze) took
    about 0.1 s of a machine's first Bühlmann fit (3.06 -> 2.98 s, median of 4, benchmarks/bench_bayes.py
    portfolio 3)."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.scalar import constant
    from pytensor.tensor.basic import ScalarFromTensor, scalar_from_tensor
    from pytensor.tensor.elemwise import DimShuffle
    from pytensor.tensor.rewriting.scalarize import ScalarSubtensor
    from pytensor.tensor.subtensor import Subtensor

    @node_rewriter([ScalarFromTensor])
    def first_coordinate(fgraph, node):
        squeeze = node.inputs[0].owner
        if squeeze is None or not isinstance(squeeze.op, DimShuffle) or squeeze.op.new_order != ():
            return None
        sliced = squeeze.inputs[0].owner
        if sliced is None or not isinstance(sliced.op, Subtensor) or sliced.op.idx_list != (slice(None, 0, None),):
            return None
        x, stop = sliced.inputs
        if x.type.ndim != 1 or not isinstance(stop, Constant) or stop.data != 1:
            return None
        read = x[0].owner.op.make_node(x, constant(np.uint8(0)))  # as PyTensor reads the other coordinates
        inner = [value.type() for value in read.inputs]
        return [ScalarSubtensor(inner, [scalar_from_tensor(read.op(*inner))])(*read.inputs)]

    return first_coordinate


@functools.cache
def _expand_then_squeeze():
    """A rewrite of ``Squeeze(ExpandDims(x))`` (a DimShuffle of a DimShuffle that together do
    nothing) to ``x``. PyTensor's numba rewrites (position 100, after its canonical ones) leave
    such pairs around every scalar shared variable a log density reads: a factory's data-scaled
    prior scales and its location shift. Each pair costs two numba functions (0.4 s of a
    machine's first Bühlmann fit) and two calls per gradient."""
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.tensor.elemwise import DimShuffle

    @node_rewriter([DimShuffle])
    def expand_then_squeeze(fgraph, node):
        inner = node.inputs[0].owner
        if inner is None or not isinstance(inner.op, DimShuffle):
            return None
        order = [axis if axis == "x" else inner.op.new_order[axis] for axis in node.op.new_order]
        x = inner.inputs[0]
        if order == list(range(x.type.ndim)) and x.type == node.outputs[0].type:
            return [x]
        return None

    return expand_then_squeeze


def _unpack_source(fn, keys, shared_data, record_dtype) -> tuple[str, str]:
    """Source lines that rebuild ``fn``'s shared inputs (the data) from nutpie's user-data
    record (pointer and shape of each array, 8-byte words at offsets fixed by the record's
    dtype), and the argument list that passes them on. The data stay out of the compiled
    code, so the wrappers are cached once per model structure, not per portfolio."""
    shared = fn.get_shared()
    if not shared:
        return "", ""
    top = record_dtype["shared"]
    base = record_dtype.fields["shared"][1]

    def word(group, key):
        offset = base + top.fields[group][1] + top[group].fields[key][1]
        assert offset % 8 == 0
        return offset // 8

    lines = [f"        meta = carray(user_data_, ({record_dtype.itemsize // 8},), np.uint64)"]
    for i, var in enumerate(shared):
        key, value = keys[var], shared_data[keys[var]]
        pointer = f"as_pointer(meta[{word('data', key)}])"
        if value.ndim == 0:
            lines.append(f"        shared_{i} = carray({pointer}, (1,), np.{value.dtype.name}).reshape(())")
        else:
            shape = "".join(f"int(meta[{word('shape', key) + j}]), " for j in range(value.ndim))
            lines.append(f"        shared_{i} = carray({pointer}, ({shape}), np.{value.dtype.name})")
    return "\n".join(lines) + "\n", "".join(f", shared_{i}" for i in range(len(shared)))


def _cfunc(src: str, inner, signature):
    """Compile the wrapper ``src`` around ``inner`` (PyTensor's numba function, or None) as a C
    callback; cached on disk, in PyTensor's numba cache, under a key covering the wrapper's
    source and ``inner``'s own key (not cached when PyTensor could not cache ``inner``)."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    name = src.split("def ", 1)[1].split("(", 1)[0]
    inner_key = "" if inner is None else CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    key = None if inner_key is None else hashlib.sha256(
        f"{src}\n{inner_key}\n{_version_of_this_file()}".encode()).hexdigest()
    env = {"__name__": __name__, "inner": None if inner is None else _inlined(inner), "carray": numba.carray,
           "isfinite": math.isfinite, "np": np, "as_pointer": address_as_void_pointer}
    fn = compile_numba_function_src(src, name, env, cache_key=None if key is None else f"bayescred_{name}_{key}")
    return numba.cfunc(signature, cache=key is not None)(fn)


@functools.cache
def _version_of_this_file() -> str:
    """A hash of this module's source, part of every wrapper's disk-cache key: a wrapper compiled
    by an earlier version of this module (other inlining, other rewrites) is never read back."""
    from pathlib import Path

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _inlined(inner):
    """PyTensor's function for the whole graph, to be inlined into the wrapper, as Numba IR.

    numba optimises and emits machine code for a function together with everything it calls,
    at every level of nesting. PyTensor nests a graph's node functions in the graph's function,
    in a cache wrapper around it and in a final function around that; calling the final function
    from the wrapper would optimise and emit the whole graph twice more. Inlining the graph's
    own Python function (``jitable_func`` in PyTensor's cache wrapper) makes the node functions
    the wrapper's direct callees: on a machine's first Hachemeister posterior the wrapper
    compiles in 5.7 s rather than 6.2 s. The compiled wrapper computes the same function
    (tests/test_sampling.py checks it against PyMC's log density). A graph PyTensor could not
    cache has no cache wrapper; its own function is inlined then."""
    import numba

    graph = getattr(inner, "py_func", None)
    graph = getattr(graph, "__globals__", {}).get("jitable_func", inner)
    py_func = getattr(graph, "py_func", None)
    return inner if py_func is None else numba.njit(inline="always")(py_func)


def _logp_signature():
    from numba import types

    double = types.CPointer(types.double)
    return types.int64(types.uint64, double, double, double, types.voidptr)


def _expand_signature():
    from numba import types

    double = types.CPointer(types.double)
    return types.int64(types.uint64, types.uint64, double, double, types.voidptr)
