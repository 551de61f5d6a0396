"""bayescred: actuarial credibility as mixed models, fitted three ways.

Classical moment estimators (``bc.credibility``), empirical Bayes by REML/ML
(``bc.lmm``) and full Bayes with PyMC (``bc.models`` + ``bc.sample``), compared side
by side (``bc.compare``, ``bc.report``). Heavy modules (PyMC, ArviZ) load on first use.
"""

from importlib import import_module

from . import credibility, datasets, errors, portfolio

# The functions bc.lmm, bc.compare and bc.report share their names with the subpackages that
# hold them; importing them here, eagerly, binds the names to the functions for good (a later
# import of a submodule finds it in sys.modules and leaves these names alone).
from .compare import compare  # noqa: E402
from .glm import glm  # noqa: E402
from .lmm import lmm  # noqa: E402
from .report import report  # noqa: E402

__version__ = "0.1.0"

# PyMC and its compiler load on first use only
_LAZY = {
    "models": ("bayescred.models", None),
    "sample": ("bayescred.sampling", "sample"),
}

__all__ = ["credibility", "datasets", "errors", "portfolio", "compare", "glm", "lmm", "report", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name)
        value = getattr(module, attr) if attr else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayescred' has no attribute {name!r}")
