"""Build the teaching notebooks (.ipynb, no outputs) from their percent-format sources.

Sources live next to this file as ``NN_name.py`` with ``# %%`` code cells and
``# %% [markdown]`` text cells (the jupytext "percent" format, readable in any editor).
Run ``python notebooks/_build.py`` after editing a source; the test suite executes the
.ipynb files and checks that they are up to date with their sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def cells(source: str):
    blocks, kind, lines = [], "code", []
    for line in source.splitlines():
        if line.startswith("# %%"):
            if any(s.strip() for s in lines):
                blocks.append((kind, "\n".join(lines).strip("\n")))
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            lines.append(line)
    if any(s.strip() for s in lines):
        blocks.append((kind, "\n".join(lines).strip("\n")))
    for kind, text in blocks:
        yield nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)


def build(src: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells(src.read_text()))
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding an unchanged source changes nothing
        cell.id = f"cell-{i:03d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main() -> int:
    for src in sorted(HERE.glob("[0-9][0-9]_*.py")):
        nbformat.write(build(src), src.with_suffix(".ipynb"))
        print("built", src.with_suffix(".ipynb").name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
