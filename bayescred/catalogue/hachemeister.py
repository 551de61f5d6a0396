"""Hachemeister regression credibility: X_j = Q_j β(Θ_j) + ε_j, Q_j = [1, t], Cov β(Θ_j) = U
(docs/formulas.md §4). As a mixed model: ``y ~ 1 + t + (1 + t || risk)`` (U diagonal) or
``(1 + t | risk)`` (U a full matrix): the ``structure`` argument, which all three arms honour."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ._entry import Study
from ._gaussian import GaussianEntry
from ._types import Count, Likelihood, Name, NonNegative, Number, Positive, Strict

STRUCTURES = ("diagonal", "correlated")
DEFAULT_STRUCTURE = "diagonal"


class Arguments(Strict):
    group: Name
    time: Name
    response: Name
    weight: Name | None = None
    centering: Literal["origin", "global", "group"] = "origin"
    structure: Literal[STRUCTURES] = DEFAULT_STRUCTURE
    method: Literal["unbiased", "iterative"] = "unbiased"
    tau_estimated_on: Literal["centred", "uncentred"] = "centred"
    between: list[list[Number]] | None = None
    within: NonNegative | None = None
    future: Number | None = None
    tol: Positive = 1e-13
    maxit: Count = 10000
    likelihood: Likelihood = "marginal"


def _next_premium(sim):
    """The next period's true premium intercept_j + slope_j (T + 1)."""
    return sim.effects["intercept"] + sim.effects["slope"] * (int(sim.data["period"].max()) + 1)


class Hachemeister(GaussianEntry):
    name = "hachemeister"
    title = "Hachemeister regression credibility"
    text = ("X<sub>j</sub> = Q<sub>j</sub> β(Θ<sub>j</sub>) + ε<sub>j</sub>, Q<sub>j</sub> = [1, t], "
            "Cov β(Θ<sub>j</sub>) = U; A<sub>j</sub> = U(U + σ² M<sub>j</sub><sup>−1</sup>)<sup>−1</sup>; "
            "credibility estimate A<sub>j</sub> B<sub>j</sub> + (I − A<sub>j</sub>) B<sub>GLS</sub> "
            "(seed 004_07f8365c92996b9b.txt eqs 3.24–3.32; docs/formulas.md §4).")
    Arguments = Arguments
    classical_function = "bayescred.credibility:hachemeister"
    factory_function = "bayescred.models:hachemeister"
    reads = {
        "classical": ("group", "time", "response", "weight", "centering", "structure", "method", "tau_estimated_on",
                      "between", "within", "future", "tol", "maxit"),
        "eb": ("group", "time", "response", "weight", "centering", "structure", "future"),
        "bayes": ("group", "time", "response", "weight", "centering", "structure", "likelihood"),
    }
    column_keys = ("group", "time", "response", "weight")
    study = Study(1, "Hachemeister (next period)", "hachemeister",
                  {"group": "risk", "time": "period", "response": "loss", "weight": "weight",
                   "structure": "correlated"}, _next_premium)

    @staticmethod
    def structure_of(args) -> str:
        return args.get("structure", DEFAULT_STRUCTURE)

    def structure(self, args):
        if self.structure_of(args) == "diagonal":
            return "U diagonal: the risk's intercept and slope vary independently (no correlation parameter)"
        return "U a full 2 x 2 matrix: the risk's intercept and slope may be correlated"

    def formula(self, args):
        bar = "||" if self.structure_of(args) == "diagonal" else "|"
        return f"{args['response']} ~ 1 + time_c + (1 + time_c {bar} {args['group']})"

    def frame(self, data, args):
        """The rows with ``time_c`` = time minus the centre the classical fit uses, and ``centre``."""
        group, time, weight = args["group"], args["time"], args.get("weight")
        w = data[weight] if weight else pd.Series(1.0, index=data.index)
        t = data[time].astype(float)
        centering = args.get("centering", "origin")
        if centering == "global":
            centre = pd.Series(np.average(t, weights=w), index=data.index)
        elif centering == "group":
            centre = (t * w).groupby(data[group]).transform("sum") / w.groupby(data[group]).transform("sum")
        else:
            centre = pd.Series(0.0, index=data.index)
        return data.assign(time_c=t - centre, centre=centre)

    def future(self, frame, args) -> float:
        return float(args["future"]) if args.get("future") is not None else float(frame[args["time"]].max() + 1)

    def newdata(self, fit, args):
        frame, group = fit.model_frame, args["group"]
        newdata = frame[[group]].drop_duplicates().sort_values(group).reset_index(drop=True)
        centre = frame.groupby(group)["centre"].first()
        newdata["time_c"] = self.future(frame, args) - newdata[group].map(centre).to_numpy()
        return newdata

    def components(self, args):
        units = {"within": "variance of one observation of unit weight (response units squared)",
                 "between[intercept]": "variance of the risk's intercept (response units squared)",
                 "between[slope]": "variance of the risk's slope (response units per period, squared)"}
        return units

    def posterior_names(self, args):
        return {f"between[{args['time']}]": "between[slope]"}

    def term_component(self, grp, var1, args):
        return "between[intercept]" if var1 == "(Intercept)" else "between[slope]"

    def extra(self, fit, args, comps):
        """The REML U for the report's ellipse picture, and the future period."""
        return {"between_matrix": _between_matrix(fit), "future": self.future(fit.model_frame, args)}

    def add_credibility(self, fit, args, premiums, comps):
        """Each risk's credibility matrix at the REML estimates, A_j = E_j M_j with
        E_j = (sigma2 I + U M_j)^-1 U and M_j = X_j'W_jX_j, X_j = [1, time_c] (docs/formulas.md
        §4); its diagonal as ``A_intercept`` and ``A_slope``, the classical table's columns."""
        from ..likelihood.gaussian import regression_blocks
        from ..portfolio import cross_products

        cp = cross_products(fit.model_frame, args["group"], args["response"], ["time_c"], args.get("weight"),
                            check=False)
        M = cp["QWQ"]
        _, E = regression_blocks(_between_matrix(fit), np.asarray(fit.sigma2), M, np)
        A = E @ M
        for name, c in (("A_intercept", 0), ("A_slope", 1)):
            premiums[name] = pd.Series(A[:, c, c], index=cp["levels"]).reindex(premiums.index).to_numpy()


def _between_matrix(fit) -> np.ndarray:
    """The REML between matrix U (2 x 2; diagonal for the ``||`` structure)."""
    vc = fit.varcorr
    rows = vc[vc["grp"] != "Residual"]
    U = np.diag(rows[rows["var2"].isna()]["vcov"].to_numpy(float))
    cov = rows[rows["var2"].notna()]["vcov"].to_numpy(float)
    if len(cov):
        U[0, 1] = U[1, 0] = cov[0]
    return U


ENTRY = Hachemeister()
