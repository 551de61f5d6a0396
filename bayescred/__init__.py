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

# bc.compare_models, bc.glm, bc.glmm, bc.lmm and bc.lrt load on first use (they need
# scipy.optimize, scipy.sparse and formulaic; a classical fit does not). Several are
# functions that share their names with the subpackages holding them: the import system
# sets a package attribute to each subpackage it imports, so the package class below keeps
# those names for the functions (bc.compare and bc.report, bound eagerly, the same way).
# The subpackages stay importable: `import bayescred.lmm`, `from bayescred.lmm import model`
# and importlib.import_module("bayescred.lmm") give them. Only the forms that bind a name by
# reading the attribute, `import bayescred.lmm as m` and `import bayescred.lmm.model as m`,
# see the function (Python resolves `as` through getattr on the parent): use the `from` form.
_FUNCTIONS = {"compare", "compare_models", "glm", "glmm", "lmm", "report"}


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

# Loaded on first use: PyMC and its compiler, the REML/GLM/GLMM engines
_LAZY = {
    "models": ("bayescred.models", None),
    "sample": ("bayescred.sampling", "sample"),
    "implied_credibility": ("bayescred.implied", "implied_credibility"),
    "compare_models": ("bayescred.compare_models", "compare_models"),
    "glm": ("bayescred.glm", "glm"),
    "glmm": ("bayescred.glmm", "glmm"),
    "lmm": ("bayescred.lmm", "lmm"),
    "lrt": ("bayescred.lmm", "lrt"),
}

__all__ = ["credibility", "datasets", "errors", "portfolio", "compare", "report", *_LAZY]


def _version() -> str:
    """The single source of the version is pyproject.toml, through the installed metadata
    (read on first use of ``bc.__version__``: importlib.metadata costs ~35 ms of import)."""
    from importlib import metadata

    try:
        return metadata.version("bayescred")
    except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


def __getattr__(name):
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayescred' has no attribute {name!r}")
