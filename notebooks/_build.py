"""Build the teaching notebooks from their percent-format sources and store them executed.

Sources live next to this file as ``NN_name.py`` with ``# %%`` code cells and
``# %% [markdown]`` text cells (the jupytext "percent" format, readable in any editor).
``make notebooks`` (``python notebooks/_build.py``) builds each .ipynb and executes it in a
fresh kernel at the full settings, so a reader (on GitHub too) sees every table and figure;
``--only NN`` rebuilds one. The test suite checks that each stored notebook was built from
its current source, ran without an error, and shows the figures a fresh (fast) execution
draws.
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


def execute(nb: nbformat.NotebookNode, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh python3 kernel from this folder; outputs are stored in it.
    Raises nbclient's CellExecutionError (naming the cell) when a cell fails."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="build and execute the notebooks from their sources")
    parser.add_argument("--only", action="append", help="notebook number or name prefix (repeatable)")
    args = parser.parse_args(argv)
    for src in sorted(HERE.glob("[0-9][0-9]_*.py")):
        if args.only and not any(src.stem.startswith(o) for o in args.only):
            continue
        nbformat.write(execute(build(src)), src.with_suffix(".ipynb"))
        print("built and executed", src.with_suffix(".ipynb").name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
