"""``bc.sample``: run a factory's model with good defaults and finish its posterior.

nutpie (when installed) or PyMC's NUTS samples the hyperparameters; then, for a marginal
model, every risk's effect is drawn from its exact conditional distribution given each
draw, and the pointwise log-likelihood (for LOO), the posterior predictive and the observed
data are added. The result is an ArviZ 1.x ``xarray.DataTree``.
"""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pymc as pm
import xarray as xr

from .errors import ConvergenceWarning
from .models._base import info_of
from .progress import enabled as show_progress

__all__ = ["sample"]



def _sampler(sampler: str | None) -> str:
    if sampler is None:
        return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    if sampler not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    return sampler


_LARGE = 20_000  # per-draw elements of deterministics above which they are computed after sampling


def _stored(model) -> list[str]:
    """What the sampler keeps: the parameters and, for models of moderate size, the
    deterministics; never the pointwise log-likelihood (computed afterwards when asked for)
    nor what the factory's ``augment`` computes itself (``ModelInfo.after``). With many
    risks the per-risk deterministics are computed after sampling, vectorised, which is
    much cheaper than streaming them through the sampler."""
    info = info_of(model)
    skip = {"loglik", *(info.after if info is not None else ())}
    sizes = {d.name: _size(model, d) for d in model.deterministics if d.name not in skip}
    large = sum(sizes.values()) > _LARGE
    keep = [n for n, size in sizes.items() if not (large and size > 1_000)]
    return [rv.name for rv in model.free_RVs] + keep


def _size(model, var) -> int:
    dims = model.named_vars_to_dims.get(var.name)
    if dims:
        return int(np.prod([len(model.coords[d]) for d in dims]))
    static = var.type.shape
    return int(np.prod(static)) if all(s is not None for s in static) else 1


def _deferred(model, stored) -> list[str]:
    info = info_of(model)
    skip = {"loglik", *stored, *(info.after if info is not None else ())}
    return [d.name for d in model.deterministics if d.name not in skip]


def _current_data(model) -> dict:
    return {d.name: np.asarray(d.get_value()) for d in model.data_vars}


def _run_nutpie(model, info, draws, tune, chains, seed, progressbar, cores, target_accept):
    """Compile once per model, stored variables and data shapes; after ``pm.set_data`` the new
    data are swapped into the compiled model with ``with_data`` (SBC and refits reuse it).
    Compiling again for new shapes is cheap: the compiled code comes from the disk cache."""
    import nutpie

    from ._nutpie import compile_model

    cache = info.compiled if info is not None else {}
    data = _current_data(model)
    key = (tuple(_stored(model)), tuple((k, v.shape) for k, v in sorted(data.items())))
    compiled = cache.get(key)
    if compiled is None:
        compiled = cache[key] = compile_model(model, list(key[0]))
    held = {var.name: compiled.shared_data[k] for var, k in compiled.shared_var_keys.items()}
    changed = {k: v for k, v in data.items() if k in held and not np.array_equal(held[k], v)}
    if changed:
        compiled = compiled.with_data(**changed)
    kwargs = {"cores": cores} if cores is not None else {}
    return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=progressbar,
                         save_warmup=False, target_accept=target_accept, **kwargs)


def _run_pymc(model, draws, tune, chains, seed, progressbar, cores, target_accept):
    kwargs = {"cores": cores} if cores is not None else {}
    return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=progressbar, model=model,
                     target_accept=target_accept,
                     var_names=_stored(model), compute_convergence_checks=False, nuts_sampler="pymc", **kwargs)


def sample(model, *, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int,
           sampler: str | None = None, cores: int | None = None, progressbar: bool | None = None,
           target_accept: float | None = None,
           log_likelihood: bool = True, posterior_predictive: bool = True) -> xr.DataTree:
    """Sample ``model`` (a ``bayescred.models`` factory's model, or any PyMC model) and return a DataTree.

    ``random_seed`` is required: the same seed gives the same numbers (sampler and the
    post-sampling draws use independent streams spawned from it). ``sampler``: "nutpie"
    (default when installed) or "pymc". ``target_accept`` defaults to the model's own
    setting: 0.9 rather than 0.8 (with few risks the posterior of the between SD is wide and
    skewed; 0.8 gave a few divergences on Table 3.1, 3 classes, where 0.9 gave none), 0.95
    for the crossed model and for every ``likelihood="latent"`` model. Progress is shown when ``progressbar`` is True, or,
    by default, when standard error is a terminal (:mod:`bayescred.progress`).

    Groups: ``posterior`` (hyperparameters and the actuary's quantities; for a marginal
    model also ``premium`` and ``u``: exact draws of each risk's mean and effect from their
    conditional distribution, with the credibility premium at each draw's hyperparameters
    kept as ``premium_conditional_mean``), ``sample_stats``, ``log_likelihood`` (pointwise,
    per risk for the marginal models), ``posterior_predictive`` and ``observed_data``.
    A warning (:class:`~bayescred.errors.ConvergenceWarning`) reports divergences.
    """
    if random_seed is None:
        raise ValueError("random_seed is required: pass an integer so that results can be reproduced")
    for name, value in (("draws", draws), ("tune", tune), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or value < (1 if name != "tune" else 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    info = info_of(model)
    if target_accept is None:
        target_accept = info.target_accept if info is not None else 0.9
        if info is not None and info.likelihood == "latent":  # non-centred effects: funnel remnants with few risks
            target_accept = max(target_accept, 0.95)
    seeds = np.random.SeedSequence(random_seed).spawn(2)
    sampler_seed = int(seeds[0].generate_state(1)[0])
    rng = np.random.default_rng(seeds[1])
    if progressbar is None:
        progressbar = show_progress()

    if _sampler(sampler) == "nutpie":
        tree = _run_nutpie(model, info, draws, tune, chains, sampler_seed, progressbar, cores, target_accept)
    else:
        tree = _run_pymc(model, draws, tune, chains, sampler_seed, progressbar, cores, target_accept)

    posterior = tree["posterior"].to_dataset()
    deferred = _deferred(model, _stored(model))
    if deferred:
        posterior = posterior.assign(pm.compute_deterministics(posterior, var_names=deferred, model=model,
                                                               progressbar=False))
    groups = {"posterior": posterior, "sample_stats": tree["sample_stats"].to_dataset()}
    n_div = int(groups["sample_stats"]["diverging"].sum()) if "diverging" in groups["sample_stats"] else 0
    if n_div:
        warnings.warn(f"{n_div} divergent transitions after tuning: the posterior may be biased; "
                      "increase tune or reparametrise", ConvergenceWarning, stacklevel=2)
    if info is None:
        return xr.DataTree.from_dict(groups)

    if log_likelihood and "loglik" in model.named_vars:
        ll = pm.compute_deterministics(posterior, var_names=["loglik"], model=model, progressbar=False)
        groups["log_likelihood"] = xr.Dataset({info.observed: ll["loglik"]})
    posterior = posterior.rename({k: v for k, v in info.renames.items() if k in posterior})
    extra = info.augment(model, posterior, rng, log_likelihood, posterior_predictive)
    posterior = posterior.assign(extra.pop("posterior", {}))
    groups["posterior"] = posterior
    for group, variables in extra.items():
        groups[group] = xr.Dataset(variables)
    for group in groups.values():
        group.attrs.update(posterior.attrs)
    groups["posterior"].attrs.update({"bayescred_factory": info.factory, "bayescred_likelihood": info.likelihood,
                                      "bayescred_arguments": json.dumps(info.arguments, default=str)})
    return xr.DataTree.from_dict(groups)
