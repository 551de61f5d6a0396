"""Light imports: ``import bayescred`` and a classical fit load neither the Bayes side
(PyMC, ArviZ, matplotlib) nor scipy.stats, nor the REML engine's scipy.optimize /
formulaic; bc.lmm and bc.glm load on first use and stay the functions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "arviz", "scipy.stats", "pymc", "pytensor", "scipy.optimize", "formulaic")


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_import_and_classical_fit_stay_light():
    loaded = _run(
        "import sys, bayescred as bc\n"
        "h = bc.datasets.load('hachemeister')\n"
        "bc.credibility.buhlmann_straub(h, 'state', 'severity', 'claims')\n"
        "bc.credibility.hachemeister(h, 'state', 'period', 'severity', 'claims')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded == ""


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
