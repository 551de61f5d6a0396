"""bayescred: actuarial credibility as mixed models, fitted three ways.

Classical moment estimators (``bc.credibility``), empirical Bayes by REML/ML
(``bc.lmm``) and full Bayes with PyMC (``bc.models`` + ``bc.sample``), compared side
by side (``bc.compare``, ``bc.report``). Heavy modules (PyMC, ArviZ) load on first use.
"""

from importlib import import_module

from . import compare, credibility, datasets, errors, portfolio, report

# bc.compare, bc.compare_models, bc.glm, bc.glmm, bc.lmm and bc.report are subpackages (or
# modules) that call their function of the same name (bayescred/_callable.py): bc.lmm(...)
# fits, and `import bayescred.lmm.model` or `from bayescred.lmm import LMMFit` read the
# subpackage. bc.compare_models, bc.glm, bc.glmm, bc.lmm and bc.lrt load on first use (they
# need scipy.optimize, scipy.sparse and formulaic; a classical fit does not), as do PyMC and
# its compiler (bc.models, bc.sample).
_LAZY = {
    "models": ("bayescred.models", None),
    "sample": ("bayescred.sampling", "sample"),
    "implied_credibility": ("bayescred.implied", "implied_credibility"),
    "compare_models": ("bayescred.compare_models", None),
    "glm": ("bayescred.glm", None),
    "glmm": ("bayescred.glmm", None),
    "lmm": ("bayescred.lmm", None),
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
