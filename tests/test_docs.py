"""The documentation site builds without a warning (issue 14, "Docs a user can read")."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_strict_without_warnings(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING" not in res.stderr, res.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    # the API page is generated from the docstrings, not empty
    assert "buhlmann_straub" in api and "Fit" in api



def test_docstrings_cite_the_projects_own_pages():
    """Docstrings cite docs/formulas.md and docs/reference-values.md, not files outside the repository."""
    outside = []
    for path in (ROOT / "bayescred").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(name in line for name in ("FORMULAS", "REFERENCE-VALUES", "DESIGN.md")):
                outside.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not outside, "\n".join(outside[:20])
