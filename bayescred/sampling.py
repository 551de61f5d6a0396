"""``bc.sample``: run a factory's model with good defaults and finish its posterior.

nutpie (when installed) or PyMC's NUTS samples the hyperparameters; then, for a marginal
model, every risk's effect is drawn from its exact conditional distribution given each
draw, and the pointwise log-likelihood (for LOO), the posterior predictive and the observed
data are added. The result is an ArviZ 1.x ``xarray.DataTree``.

Three sampler backends, the first that applies (recorded as the posterior's attribute
``bayescred_sampler``):

* ``"nutpie-lean"``: nutpie with :mod:`bayescred._nutpie`'s disk-cached wrappers, only for
  the nutpie and PyTensor versions that module was tested with (``_nutpie.TESTED``);
* ``"nutpie"``: nutpie's public ``nutpie.compile_pymc_model``;
* ``"pymc"``: PyMC's own NUTS, when nutpie is not installed or could not compile the model
  (a :class:`~bayescred.errors.SamplerFallbackWarning` says why).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pymc as pm
import xarray as xr

from ._pages import small_pages
from .errors import ArgumentError, ConvergenceWarning, PosteriorSizeError, SamplerFallbackWarning
from .models._base import info_of
from .progress import enabled as show_progress

__all__ = ["sample"]


def _check_sampler(sampler: str | None) -> None:
    if sampler not in (None, "nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")


def _nutpie_importable(strict: bool) -> bool:
    """Whether nutpie imports; an installed nutpie that fails to import is named in a warning
    (``strict``, from ``sampler="nutpie"``: an error)."""
    try:
        import nutpie  # noqa: F401
    except ImportError as exc:
        if strict:
            raise ImportError(f"sampler='nutpie' needs nutpie (pip install 'bayescred[fast]'): {exc}") from exc
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == "nutpie"):  # installed, but broken
            warnings.warn(f"nutpie could not be imported ({type(exc).__name__}: {exc}); using 'pymc'",
                          SamplerFallbackWarning, stacklevel=3)
        return False
    return True


def _nutpie_backends() -> tuple[str, ...]:
    """The nutpie compile paths to try, fastest first."""
    from ._nutpie import supported

    return ("nutpie-lean", "nutpie") if supported() else ("nutpie",)


def _compile(model, var_names: list[str], backend: str):
    if backend == "nutpie-lean":
        from ._nutpie import compile_model

        return compile_model(model, var_names)
    import nutpie

    return nutpie.compile_pymc_model(model, backend="numba", var_names=var_names)


_LARGE = 20_000  # per-draw elements of deterministics above which they are computed after sampling


def _stored(model) -> list[str]:
    """What the sampler keeps. For a factory's model, the parameters alone: its deterministics
    are computed after sampling, vectorised over the draws (:func:`_evaluate`), so the
    sampler's compiled code holds the log density and the parameters' transforms only (the
    deterministics in nutpie's compiled expansion cost 1.6 s of numba compilation on a
    machine's first Hachemeister fit). For any other PyMC model, also the deterministics of
    moderate size; never the pointwise log-likelihood (computed afterwards when asked for)."""
    params = [rv.name for rv in model.free_RVs]
    if info_of(model) is not None:
        return params
    sizes = {d.name: _size(model, d) for d in model.deterministics if d.name != "loglik"}
    large = sum(sizes.values()) > _LARGE
    return params + [n for n, size in sizes.items() if not (large and size > 1_000)]


def _size(model, var) -> int:
    dims = model.named_vars_to_dims.get(var.name)
    if dims:
        return int(np.prod([len(model.coords[d]) for d in dims]))
    static = var.type.shape
    return int(np.prod(static)) if all(s is not None for s in static) else 1


def _deferred(model, stored) -> list[str]:
    """The deterministics computed after sampling: all but those stored, the pointwise
    log-likelihood and what the factory's ``augment`` computes itself (``ModelInfo.after``)."""
    info = info_of(model)
    skip = {"loglik", *stored, *(info.after if info is not None else ())}
    return [d.name for d in model.deterministics if d.name not in skip]


_CHUNK = 4_000_000  # output elements per call of the vectorised deterministics


def _evaluate(model, posterior: xr.Dataset, names: list[str]) -> xr.Dataset:
    """The deterministics ``names`` at every draw of ``posterior``, for a factory's model: the
    model's own graph, vectorised over the draws (``vectorize_graph``) and run by PyTensor's
    Python linker, i.e. numpy, a block of draws at a time; nothing is compiled, so a machine's
    first fit pays no compilation for them. Equal to ``pm.compute_deterministics``
    (tests/test_sampling.py)."""
    return _vectorised(model, posterior, {rv: rv.name for rv in model.free_RVs}, [model[n] for n in names], names)


def _constrain(model, posterior: xr.Dataset) -> xr.Dataset:
    """A posterior whose transformed parameters nutpie stored as its own unconstrained
    coordinates (``bayescred._nutpie``: value variables such as ``within_sd_log__``), with each
    parameter back on its scale under the model's name for it, by PyMC's backward transforms
    (``replace_rvs_by_values``), vectorised as in :func:`_evaluate`. Any other posterior as it is."""
    values = {model.rvs_to_values[rv]: rv for rv in model.free_RVs}
    transformed = [rv for value, rv in values.items() if value.name != rv.name and value.name in posterior]
    if not transformed:
        return posterior
    out = _vectorised(model, posterior, {value: value.name for value in values},
                      model.replace_rvs_by_values(transformed), [rv.name for rv in transformed])
    return posterior.drop_vars([model.rvs_to_values[rv].name for rv in transformed]).assign(out)


def _vectorised(model, posterior: xr.Dataset, inputs: dict, outputs: list, names: list[str]) -> xr.Dataset:
    """``outputs`` (graphs of the variables ``inputs``, each read from ``posterior`` under its
    name there) at every draw, named ``names`` with the model's dims for them."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.graph.replace import vectorize_graph

    batched = {var: pt.tensor(name=name, shape=(None, *var.type.shape), dtype=var.dtype) for var, name in inputs.items()}
    fn = pytensor.function(list(batched.values()), vectorize_graph(outputs, replace=batched),
                           mode=Mode(linker="py", optimizer="fast_compile"), on_unused_input="ignore")
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    flat = [posterior[name].values.reshape(chains * draws, *posterior[name].shape[2:]) for name in inputs.values()]
    per_draw = sum(_size(model, model[name]) for name in names)
    block = max(1, _CHUNK // max(per_draw, 1))
    parts = [fn(*[x[start:start + block] for x in flat]) for start in range(0, chains * draws, block)]
    out = {}
    for i, name in enumerate(names):
        values = [np.asarray(p[i]) for p in parts]
        if values[0].ndim == model[name].ndim:  # a deterministic no parameter moves: the same at every draw
            values = np.broadcast_to(values[0], (chains * draws, *values[0].shape)).copy()
        else:
            values = np.concatenate(values) if len(values) > 1 else values[0]
        values = values.reshape(chains, draws, *values.shape[1:])
        dims = model.named_vars_to_dims.get(name) or [f"{name}_dim_{j}" for j in range(values.ndim - 2)]
        coords = {d: list(model.coords[d]) for d in dims if d in model.coords}
        out[name] = xr.DataArray(values, dims=("chain", "draw", *dims),
                                 coords={"chain": posterior["chain"], "draw": posterior["draw"], **coords})
    return xr.Dataset(out)


def _current_data(model) -> dict:
    return {d.name: np.asarray(d.get_value()) for d in model.data_vars}


def _run_nutpie(model, info, draws, tune, chains, seed, progressbar, cores, target_accept, strict):
    """Sample with nutpie: ``(tree, backend)``, or None when neither nutpie compile path could
    compile the model (``strict``, from ``sampler="nutpie"``: raise instead).

    Compiled once per backend, model, stored variables and data shapes; after ``pm.set_data``
    the new data are swapped into the compiled model with nutpie's ``with_data`` (SBC and
    refits reuse it). Compiling again for new shapes is cheap: the compiled code comes from
    the disk cache."""
    import nutpie

    cache = info.compiled if info is not None else {}
    data = _current_data(model)
    stored = _stored(model)
    shapes = tuple((k, v.shape) for k, v in sorted(data.items()))
    backends = _nutpie_backends()
    for i, backend in enumerate(backends):
        key = (backend, tuple(stored), shapes)
        if key in cache:
            break
        try:
            cache[key] = (_compile(model, stored, backend), data)
            break
        except Exception as exc:  # a compile failure, e.g. an internal name gone in a newer release
            if strict and i == len(backends) - 1:
                raise
            fallback = backends[i + 1] if i + 1 < len(backends) else "pymc"
            first = (str(exc).strip().splitlines() or [""])[0]
            warnings.warn(f"the {backend!r} sampler could not compile the model ({type(exc).__name__}: {first}); "
                          f"using {fallback!r}", SamplerFallbackWarning, stacklevel=3)
    else:
        return None
    compiled, held = cache[key]
    for name, value in data.items():
        if not np.array_equal(held[name], value):
            try:
                compiled = compiled.with_data(**{name: value})
            except KeyError:  # data that neither the log density nor the stored values read
                continue
    kwargs = {"cores": cores} if cores is not None else {}
    tree = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=progressbar,
                         save_warmup=False, target_accept=target_accept, **kwargs)
    return tree, backend


def _run_pymc(model, draws, tune, chains, seed, progressbar, cores, target_accept):
    kwargs = {"cores": cores} if cores is not None else {}
    return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=progressbar, model=model,
                     target_accept=target_accept,
                     var_names=_stored(model), compute_convergence_checks=False, nuts_sampler="pymc", **kwargs)


def sample(model, *, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int,
           sampler: str | None = None, cores: int | None = None, progressbar: bool | None = None,
           target_accept: float | None = None,
           log_likelihood: bool | None = None, posterior_predictive: bool | None = None,
           per_risk: str = "draws") -> xr.DataTree:
    """Sample ``model`` (a ``bayescred.models`` factory's model, or any PyMC model) and return a DataTree.

    ``random_seed`` is required: the same seed gives the same numbers (sampler and the
    post-sampling draws use independent streams spawned from it). ``sampler``: None (the
    default: nutpie when installed and able to compile the model, else PyMC's NUTS, see the
    module docstring), "nutpie" (an error when nutpie cannot compile the model) or "pymc";
    the backend used is the posterior's attribute ``bayescred_sampler``. ``target_accept``
    defaults to the model's own setting: 0.9 rather than 0.8 (with few risks the posterior of the between SD is wide and
    skewed; 0.8 gave a few divergences on Table 3.1, 3 classes, where 0.9 gave none), 0.95
    for the crossed model and for every ``likelihood="latent"`` model. Progress is shown when ``progressbar`` is True, or,
    by default, when standard error is a terminal (:mod:`bayescred.progress`).

    Groups: ``posterior`` (hyperparameters and the actuary's quantities; for a marginal
    model also ``premium`` and ``u``: exact draws of each risk's mean and effect from their
    conditional distribution, with the credibility premium at each draw's hyperparameters
    kept as ``premium_conditional_mean``), ``sample_stats``, ``log_likelihood`` (pointwise,
    per risk for the marginal models), ``posterior_predictive`` and ``observed_data``.
    A warning (:class:`~bayescred.errors.ConvergenceWarning`) reports divergences.

    ``per_risk``: "draws" (the default) keeps every risk's draws as above; "summary" (Bühlmann and
    Bühlmann–Straub marginal models) keeps the hyperparameters' draws and, in the group
    ``risk_summary``, each risk's posterior mean, sd and 5 %, 50 % and 95 % quantiles of ``premium``,
    ``premium_conditional_mean`` and ``Z`` on (risk, statistic), computed a block of risks at a
    time: memory no longer grows with risks x draws, which is what a portfolio of a million risks
    needs. The per-risk ``log_likelihood`` and ``posterior_predictive`` groups are then left out
    (both default to True with "draws" and False with "summary"). Per-risk draws that would need more
    than half this machine's memory are refused before sampling
    (:class:`~bayescred.errors.PosteriorSizeError`, naming ``per_risk="summary"``).
    """
    _check_sampler(sampler)
    if per_risk not in ("draws", "summary"):
        raise ArgumentError(f"per_risk must be 'draws' or 'summary', got {per_risk!r}")
    summary = per_risk == "summary"
    for name, value in (("log_likelihood", log_likelihood), ("posterior_predictive", posterior_predictive)):
        if summary and value:
            raise ArgumentError(f"{name}=True keeps every risk's draws; per_risk='summary' leaves them out")
    if random_seed is None:
        raise ValueError("random_seed is required: pass an integer so that results can be reproduced")
    for name, value in (("draws", draws), ("tune", tune), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or value < (1 if name != "tune" else 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    log_likelihood = not summary if log_likelihood is None else bool(log_likelihood)
    posterior_predictive = not summary if posterior_predictive is None else bool(posterior_predictive)
    info = info_of(model)
    if summary and (info is None or info.summarise is None):
        raise ArgumentError("per_risk='summary' is offered by the Bühlmann and Bühlmann–Straub marginal models "
                            "(bc.models.buhlmann, bc.models.buhlmann_straub, likelihood='marginal')")
    if not summary:
        _check_size(model, info, chains * draws, log_likelihood, posterior_predictive)
    if target_accept is None:
        target_accept = info.target_accept if info is not None else 0.9
        if info is not None and info.likelihood == "latent":  # non-centred effects: funnel remnants with few risks
            target_accept = max(target_accept, 0.95)
    seeds = np.random.SeedSequence(random_seed).spawn(2)
    sampler_seed = int(seeds[0].generate_state(1)[0])
    rng = np.random.default_rng(seeds[1])
    if progressbar is None:
        progressbar = show_progress()

    ran = None
    if sampler != "pymc" and _nutpie_importable(strict=sampler == "nutpie"):
        ran = _run_nutpie(model, info, draws, tune, chains, sampler_seed, progressbar, cores, target_accept,
                          sampler == "nutpie")
    tree, backend = ran if ran is not None else (
        _run_pymc(model, draws, tune, chains, sampler_seed, progressbar, cores, target_accept), "pymc")

    with small_pages():
        return _complete(model, info, tree, backend, rng, summary, log_likelihood, posterior_predictive)


def _complete(model, info, tree, backend, rng, summary: bool, log_likelihood: bool, predictive: bool) -> xr.DataTree:
    """The DataTree from the sampler's draws: parameters back on their scale, the deferred
    deterministics, and for a factory's model its per-risk draws (or summaries), pointwise
    log-likelihood and posterior predictive (:func:`sample`)."""
    posterior = _constrain(model, tree["posterior"].to_dataset())
    posterior.attrs["bayescred_sampler"] = backend
    deferred = _deferred(model, _stored(model))
    pointwise = info is not None and log_likelihood and "loglik" in model.named_vars
    if info is not None and (deferred or pointwise):  # one vectorised evaluation for both
        evaluated = _evaluate(model, posterior, deferred + ["loglik"] * pointwise)
        posterior = posterior.assign(evaluated[deferred])
    elif deferred:
        posterior = posterior.assign(pm.compute_deterministics(posterior, var_names=deferred, model=model,
                                                               progressbar=False))
    groups = {"posterior": posterior, "sample_stats": tree["sample_stats"].to_dataset()}
    n_div = int(groups["sample_stats"]["diverging"].sum()) if "diverging" in groups["sample_stats"] else 0
    if n_div:
        warnings.warn(f"{n_div} divergent transitions after tuning: the posterior may be biased; "
                      "increase tune or reparametrise", ConvergenceWarning, stacklevel=3)
    if info is None:
        return xr.DataTree.from_dict(groups)

    if pointwise:
        groups["log_likelihood"] = xr.Dataset({info.observed: evaluated["loglik"]})
    posterior = posterior.rename({k: v for k, v in info.renames.items() if k in posterior})
    if summary:
        groups["posterior"] = posterior
        groups["risk_summary"] = info.summarise(model, posterior, rng)
        return _finish(groups, posterior, info)
    extra = info.augment(model, posterior, rng, log_likelihood, predictive)
    posterior = posterior.assign(extra.pop("posterior", {}))
    groups["posterior"] = posterior
    for group, variables in extra.items():
        groups[group] = xr.Dataset(variables)
    return _finish(groups, posterior, info)


def _finish(groups: dict, posterior: xr.Dataset, info) -> xr.DataTree:
    """The DataTree, every group carrying the posterior's attributes and the factory's record."""
    for group in groups.values():
        group.attrs.update(posterior.attrs)
    groups["posterior"].attrs.update({"bayescred_factory": info.factory, "bayescred_likelihood": info.likelihood,
                                      "bayescred_arguments": json.dumps(info.arguments, default=str)})
    return xr.DataTree.from_dict(groups)


def _check_size(model, info, n_draws: int, log_likelihood: bool, predictive: bool) -> None:
    """Refuse, before sampling, per-risk draws that would need more than half of this machine's
    memory (estimated as 8 bytes x draws x the per-risk values ``augment`` keeps: twice the
    factory's per-risk deterministics, plus the pointwise log-likelihood and one predictive
    value per risk)."""
    if info is None or not info.after:
        return
    sizes = {d.name: _size(model, d) for d in model.deterministics}
    kept = [sizes.get(name, 0) for name in info.after]
    values = 2 * sum(kept) + sizes.get("loglik", 0) * log_likelihood + max(kept) * predictive
    need = 8.0 * n_draws * values
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no check
        return
    if need > 0.5 * memory:
        raise PosteriorSizeError(
            f"every risk's draws would need about {need / 2**30:.1f} GiB ({n_draws} draws x {values:,} per-risk "
            f"values), more than half of this machine's {memory / 2**30:.0f} GiB: pass per_risk='summary' "
            "(per-risk means, sds and quantiles), or fewer draws"
        )
