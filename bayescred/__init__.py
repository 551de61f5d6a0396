"""bayescred: actuarial credibility as mixed models, fitted three ways.

Classical moment estimators (``bc.credibility``), empirical Bayes by REML/ML
(``bc.lmm``) and full Bayes with PyMC (``bc.models`` + ``bc.sample``), compared side
by side (``bc.compare``, ``bc.report``). Heavy modules (PyMC, ArviZ) load on first use.
"""

from importlib import import_module

from . import datasets, errors, portfolio

__version__ = "0.1.0"

_LAZY = {
    "credibility": ("bayescred.credibility", None),
    "models": ("bayescred.models", None),
    "lmm": ("bayescred.lmm", "lmm"),
    "sample": ("bayescred.sampling", "sample"),
    "compare": ("bayescred.compare", "compare"),
    "report": ("bayescred.report", "report"),
}

__all__ = ["datasets", "errors", "portfolio", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayescred' has no attribute {name!r}")
