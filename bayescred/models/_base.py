"""Pieces every factory shares: the record a factory leaves on its model for ``bc.sample``,
per-risk constants the reduction does not give, and posterior-array helpers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import narwhals.stable.v2 as nw
import numpy as np
import pandas as pd
import xarray as xr

from ..portfolio import as_list

__all__ = ["ModelInfo", "info_of", "attach", "records_arguments", "sum_log_weight", "stack_draws", "unstack_draws", "labels",
           "SUMMARY_STATISTICS", "summary_columns"]

_ATTR = "_bayescred_info"


@dataclass
class ModelInfo:
    """What ``bc.sample`` needs to finish a factory's model.

    ``observed`` names the data variable (the response) in the log-likelihood, posterior
    predictive and observed-data groups.
    ``augment(model, posterior, rng, log_likelihood, predictive)`` returns a dict of
    DataTree groups to add: new posterior variables (the exact conditional draws of the risk
    effects for a marginal model), ``log_likelihood``, ``posterior_predictive`` and
    ``observed_data``. ``summarise(model, posterior, rng)``, where the model offers it, returns
    the per-risk summaries of ``bc.sample(..., per_risk="summary")`` instead (a Dataset on
    (risk, statistic), computed a block of risks at a time). ``renames`` are posterior variables renamed before the draws are
    added (the marginal model's conditional-mean premium). ``after`` names per-risk
    deterministics that ``augment`` computes itself, vectorised in numpy, so the sampler
    need not carry them through every draw. ``target_accept`` is the NUTS default for this
    model. ``coding`` records how the factory coded its rating factors (factor -> base level,
    levels and dummy columns; :meth:`bayescred.rating.RatingDesign.coding`), empty otherwise.
    """

    factory: str
    likelihood: str
    observed: str
    augment: Callable
    renames: dict = field(default_factory=dict)
    after: tuple = ()
    target_accept: float = 0.9
    compiled: dict = field(default_factory=dict)
    coding: dict = field(default_factory=dict)
    arguments: dict = field(default_factory=dict)
    summarise: Callable | None = None


def records_arguments(factory: Callable) -> Callable:
    """Decorate a factory so that its model records the arguments it was called with (not the
    data, not the priors): ``bc.sample`` writes them to the posterior's attrs, so that
    ``bc.compare`` can summarise an EB fit of the same model per risk."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(data, *args, **kwargs):
        model = factory(data, *args, **kwargs)
        bound = signature.bind(data, *args, **kwargs)
        bound.apply_defaults()
        info_of(model).arguments = {k: v for k, v in bound.arguments.items() if k not in ("data", "priors")}
        return model

    return build


def attach(model, info: ModelInfo) -> None:
    """Record ``info`` on a factory's model. The model also stops re-checking its priors'
    parameters (sigma > 0, ...) inside the log density at every gradient: they are checked once,
    when the model is built (``priors._check_dist``; the default priors' scales are positive by
    construction), and the checks cost 0.6 s of Hachemeister's first numba compile."""
    model.check_bounds = False
    setattr(model, _ATTR, info)


def info_of(model) -> ModelInfo | None:
    return getattr(model, _ATTR, None)


def sum_log_weight(frame, by: str | Sequence[str], weight: str | None, index: pd.Index) -> np.ndarray:
    """sum_t log w_jt per risk (or cell), aligned with ``index`` (the order of
    ``portfolio.summarise``); zeros when unweighted. Needed only for the exact data
    log-density (pointwise log-likelihood), not for the posterior."""
    if weight is None:
        return np.zeros(len(index))
    by = as_list(by)
    out = frame.select(*[nw.col(c) for c in by], nw.col(weight).cast(nw.Float64).log().alias("__lw"))
    out = out.group_by(by).agg(nw.col("__lw").sum())
    if isinstance(out, nw.LazyFrame):
        out = out.collect()
    table = out.to_pandas().set_index(by if len(by) > 1 else by[0])["__lw"]
    return table.reindex(index).to_numpy(float)


def stack_draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """A posterior variable as a (draws, ...) numpy array (chain and draw flattened)."""
    arr = posterior[name].values
    return arr.reshape(-1, *arr.shape[2:])


def unstack_draws(values: np.ndarray, posterior: xr.Dataset, dims: Sequence[str], coords: dict) -> xr.DataArray:
    """The inverse of :func:`stack_draws`: a (draws, ...) array back on (chain, draw, *dims)."""
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    values = np.asarray(values).reshape(chains, draws, *np.shape(values)[1:])
    all_coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values}
    all_coords.update({d: coords[d] for d in dims})
    return xr.DataArray(values, dims=("chain", "draw", *dims), coords=all_coords)


SUMMARY_STATISTICS = ("mean", "sd", "q05", "q50", "q95")


def summary_columns(values: np.ndarray) -> np.ndarray:
    """Per row of a (risks, draws) array: mean, sd and the 5 %, 50 % and 95 % quantiles
    (``SUMMARY_STATISTICS``), as a (risks, 5) array."""
    q = np.quantile(values, [0.05, 0.5, 0.95], axis=1)
    return np.column_stack([values.mean(axis=1), values.std(axis=1, ddof=1), *q])


def labels(values) -> list:
    """Coordinate labels: plain Python scalars (ints stay ints, everything else str)."""
    out = []
    for v in values:
        if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
            out.append(int(v))
        elif isinstance(v, tuple):
            out.append(":".join(str(x) for x in v))
        else:
            out.append(str(v) if not isinstance(v, (float, np.floating)) else float(v))
    return out
