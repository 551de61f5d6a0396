"""bayescred: actuarial credibility as mixed models, fitted three ways.

Classical moment estimators (``bc.credibility``), empirical Bayes by REML/ML
(``bc.lmm``) and full Bayes with PyMC (``bc.models`` + ``bc.sample``), compared side
by side (``bc.compare``, ``bc.report``). Heavy modules (PyMC, ArviZ) load on first use.
"""

import sys
import types
from importlib import import_module

from . import credibility, datasets, errors, portfolio
from .compare import compare
from .report import report

# bc.glm and bc.lmm load on first use (they need scipy.optimize, scipy.sparse and formulaic;
# a classical fit does not). They are functions that share their names with the subpackages
# holding them: the import system sets a package attribute to each subpackage it imports,
# so the package class below keeps those names for the functions (bc.compare and
# bc.report, bound here eagerly, are kept the same way).
_FUNCTIONS = {"compare": "bayescred.compare", "glm": "bayescred.glm", "lmm": "bayescred.lmm",
              "report": "bayescred.report"}


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

# PyMC and its compiler load on first use only
_LAZY = {
    "models": ("bayescred.models", None),
    "sample": ("bayescred.sampling", "sample"),
    "glm": ("bayescred.glm", "glm"),
    "lmm": ("bayescred.lmm", "lmm"),
}

__all__ = ["credibility", "datasets", "errors", "portfolio", "compare", "report", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayescred' has no attribute {name!r}")
