"""Build the teaching notebooks from their percent-format sources and store them executed.

Sources live next to this file as ``NN_name.py`` with ``# %%`` code cells and
``# %% [markdown]`` text cells (the jupytext "percent" format, readable in any editor; jupytext reads them).
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


def build(src: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, read by jupytext."""
    import jupytext

    nb = nbformat.v4.new_notebook()
    nb.cells = [cell for cell in jupytext.read(src, fmt="py:percent").cells if cell.source.strip()]
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
