"""Progress bars on long work: silent when stderr is not a terminal (so no test or log output
changes), shown when forced with BAYESCRED_PROGRESS=1, never with BAYESCRED_PROGRESS=0; the
numbers do not depend on whether the bar is shown."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import progress
from bayescred.studies import coverage


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.delenv("BAYESCRED_PROGRESS", raising=False)


def test_silent_when_stderr_is_not_a_terminal(quiet, capsys):
    assert list(progress.track(range(5), "counting")) == [0, 1, 2, 3, 4]
    assert not progress.enabled()
    assert capsys.readouterr().err == ""


def test_shown_on_a_terminal_unless_switched_off(quiet, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert progress.enabled()
    assert list(progress.track(range(3), "counting")) == [0, 1, 2]
    assert "counting" in term.getvalue()
    monkeypatch.setenv("BAYESCRED_PROGRESS", "0")
    assert not progress.enabled()


def test_forced_bar_on_the_bootstrap_with_the_same_numbers(monkeypatch, capsys):
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 4)
    data = pd.DataFrame({"g": g, "y": rng.normal(0, 1, 6)[g] + rng.normal(0, 1, 24)})
    fit = bc.lmm("y ~ 1 + (1 | g)", data)
    monkeypatch.delenv("BAYESCRED_PROGRESS", raising=False)
    silent = fit.ranef(bootstrap=5, seed=3)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("BAYESCRED_PROGRESS", "1")
    shown = fit.ranef(bootstrap=5, seed=3)
    assert "parametric bootstrap" in capsys.readouterr().err
    pd.testing.assert_frame_equal(silent, shown)
    fit.predict(data.iloc[:2], bootstrap=3, seed=1)
    fit.confint(parm="sigma")
    err = capsys.readouterr().err
    assert "parametric bootstrap" in err and "profiling" in err


def test_coverage_study_default_bar(monkeypatch, capsys):
    monkeypatch.setenv("BAYESCRED_PROGRESS", "1")
    reps = coverage.coverage_replicates("buhlmann_straub", 5, 2, bayes=False, seed=3)
    assert len(reps) and "coverage buhlmann_straub J=5" in capsys.readouterr().err
    seen = []
    coverage.coverage_replicates("buhlmann_straub", 5, 2, bayes=False, seed=3, progress=seen.append)
    assert seen == ["buhlmann_straub J=5 replicate 1/2", "buhlmann_straub J=5 replicate 2/2"]
    assert "coverage" not in capsys.readouterr().err  # a callback replaces the bar


@pytest.mark.parametrize("flag,expected", [("1", True), ("0", False)])
def test_sampling_progress_follows_the_terminal(monkeypatch, flag, expected):
    import pymc as pm

    from bayescred import sampling

    class Stop(Exception):
        pass

    def capture(*args):
        raise Stop(args[6] if len(args) > 8 else args[5])  # the progressbar argument

    monkeypatch.setattr(sampling, "_run_nutpie", capture)
    monkeypatch.setattr(sampling, "_run_pymc", capture)
    monkeypatch.setenv("BAYESCRED_PROGRESS", flag)
    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(Stop) as stop:
        sampling.sample(model, draws=10, tune=10, chains=1, random_seed=1)
    assert stop.value.args[0] is expected
