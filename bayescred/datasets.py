"""Bundled datasets (typed in from the seeds; provenance in data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

_BUNDLED = {"hachemeister": "hachemeister.csv"}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_BUNDLED)


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a fresh pandas DataFrame."""
    if name not in _BUNDLED:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(names())}")
    return pd.read_csv(DATA_DIR / _BUNDLED[name])
