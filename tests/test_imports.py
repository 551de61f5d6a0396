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


def test_lmm_and_glm_load_on_first_use():
    out = _run(
        "import sys, bayescred as bc\n"
        "assert 'bayescred.lmm' not in sys.modules and 'bayescred.glm' not in sys.modules\n"
        "assert bc.lmm is sys.modules['bayescred.lmm'] and bc.glm is sys.modules['bayescred.glm']\n"
        "fit = bc.lmm('loss ~ 1 + (1|class)', bc.datasets.load('buhlmann_table31'))\n"
        "print(type(fit).__name__)"
    )
    assert out == "LMMFit"


def test_bc_lmm_is_the_subpackage_and_fits_when_called():
    # bc.lmm(...) fits; `import bayescred.lmm as m`, importlib and attribute access all give the
    # one subpackage, whose modules resolve as attributes (bayescred/_callable.py). The same
    # holds for bc.glm, bc.glmm, bc.compare, bc.compare_models and bc.report.
    out = _run(
        "import importlib, inspect, sys, types\n"
        "import bayescred\n"
        "import bayescred.lmm as m\n"
        "import bayescred.lmm.model\n"
        "package = importlib.import_module('bayescred.lmm')\n"
        "assert m is package is bayescred.lmm is sys.modules['bayescred.lmm'] and hasattr(m, 'LMMFit')\n"
        "assert isinstance(bayescred.lmm.model, types.ModuleType)\n"
        "assert inspect.signature(m) == inspect.signature(bayescred.lmm.model.lmm)\n"
        "for name in ('glm', 'glmm', 'compare', 'compare_models', 'report'):\n"
        "    sub = importlib.import_module('bayescred.' + name)\n"
        "    assert getattr(bayescred, name) is sub and callable(sub), name\n"
        "    assert inspect.signature(sub) == inspect.signature(getattr(sub, name)), name\n"
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


def test_a_warning_from_a_callable_subpackage_points_at_the_callers_line():
    out = _run(
        "import warnings, bayescred as bc\n"
        "warnings.simplefilter('always')\n"
        "d = bc.datasets.load('buhlmann_table31').assign(loss=1.0)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    try:\n"
        "        bc.lmm('loss ~ 1 + (1|class)', d.assign(loss=d['loss'] + d.index % 2))\n"
        "    except Exception:\n"
        "        pass\n"
        "print(sorted({w.filename for w in caught}))"
    )
    assert out == "['<string>']", out
