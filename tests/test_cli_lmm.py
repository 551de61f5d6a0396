"""`bayescred lmm ... --json` prints LMMFit.to_dict() with the keys fixed in DESIGN.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bayescred as bc

KEYS = {"fixef", "fixef_se", "varcorr", "sigma2", "criterion", "loglik", "singular", "ranef"}


def run(*args):
    return subprocess.run([sys.executable, "-m", "bayescred", *args], capture_output=True, text=True)


def test_lmm_json_table31(tmp_path):
    csv = tmp_path / "t31.csv"
    bc.datasets.load("buhlmann_table31").to_csv(csv, index=False)
    res = run("lmm", "loss ~ 1 + (1|class)", "--data", str(csv), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert KEYS <= set(out)
    # REFERENCE-VALUES §3.2/3.3 (seed 004_07f8365c92996b9b.txt lines 2076-2112)
    assert out["criterion"] == pytest.approx(133.557855, abs=1e-5)
    assert out["fixef"]["(Intercept)"] == pytest.approx(750.0)
    assert out["fixef_se"]["(Intercept)"] == pytest.approx(57.735027, rel=1e-6)
    assert [r["vcov"] for r in out["varcorr"]] == pytest.approx([8437.5, 6250.0], rel=1e-6)
    assert set(out["varcorr"][0]) == {"grp", "var1", "var2", "vcov", "sdcor"}
    assert out["varcorr"][1]["grp"] == "Residual" and out["varcorr"][1]["var1"] is None
    assert set(out["ranef"][0]) == {"grp", "level", "term", "value", "cond_sd", "pev_sd", "mse_sd"}
    assert [r["value"] for r in out["ranef"]] == pytest.approx([-84.375, 0.0, 84.375], abs=1e-5)
    assert out["singular"] is False


def test_lmm_json_weights_ml(tmp_path):
    csv = tmp_path / "h.csv"
    bc.datasets.load("hachemeister").to_csv(csv, index=False)
    res = run("lmm", "severity ~ 1 + (1|state)", "--data", str(csv), "--weights", "claims", "--ml", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # REFERENCE-VALUES §5.8 (D): BS-LMM ML τ² 50,214.2, σ² 139,003,666, β₀ 1693.433 (rel 1e-4)
    assert out["fixef"]["(Intercept)"] == pytest.approx(1693.433, rel=1e-4)
    assert out["varcorr"][0]["vcov"] == pytest.approx(50214.2, rel=1e-4)
    assert out["sigma2"] == pytest.approx(139003666, rel=1e-4)


def test_lmm_bad_column_and_datasets(tmp_path):
    csv = tmp_path / "t31.csv"
    bc.datasets.load("buhlmann_table31").to_csv(csv, index=False)
    res = run("lmm", "loss ~ 1 + (1|nope)", "--data", str(csv), "--json")
    assert res.returncode == 2 and "nope" in res.stderr
    res = run("datasets")
    assert res.returncode == 0 and "hachemeister" in res.stdout
