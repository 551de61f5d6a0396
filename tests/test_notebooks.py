"""The teaching notebooks: built from their sources, stored executed, and executed end to end in fast mode.

Each ``notebooks/NN_*.py`` (jupytext percent format) is the source of ``NN_*.ipynb``, which is
stored with its outputs (``make notebooks``); the build check fails when a notebook drifted
from its source, was not executed, or holds an error output; the execution check also
compares the cells that draw a figure in the stored notebook with those of the fresh run.
Execution runs every notebook (as built from its source, which the build check ties to the
stored .ipynb) in a fresh Jupyter kernel with ``BAYESCRED_FAST=1`` (short chains, a small
coverage study); the published values a notebook shows are asserted in its
own cells, so a notebook that runs is a notebook whose numbers hold. The test id names the
notebook, and a failure shows the failing cell and its traceback.

Budget: about 4 minutes for the six executions on 2 shared cores (most of it compiling the
PyMC models); the build checks take a second. ``test_runs_without_shared_data`` (slow)
repeats the notebooks that read ../shared/data with an empty data folder, as from a clean
clone.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
USES_SHARED_DATA = ("02_buhlmann_straub", "04_poisson_gamma", "07_pooling", "08_implied_credibility")


def _builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_every_notebook_is_there():
    """Issue 6: 01 teaching, 02 Bühlmann–Straub, 03 Hachemeister, 04 Poisson–gamma,
    05 crossed credit insurance, 06 EBLUP understatement; issue 12: 07 pooling; issue 13: 08 implied
    credibility."""
    assert [p.name[:2] for p in SOURCES] == ["01", "02", "03", "04", "05", "06", "07", "08"], [p.name for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_built_from_its_source(source):
    built = _builder().build(source)
    target = source.with_suffix(".ipynb")
    assert target.is_file(), f"{target.name} missing: run python notebooks/_build.py"
    on_disk = nbformat.read(target, as_version=4)
    assert _cells(on_disk) == _cells(built), f"{target.name} drifted from {source.name}: run make notebooks"
    code = [c for c in on_disk.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts and counts == sorted(counts), f"{target.name} is not stored executed: run make notebooks"
    errors = [c.id for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{target.name} stored with errors in cells {errors}"
    assert on_disk.metadata.get("kernelspec") == built.metadata["kernelspec"]


def _figure_cells(nb) -> list[str]:
    return [c.id for c in nb.cells if c.cell_type == "code"
            and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]


def _execute(source: Path, monkeypatch, data_dir: Path | None = None):
    """Run the notebook built from ``source`` (identical to the stored .ipynb, see the build
    check) in a fresh kernel, in fast mode, from the notebooks folder."""
    monkeypatch.setenv("BAYESCRED_FAST", "1")
    if data_dir is not None:
        monkeypatch.setenv("BAYESCRED_DATA", str(data_dir))
    return _builder().execute(_builder().build(source), timeout=600)  # a failing cell raises, named


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes_in_fast_mode(source, monkeypatch, request):
    if source.stem in USES_SHARED_DATA:  # stored with the shared data: compared only where they are
        request.getfixturevalue("shared_data")  # (without them: test_runs_without_shared_data)
    fresh = _execute(source, monkeypatch)
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert _figure_cells(fresh), f"{source.stem} draws no figure"
    assert _figure_cells(stored) == _figure_cells(fresh), (
        f"{source.stem}: the stored notebook's figures are not those a fresh run draws: run make notebooks"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", USES_SHARED_DATA)
def test_runs_without_shared_data(name, monkeypatch, tmp_path):
    """From a clean clone (no ../shared/data) the notebooks fall back to bundled or simulated data."""
    _execute(NOTEBOOKS / f"{name}.py", monkeypatch, data_dir=tmp_path)
