"""`bayescred fit` pipeline and the HTML report (issue 6), in the fast sampler mode.

Every catalogue spec must reproduce its published reference values (the values and their
provenance live in the spec files under models/); the report must be one self-contained
HTML file that headless Chromium renders.
"""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

import bayescred as bc
from bayescred import catalogue, runfolder
from bayescred.errors import DatasetNotFoundError
from bayescred.runner import run_spec
from bayescred.sources import load_data
from bayescred.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = sorted((ROOT / "models").glob("*.toml"))
SECTIONS = ("summary", "data", "model", "tables", "plots", "diagnostics", "references")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {}


def _run(runs, path, tmp_path_factory):
    try:
        load_data(load_spec(path))
    except DatasetNotFoundError as exc:
        pytest.skip(f"{path.name} needs a real dataset that is not shipped: {exc}")
    if path.stem not in runs:
        out = tmp_path_factory.mktemp(path.stem)
        runs[path.stem] = run_spec(path, out=out, fast=True, progress=lambda *_: None)
    return runs[path.stem]


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_catalogue_spec_reproduces_its_references(path, runs, tmp_path_factory):
    run = _run(runs, path, tmp_path_factory)
    missed = run.checks[~run.checks["ok"]]
    assert missed.empty, f"{path.name} missed:\n{missed.to_string()}"
    for name in ("posterior.nc", "compare_premiums.csv", "reference_checks.csv", "report.html", "manifest.json"):
        assert (run.out / name).is_file()
    assert set(runfolder.verify(run.out)) == runfolder.ARTEFACTS - {"manifest.json"}


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_catalogue_run_compares_like_with_like(path, runs, tmp_path_factory):
    """Every component row of a run's comparison carries the model's unit and is reported by
    all three arms where the model defines it in all three (issue 11: the Poisson–gamma run once
    paired a frequency variance 0.0077 with a relative variance 0.534)."""
    run = _run(runs, path, tmp_path_factory)
    entry = catalogue.get(run.spec.model)
    units = entry.components(run.spec.arguments)
    table = run.comparison.variance_components
    assert set(units) <= set(table.index)
    for name, unit in units.items():
        row = table.loc[name]
        assert row["unit"] == unit
        assert np.isfinite(row["reml"]) and np.isfinite(row["post_mean"]), f"{path.stem}: {name} missing an arm"
    text = (run.out / "report.html").read_text()
    assert str(escape(entry.structure(run.spec.arguments))) in text  # the one structure all arms fit


def test_report_is_self_contained_with_every_section(runs, tmp_path_factory):
    run = _run(runs, ROOT / "models" / "buhlmann_straub.toml", tmp_path_factory)
    text = (run.out / "report.html").read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    assert not re.search(r'(src|href)="(https?:)?//', text), "report must not load external assets"
    assert text.count("data:image/png;base64,") >= 5
    assert "90% ETI" in text and "R-hat" in text and "Pareto k" in text


def test_report_rebuilds_from_the_saved_folder(runs, tmp_path_factory, tmp_path):
    run = _run(runs, ROOT / "models" / "buhlmann_straub.toml", tmp_path_factory)
    path = bc.report(run.out, out=tmp_path / "again.html")
    text = path.read_text()
    assert all(f'<section id="{a}">' in text for a in SECTIONS)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (apt-get install chromium)")
def test_report_opens_in_headless_chromium(runs, tmp_path_factory, tmp_path):
    run = _run(runs, ROOT / "models" / "buhlmann_straub.toml", tmp_path_factory)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (run.out / "report.html").resolve().as_uri()
    dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Sampler diagnostics" in dom.stdout and "<img" in dom.stdout
    shot = tmp_path / "report.png"
    res = subprocess.run(["chromium", *flags, "--window-size=1200,2400", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.stat().st_size > 50_000


def test_report_diagnostics_of_a_single_chain():
    """Issue 10: one chain passed sampling and crashed the report (the rank plot compares chains).
    Specs now need two chains; a one-chain posterior built by hand still gets its section."""
    import numpy as np
    import xarray as xr

    from bayescred.report import diagnostics

    rng = np.random.default_rng(1)
    coords = {"chain": [0], "draw": np.arange(200)}
    post = xr.Dataset({"between": (("chain", "draw"), rng.gamma(5.0, size=(1, 200)))}, coords=coords)
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, 200), bool)),
                        "energy": (("chain", "draw"), rng.normal(size=(1, 200)))}, coords=coords)
    tree = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    text = diagnostics.section_html(tree, ["between"])
    assert "R-hat not computed: it needs at least 2 chains" in text and "Sampler problems" in text
    assert "Rank plots" not in text and "Trace and marginal" in text
