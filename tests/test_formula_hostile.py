"""The two code-execution reproductions of issue 10, through the API and the CLI: nothing
runs (a canary file stays absent) and the user gets a BayescredError / exit code 2 with one
line naming the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import filters, sources
from bayescred.errors import BayescredError, FilterError, FormulaError
from bayescred.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def _octal(text: str) -> str:
    return "".join(f"\\{ord(c):03o}" for c in text)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isalpha() or c == "_" else c for c in text)


def hostile_formulas(canary: Path) -> list[str]:
    payload = f"@__import__('os').system('touch {canary}')"
    return [
        # issue 10: fullwidth identifiers fold to ASCII in Python; octal escapes hide the string
        f"y ~ I(x + 0 * `y`.{_fullwidth('to_frame')}().{_fullwidth('eval')}('{_octal(payload)}')) + (1 | g)",
        f"y ~ I(x + 0 * `y`.to_frame().eval('{payload}')) + (1 | g)",
        f"y ~ I(__import__('os').system('touch {canary}')) + (1 | g)",
        f"y ~ x + {{__import__('os').system('touch {canary}')}} + (1 | g)",
        f"y ~ np.os.system('touch {canary}') + (1 | g)",
        f"y ~ log(x).__class__ + (1 | g)",
        f"y ~ C(g, __import__('os').system('touch {canary}')) + (1 | g)",
    ]


def hostile_filters(canary: Path) -> list[str]:
    return [
        f"@os.system('touch {canary}') == 0 or severity > 0",  # issue 10's reproduction
        f"severity > 0 and __import__('os').system('touch {canary}') == 0",
        f"`severity`.__class__ == 1",
        f"severity in [__import__('os')]",
    ]


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 5)
    return pd.DataFrame({"y": rng.normal(size=40) + g * 0.3, "x": rng.normal(size=40), "g": g})


def test_formulas_do_not_run_through_the_api(tmp_path, data):
    canary = tmp_path / "canary"
    for formula in hostile_formulas(canary):
        with pytest.raises(FormulaError) as info:
            bc.lmm(formula, data)
        assert "\n" not in str(info.value)
        assert not canary.exists(), formula


def test_issue_reproduction_message_names_the_character(data, tmp_path):
    with pytest.raises(FormulaError, match="unexpected character 'ｔ' at position .*backquotes"):
        bc.lmm(hostile_formulas(tmp_path / "c")[0], data)


def test_filters_do_not_run_through_the_api(tmp_path):
    canary = tmp_path / "canary"
    frame = pd.DataFrame({"severity": [1.0, -2.0, 3.0]})
    for text in hostile_filters(canary):
        with pytest.raises(FilterError):
            filters.apply(frame, text)
        assert not canary.exists(), text


def _spec_with_filter(tmp_path: Path, text: str) -> Path:
    source = (ROOT / "models" / "hachemeister.toml").read_text()
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    spec = tmp_path / "hostile.toml"
    spec.write_text(source.replace('dataset = "hachemeister"\n', f'dataset = "hachemeister"\nfilter = "{escaped}"\n', 1))
    return spec


def test_spec_filter_is_refused_when_loading_data(tmp_path):
    """sources.load_data serves `bayescred fit` and the report's reload of a saved run."""
    canary = tmp_path / "canary"
    for text in hostile_filters(canary):
        spec = load_spec(_spec_with_filter(tmp_path, text))
        with pytest.raises(BayescredError):
            sources.load_data(spec)
        assert not canary.exists()
    # an honest filter still works
    spec = load_spec(_spec_with_filter(tmp_path, "state != 1 and not (severity < 0)"))
    assert set(sources.load_data(spec)["state"]) == {2, 3, 4, 5}


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bayescred", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_cli_lmm_refuses_hostile_formulas(tmp_path, data):
    canary = tmp_path / "canary"
    csv = tmp_path / "d.csv"
    data.to_csv(csv, index=False)
    for formula in hostile_formulas(canary)[:2]:
        res = _cli("lmm", formula, "--data", str(csv), cwd=tmp_path)
        assert res.returncode not in (0, 1), res.stderr  # a usage/spec/data code, not "reference values missed"
        assert "Traceback" not in res.stderr and "error" in res.stderr and "position" in res.stderr
        assert not canary.exists()


def test_cli_fit_refuses_hostile_filter(tmp_path):
    canary = tmp_path / "canary"
    spec = _spec_with_filter(tmp_path, hostile_filters(canary)[0])
    res = _cli("fit", str(spec), "--out", str(tmp_path / "run"), "--fast", cwd=tmp_path)
    assert res.returncode not in (0, 1), res.stderr
    assert "Traceback" not in res.stderr and "filter" in res.stderr
    assert not canary.exists()
