"""Light imports: ``import bayescred`` and a classical fit load neither the Bayes side
(PyMC, PyTensor, ArviZ, matplotlib) nor scipy (scipy.stats, scipy.linalg), nor the REML
engine's scipy.optimize / formulaic, nor importlib.metadata (``bc.__version__`` reads it on
first use); bc.lmm and bc.glm load on first use and stay the functions, while the
subpackages of the same names stay importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "arviz", "scipy.stats", "pymc", "pytensor", "scipy.optimize", "formulaic", "scipy",
         "importlib.metadata")


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_import_and_classical_fit_stay_light():
    # what the bare interpreter with numpy and pandas loads (a site hook may load some) is not counted
    bare = _run(f"import sys, numpy, pandas\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = _run(
        "import sys, bayescred as bc\n"
        "h = bc.datasets.load('hachemeister')\n"
        "bc.credibility.buhlmann_straub(h, 'state', 'severity', 'claims')\n"
        "bc.credibility.hachemeister(h, 'state', 'period', 'severity', 'claims')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert set(loaded.split(",")) - set(bare.split(",")) == set()
    assert {"matplotlib", "arviz", "pymc", "pytensor", "scipy.stats"}.isdisjoint(loaded.split(","))


def test_version_is_read_on_first_use():
    out = _run("import sys, bayescred as bc\n"
               "from importlib import metadata\n"
               "print(bc.__version__ == metadata.version('bayescred'), bc.__version__ is bc.__version__)")
    assert out == "True True"


def test_lmm_and_glm_load_on_first_use_and_stay_functions():
    out = _run(
        "import sys, bayescred as bc\n"
        "assert 'bayescred.lmm' not in sys.modules\n"
        "import bayescred.lmm.model, bayescred.glm.fit\n"
        "assert bc.lmm is sys.modules['bayescred.lmm.model'].lmm\n"
        "assert bc.glm is sys.modules['bayescred.glm.fit'].glm\n"
        "fit = bc.lmm('loss ~ 1 + (1|class)', bc.datasets.load('buhlmann_table31'))\n"
        "print(type(fit).__name__)"
    )
    assert out == "LMMFit"


def test_the_subpackage_imports_while_bc_lmm_stays_the_function():
    # `import bayescred.lmm` and importlib give the subpackage; the attribute bc.lmm stays the
    # function after the subpackage and its modules are imported (bayescred/__init__.py, _Package)
    out = _run(
        "import importlib, sys, types\n"
        "import bayescred.lmm\n"
        "package = importlib.import_module('bayescred.lmm')\n"
        "assert isinstance(package, types.ModuleType) and package.__name__ == 'bayescred.lmm'\n"
        "assert package is sys.modules['bayescred.lmm'] and hasattr(package, 'LMMFit')\n"
        "from bayescred.lmm import model, fit\n"
        "assert isinstance(model, types.ModuleType) and isinstance(fit, types.ModuleType)\n"
        "assert isinstance(bayescred.lmm, types.FunctionType) and bayescred.lmm is model.lmm\n"
        "result = bayescred.lmm('loss ~ 1 + (1|class)', bayescred.datasets.load('buhlmann_table31'))\n"
        "print(type(result).__name__, round(result.fixef.iloc[0], 6))"
    )
    assert out == "LMMFit 750.0"


def test_a_reml_fit_leaves_the_bayes_side_and_scipy_stats_unloaded():
    loaded = _run(
        "import sys, bayescred as bc\n"
        "fit = bc.lmm('loss ~ 1 + (1|class)', bc.datasets.load('buhlmann_table31'))\n"
        "fit.ranef()\n"
        "print(','.join(m for m in ('matplotlib', 'arviz', 'pymc', 'pytensor', 'scipy.stats') if m in sys.modules))"
    )
    assert loaded == ""
