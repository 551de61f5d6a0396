"""The CLI speaks in sentences (issue 10): every mistake is one line on stderr, no traceback,
and a documented exit status (bayescred.cli docstring): 2 usage/spec, 3 data, 4 reference
missed, 5 sampler, 6 run folder, 1 a bug. Spec mistakes are refused before any fitting.

Issue 10 measured twelve spec or input mistakes that reached the user as tracebacks with exit
code 1 (the code of a missed reference value), and sampler settings checked only after the
classical and REML fits ran; each case below is one of those kinds.
"""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bayescred as bc
import bayescred.runner as runner
from bayescred import credibility
from bayescred.cli import main

ROOT = Path(__file__).resolve().parent.parent
BUHLMANN = (ROOT / "models" / "buhlmann.toml").read_text()


def spec_with(tmp_path, old, new):
    assert old in BUHLMANN
    path = tmp_path / "spec.toml"
    path.write_text(BUHLMANN.replace(old, new, 1))
    return str(path)


@pytest.fixture
def no_classical_fit(monkeypatch):
    """Fail the test if the classical fit starts: the mistake must be caught before."""
    def fit(*args, **kwargs):
        raise AssertionError("the classical fit ran before the mistake was reported")
    monkeypatch.setattr(credibility, "buhlmann", fit)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# (what goes wrong, how the spec is changed, what the line says, exit status)
SPEC_MISTAKES = [
    ("invalid TOML", ('name = "buhlmann"', 'name = "buhlmann'), "not valid TOML", 2),
    ("unknown model", ('model = "buhlmann"', 'model = "buhlman"'), "spec field model: unknown model 'buhlman'; the catalogue has", 2),
    ("unknown dataset", ('dataset = "buhlmann_table31"', 'dataset = "table31"'), "spec field dataset: unknown dataset", 2),
    ("unknown key", ("[arguments]", 'colour = "red"\n[arguments]'), "spec field colour: unknown key", 2),
    ("one chain", ("chains = 4", "chains = 1"), "spec field sampler.chains: at least 2 chains", 2),
    ("text for a number", ("draws = 1000", 'draws = "1000"'), "spec field sampler.draws: Input should be a valid integer", 2),
    ("negative tune", ("tune = 1000", "tune = -5"), "spec field sampler.tune: Input should be greater than or equal to 0", 2),
    ("negative tolerance", ('tol = "rel 1e-9"', 'tol = "rel -1"'), "spec field reference[1].tol: tol must read", 2),
    ("misspelt argument", ('group = "class"', 'grup = "class"'), "spec field arguments.grup: unknown key", 2),
    ("impossible override", ('response = "loss"', 'response = "loss"\nwithin = -1'),
     "spec field arguments.within: Input should be greater than or equal to 0", 2),
    ("unknown prior", ("[sampler]", "[priors]\nnope = 1\n[sampler]"), "unknown prior name(s) 'nope'", 2),
    ("column not in the data", ('group = "class"', 'group = "klass"'), "column 'klass'", 2),
    ("filter grammar", ('dataset = "buhlmann_table31"', 'dataset = "buhlmann_table31"\nfilter = "loss >"'),
     "filter: expected", 2),  # read by bayescred.filters as the data loads, before any fit
    ("filter column", ('dataset = "buhlmann_table31"', 'dataset = "buhlmann_table31"\nfilter = "los > 0"'),
     "'los'", 2),
]


@pytest.mark.parametrize("what, change, message, code", SPEC_MISTAKES, ids=[m[0] for m in SPEC_MISTAKES])
def test_spec_mistakes_are_one_line_before_any_fit(tmp_path, capsys, no_classical_fit, what, change, message, code):
    spec = spec_with(tmp_path, *change)
    assert main(["fit", spec, "--out", str(tmp_path / "run"), "--fast"]) == code
    line = one_line(capsys)
    assert line.startswith("bayescred fit: error: ") and message in line, line
    assert not (tmp_path / "run").exists()


def test_missing_spec_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.toml")]) == 2
    assert "spec file not found" in one_line(capsys)


def test_missing_external_dataset_is_a_data_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BAYESCRED_DATA", raising=False)
    bus = str(ROOT / "models" / "bus.toml")
    assert main(["fit", bus, "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path)]) == 3
    assert "dataset 'bus' is not shipped" in one_line(capsys)


def test_bad_data_is_a_data_error_before_any_fit(tmp_path, capsys, monkeypatch, no_classical_fit):
    load = runner.open_data

    def with_a_hole(spec, data_dir=None):
        data = load(spec, data_dir)
        return data.assign(loss=data["loss"].where(data.index != 4, np.nan))

    monkeypatch.setattr(runner, "open_data", with_a_hole)
    assert main(["fit", str(ROOT / "models" / "buhlmann.toml"), "--out", str(tmp_path / "run"), "--fast"]) == 3
    assert "column 'loss'" in one_line(capsys)


def test_out_folder_that_is_a_file(tmp_path, capsys, no_classical_fit):
    (tmp_path / "run").write_text("x")
    assert main(["fit", str(ROOT / "models" / "buhlmann.toml"), "--out", str(tmp_path / "run")]) == 6
    assert "exists and is not a folder" in one_line(capsys)


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 6
    assert "has no manifest.json" in one_line(capsys)
    assert main(["report", str(tmp_path / "absent")]) == 6
    assert "no such folder" in one_line(capsys)


def test_missing_csv_is_a_usage_error(tmp_path, capsys):
    assert main(["lmm", "y ~ 1 + (1 | g)", "--data", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: No such file or directory" in one_line(capsys)


def test_sampler_failure_is_exit_5(tmp_path, capsys, monkeypatch):
    import bayescred.sampling

    def crash(*args, **kwargs):
        raise RuntimeError("thread '<unnamed>' panicked at src/sampler.rs:1:1:\nbacktrace ...")

    monkeypatch.setattr(bayescred.sampling, "sample", crash)
    assert main(["fit", str(ROOT / "models" / "buhlmann.toml"), "--out", str(tmp_path / "run"), "--fast"]) == 5
    assert "the sampler stopped with RuntimeError: thread '<unnamed>' panicked" in one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_bug_is_exit_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(credibility, "buhlmann", bug)
    spec = str(ROOT / "models" / "buhlmann.toml")
    assert main(["fit", spec, "--out", str(tmp_path / "run"), "--fast"]) == 1
    assert "internal error (ZeroDivisionError): division by zero; this is a bug" in one_line(capsys)
    assert main(["--debug", "fit", spec, "--out", str(tmp_path / "run"), "--fast"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "return 1 / 0" in err


def test_debug_shows_the_traceback_of_a_user_mistake(tmp_path, capsys):
    assert main(["--debug", "fit", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "SpecError: spec file not found" in err
    assert err.strip().splitlines()[-1].startswith("bayescred fit: error: spec file not found")


def test_the_process_exit_status_and_version(tmp_path):
    spec = spec_with(tmp_path, "chains = 4", "chains = 1")
    res = subprocess.run([sys.executable, "-m", "bayescred", "fit", spec], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "sampler.chains" in res.stderr
    res = subprocess.run([sys.executable, "-m", "bayescred", "--version"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    version = importlib.metadata.version("bayescred")
    assert res.returncode == 0 and res.stdout.strip() == f"bayescred {version}" == f"bayescred {bc.__version__}"


def test_exit_statuses_are_documented():
    import bayescred.cli

    doc = bayescred.cli.__doc__
    for code, words in ((1, "internal error"), (2, "usage error"), (3, "data error"), (4, "reference values"),
                        (5, "sampler failed"), (6, "run folder refused")):
        assert f"    {code}  " in doc and words in doc
    readme = (ROOT / "README.md").read_text()
    assert "exit status" in readme and "6 run folder refused" in readme
