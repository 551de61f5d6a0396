"""Shared fixtures: where the shared real datasets live, and the R cross-check switch."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BAYESCRED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public datasets (../shared/data); tests needing it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (set BAYESCRED_DATA)")
    return SHARED_DATA


def _r_available(*packages: str) -> str | None:
    """Why R cannot be used, or None when Rscript and the packages are there."""
    if shutil.which("Rscript") is None:
        return "Rscript not found (install r-base-core r-cran-lme4 r-cran-actuar r-cran-pbkrtest)"
    libs = "; ".join(f"library({p})" for p in packages)
    res = subprocess.run(["Rscript", "-e", libs], capture_output=True, text=True)
    if res.returncode != 0:
        return f"R packages missing: {', '.join(packages)}"
    return None


@pytest.fixture(scope="session")
def rscript():
    """Skip with a message unless Rscript with lme4 and actuar is available."""
    why = _r_available("lme4", "actuar")
    if why:
        pytest.skip(why)
    return shutil.which("Rscript")
