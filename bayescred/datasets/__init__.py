"""Datasets: the bundled ones (typed in from the seeds, provenance in bayescred/datasets/data/README.md), the
public real datasets the package may not ship (read from a folder you point to), cleaning
rules the references use, and simulators with known truth (:mod:`.simulate`).

``load(name)`` returns a fresh pandas DataFrame every call; ``names()`` lists what
``load`` accepts. Real datasets are read from ``data_dir=``, else from the folder in the
environment variable ``BAYESCRED_DATA``, else from ``../shared/data`` next to the
repository (in a source checkout); when the file is not there,
:class:`~bayescred.errors.DatasetNotFoundError` says where the public copy lives.

The bundled files are package data, read with :mod:`importlib.resources`, so an installed
wheel loads them as a source checkout does.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetNotFoundError
from . import simulate

__all__ = ["load", "names", "clean_bus", "split_workers_comp", "simulate", "DATA_DIR", "shared_dir"]

DATA_DIR = resources.files(__name__) / "data"
# a source checkout (pyproject.toml beside the package) finds the shared data folder next to it
_CHECKOUT = Path(__file__).resolve().parents[2]

# Pooled within-cell sum of squares of the credit-insurance payments: DERIVED, not printed
# (docs/reference-values.md §6: the value for which the REML optimum reproduces the printed
# residual variance 26,990.40 of seed 002_112bee5238c97912.txt, line 874); N - K = 401 - 9.
CREDIT_WITHIN_SS = 10_578_584.0
CREDIT_WITHIN_DF = 392

_BUNDLED = {
    "hachemeister": "hachemeister.csv",
    "buhlmann_table31": "buhlmann_table31.csv",
    "credit_insurance": "credit_insurance.csv",
    "venter": "venter.csv",
    "halliwell_trend": "halliwell_trend.csv",
    "sim_poisson_gamma": "sim_poisson_gamma.csv",
}

# name -> (file in the shared folder, public source to get it from)
_EXTERNAL = {
    "workers_comp": (
        "workers_comp_losses.csv",
        "R package CASdatasets 1.2-1, data/usworkcomp.rda (columns CL, YR, PR, LOSS renamed "
        "riskclass, year, payroll, loss); identical to insuranceData WorkersComp",
    ),
    "bus": (
        "bus_insurance.csv",
        "bus-case.csv in github.com/eschirmacher/pmmfa (identical to CASdatasets swbusscase)",
    ),
    "medpar": ("medpar.csv", "medpar.csv in github.com/eschirmacher/pmmfa (also R package COUNT, medpar)"),
    "massbi": ("usmassBI2.csv", "R package CASdatasets 1.2-1, data/usmassBI2.rda"),
    "fabric": ("fabric.csv", "R package mdhglm 1.8, data/fabric.rda"),
    "train": ("train_collisions.csv", "R package mdhglm 1.8, data/train.rda"),
    "bs_simulated": (
        "bs_simulated.csv",
        "BS-simulated-data.csv in github.com/eschirmacher/pmmfa (seed 004_07f8365c92996b9b.txt, Listing 3.1)",
    ),
    "diabetes_lars": ("diabetes_lars.csv", "R package lars 1.3, data/diabetes.RData (x and y)"),
    "diabetes_raw": (
        "diabetes_raw.csv",
        "scikit-learn, sklearn/datasets/data/diabetes_data_raw.csv.gz and diabetes_target.csv.gz",
    ),
}


def names(kind: str | None = None) -> list[str]:
    """Names accepted by :func:`load`: all, or only ``kind="bundled"`` / ``"external"``."""
    if kind not in (None, "bundled", "external"):
        raise ValueError(f"kind must be None, 'bundled' or 'external', got {kind!r}")
    bundled = [] if kind == "external" else sorted(_BUNDLED)
    external = [] if kind == "bundled" else sorted(_EXTERNAL)
    return bundled + external


def shared_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the external datasets: ``data_dir``, else $BAYESCRED_DATA, else ../shared/data
    next to a source checkout, else ``./shared_data`` (a name that says nothing is configured)."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("BAYESCRED_DATA")
    if env:
        return Path(env)
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT.parent / "shared" / "data"
    return Path("shared_data")


def load(name: str, *, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load a dataset as a fresh pandas DataFrame (see bayescred/datasets/data/README.md for each one's provenance).

    ``credit_insurance`` carries the derived pooled within-cell SS and its df in
    ``.attrs["within_ss"]`` / ``.attrs["within_df"]`` (``.attrs["derived"]`` says so);
    ``sim_poisson_gamma`` carries its generating parameters in ``.attrs["truth"]``.
    """
    if name in _BUNDLED:
        with (DATA_DIR / _BUNDLED[name]).open("rb") as file:
            frame = pd.read_csv(file)
        if name == "credit_insurance":
            frame.attrs.update(
                within_ss=CREDIT_WITHIN_SS,
                within_df=CREDIT_WITHIN_DF,
                derived="within_ss is derived (docs/reference-values.md §6), not printed in seed 002",
            )
        elif name == "sim_poisson_gamma":
            frame.attrs["truth"] = json.loads((DATA_DIR / "sim_poisson_gamma.json").read_text())
        return frame
    if name in _EXTERNAL:
        file, source = _EXTERNAL[name]
        path = shared_dir(data_dir) / file
        if not path.is_file():
            raise DatasetNotFoundError(
                f"dataset {name!r} is not shipped with bayescred and {path} does not exist. "
                f"Get {file} from its public source: {source}; then pass data_dir= or set BAYESCRED_DATA "
                "to the folder holding it."
            )
        return pd.read_csv(path)
    raise KeyError(f"unknown dataset {name!r}; available: {', '.join(names())}")


def clean_bus(bus: pd.DataFrame) -> pd.DataFrame:
    """The cleaning of seed 004_07f8365c92996b9b.txt §6.3 (docs/reference-values.md §11.1).

    Drops rows with negative ``tot.cost`` (line 5490; missing costs, all with zero claims,
    are kept) and company 145, whose claim counts 402 and 377 are judged erroneous (line
    5496): 1,542 rows / 666 companies -> 1,473 rows / 660 companies. Returns a new frame.
    """
    keep = ~(bus["tot.cost"] < 0) & (bus["co.id"] != 145)
    return bus.loc[keep].reset_index(drop=True)


def split_workers_comp(wc: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training (years 1-6) and test (year 7) sets of seed 002_112bee5238c97912.txt §3.1.

    Both keep rows with payroll > 0 and loss > 0 (line 447, plus errata E11: log(loss) needs
    loss > 0): 669 rows in 118 classes and 109 rows. Adds ``yearcentr`` = year minus its mean
    over the training rows (3.502242), ``log_loss`` and ``log_payroll`` (the offset).
    """
    ok = (wc["payroll"] > 0) & (wc["loss"] > 0)
    train = wc.loc[ok & (wc["year"] <= 6)].reset_index(drop=True)
    test = wc.loc[ok & (wc["year"] == 7)].reset_index(drop=True)
    centre = train["year"].mean()
    train, test = (
        part.assign(
            yearcentr=part["year"] - centre,
            log_loss=np.log(part["loss"].astype(float)),
            log_payroll=np.log(part["payroll"].astype(float)),
        )
        for part in (train, test)
    )
    return train, test
