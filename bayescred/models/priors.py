"""Default priors of the model factories, and validation of ``priors=`` overrides.

A factory declares the parameters a user may set a prior on (name, shape, support and the
default prior). ``priors=`` is a dict from those names to one of

* a PyMC distribution made with ``.dist()`` (e.g. ``pm.HalfNormal.dist(sigma=50)``): used as
  the prior. A scalar distribution for a vector parameter is resized to the parameter's shape;
* a number or array: the parameter is fixed at that value (no prior, not sampled). This is how
  the empirical-Bayes plug-in is reproduced (fix the variances at their REML values);
* the string ``"flat"``: an improper flat prior (``pm.Flat``, or ``pm.HalfFlat`` for scales).

Everything is checked here, before any PyMC graph is compiled: unknown names, wrong shapes,
negative fixed scales and distributions whose support does not fit (a scale with a prior that
puts mass on negative values) raise :class:`~bayescred.errors.PriorError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from ..errors import PriorError

__all__ = ["Param", "resolve", "register", "from_data", "FLAT"]

FLAT = "flat"


@dataclass(frozen=True)
class Param:
    """A parameter that takes a prior: its shape, support and default prior (a callable
    returning a ``.dist()`` of that shape, so nothing is built unless it is used)."""

    name: str
    shape: tuple[int, ...]
    default: Callable[[], Variable]
    positive: bool = False
    bounds: tuple[float, float] | None = None
    dims: str | tuple[str, ...] | None = None
    fixable_only: bool = False


def _check_fixed(param: Param, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.shape != param.shape:
        try:
            arr = np.broadcast_to(arr, param.shape).copy()
        except ValueError:
            raise PriorError(
                f"prior {param.name!r}: a fixed value of shape {arr.shape} does not fit the "
                f"parameter's shape {param.shape}"
            ) from None
    if not np.all(np.isfinite(arr)):
        raise PriorError(f"prior {param.name!r}: a fixed value must be finite, got {value!r}")
    if param.positive and np.any(arr < 0):
        raise PriorError(f"prior {param.name!r}: a scale must be non-negative, got {value!r}")
    if param.bounds is not None and np.any((arr <= param.bounds[0]) | (arr >= param.bounds[1])):
        raise PriorError(f"prior {param.name!r}: the value must lie in {param.bounds}, got {value!r}")
    return arr


def _value(graph) -> np.ndarray:
    """A small graph's value by PyTensor's Python linker: a check at the door should not make
    numba compile (the default mode took 1.4 s for a prior's first check on a new machine)."""
    from pytensor.compile.mode import Mode

    return pytensor.function([], graph, mode=Mode(linker="py", optimizer="fast_compile"))()


def _check_dist(param: Param, dist: Variable) -> Variable:
    if param.fixable_only:
        raise PriorError(f"prior {param.name!r} can only be fixed at a value (a number), not given a distribution")
    shape = tuple(int(s) for s in _value(dist.shape))
    if shape != param.shape:
        if shape == ():
            dist = pm.distributions.shape_utils.change_dist_size(dist, param.shape)
        else:
            raise PriorError(
                f"prior {param.name!r}: the distribution has shape {shape}, the parameter needs {param.shape}"
            )
    # the factories' models skip PyMC's parameter checks in the log density (``_base.attach``):
    # a distribution's parameters are checked here, once, at its own support point
    from pymc.distributions.distribution import support_point
    from pymc.logprob.utils import ParameterValueError

    try:
        valid = np.all(np.isfinite(_value(pm.logp(dist, support_point(dist)))))
    except ParameterValueError as exc:
        raise PriorError(f"prior {param.name!r}: invalid parameters of {dist.owner.op} ({exc})") from None
    if not valid:
        raise PriorError(f"prior {param.name!r}: {dist.owner.op} has no finite density at its own support point")
    if param.positive or param.bounds is not None:
        lo = param.bounds[0] if param.bounds is not None else 0.0
        # a scale (or a correlation) prior must put no mass outside the parameter's support
        outside = np.full(param.shape, lo - 1.0)
        if np.any(np.isfinite(_value(pm.logp(dist, outside)))):
            what = "negative values" if param.positive else f"values outside {param.bounds}"
            raise PriorError(
                f"prior {param.name!r}: the distribution {dist.owner.op} puts mass on {what}; "
                "use a distribution on the parameter's support (e.g. HalfNormal, Exponential, HalfStudentT)"
            )
    return dist


def resolve(priors: Mapping | None, params: list[Param], model: str) -> dict:
    """Check ``priors`` against the factory's parameters; return name -> distribution,
    fixed array, or ``FLAT``. Unspecified parameters get their default prior."""
    priors = {} if priors is None else priors
    if not isinstance(priors, Mapping):
        raise PriorError(f"priors must be a dict of name -> prior, got {type(priors).__name__}")
    known = {p.name: p for p in params}
    unknown = [k for k in priors if k not in known]
    if unknown:
        raise PriorError(
            f"{model}: unknown prior name(s) {', '.join(map(repr, unknown))}; "
            f"this model takes priors on {', '.join(map(repr, known))}"
        )
    out = {}
    for p in params:
        if p.name not in priors:
            out[p.name] = None if p.fixable_only else p.default()
            continue
        value = priors[p.name]
        if isinstance(value, str):
            if value != FLAT:
                raise PriorError(f"prior {p.name!r}: the only string accepted is 'flat', got {value!r}")
            if p.bounds is not None or p.fixable_only:
                raise PriorError(f"prior {p.name!r}: a flat prior is not available for this parameter")
            out[p.name] = FLAT
        elif isinstance(value, Variable):
            out[p.name] = _check_dist(p, value)
        elif isinstance(value, (int, float, np.number, np.ndarray, list, tuple)):
            out[p.name] = _check_fixed(p, value)
        else:
            raise PriorError(
                f"prior {p.name!r}: expected a PyMC distribution (pm.X.dist(...)), a number "
                f"(to fix it) or 'flat', got {type(value).__name__}"
            )
    return out


def register(name: str, prior, param: Param):
    """Create the parameter in the current model: a random variable with ``prior``, or a
    constant when it was fixed. Returns the tensor to build on."""
    model = pm.modelcontext(None)
    dims = (param.dims,) if isinstance(param.dims, str) else param.dims
    if prior is None:
        return None
    if isinstance(prior, np.ndarray):
        return pt.as_tensor(prior) if prior.shape else pt.as_tensor(float(prior))
    if isinstance(prior, str) and prior == FLAT:
        dist = (pm.HalfFlat if param.positive else pm.Flat).dist(shape=param.shape)
        return model.register_rv(dist, name, dims=dims)
    return model.register_rv(prior, name, dims=dims)


def from_data(name: str, value) -> Variable:
    """A default prior's data-derived centre or scale as a PyTensor shared variable rather
    than a constant: the compiled log density then does not depend on the portfolio, and
    its compiled code (PyTensor's numba cache, ``bayescred._nutpie``) is reused for every
    portfolio of the same structure."""
    return pytensor.shared(np.asarray(value, dtype=float), name=f"prior_{name}")


def scale_of(values: np.ndarray) -> float:
    """A positive scale for default priors: the spread of ``values``, or 1 if they do not vary."""
    s = float(np.std(values)) if len(values) > 1 else 0.0
    return s if s > 0 and np.isfinite(s) else float(max(abs(np.mean(values)), 1.0))
