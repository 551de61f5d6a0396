"""Poisson–gamma claim-frequency credibility: N_it | u_i ~ Poisson(u_i μ_it), u_i ~ Gamma(1/λ, 1/λ)
(docs/formulas.md §7). The EB arm is the exact negative-binomial marginal ML; rating factors
(``fixed``) are coded alike in the EB fit and the factory."""

from __future__ import annotations

import math

import pandas as pd

from ..errors import DataError
from ..rating import UNITS
from ._entry import EBSummary, Entry, Study, table
from ._types import Likelihood, Name, Number, Positive, Strict
from pydantic import StrictInt, StrictStr

class Arguments(Strict):
    group: Name
    claims: Name
    exposure: Name
    fixed: list[Name] | None = None
    base: dict[str, StrictInt | StrictStr | Number] | None = None
    covariates: list[Name] | None = None
    alpha: Positive | None = None
    beta: Positive | None = None
    likelihood: Likelihood = "marginal"


def _frequency(sim):
    return sim.effects["frequency"]


class PoissonGamma(Entry):
    name = "poisson_gamma"
    title = "Poisson–gamma claim frequency"
    text = ("N<sub>it</sub> | u<sub>i</sub> ~ Poisson(u<sub>i</sub> μ<sub>it</sub>), "
            "u<sub>i</sub> ~ Gamma(1/λ, 1/λ); Z<sub>i</sub> = μ<sub>i+</sub>/(μ<sub>i+</sub> + 1/λ); "
            "premium u<sub>i</sub> = (1/λ + N<sub>i+</sub>)/(1/λ + μ<sub>i+</sub>) (docs/formulas.md §7; "
            "docs/reference-values.md §11.5).")
    Arguments = Arguments
    classical_function = "bayescred.credibility:poisson_gamma"
    factory_function = "bayescred.models:poisson_gamma"
    eb_fit = "bayescred.lmm.poisson_gamma:PoissonGammaFit"
    reads = {
        "classical": ("group", "claims", "exposure", "alpha", "beta"),
        "eb": ("group", "claims", "exposure", "fixed", "base", "covariates"),
        "bayes": ("group", "claims", "exposure", "fixed", "base", "covariates", "likelihood"),
    }
    column_keys = ("group", "claims", "exposure", "fixed", "covariates")
    study = Study(2, "Poisson–gamma (frequency)", "poisson_gamma",
                  {"group": "risk", "claims": "claims", "exposure": "exposure"}, _frequency)

    def eb(self, data, args, method="ML"):
        from ..lmm.poisson_gamma import poisson_gamma_eb

        return poisson_gamma_eb(data, **self.arguments_for("eb", args))

    def eb_label(self, method):
        return "exact marginal ML"

    def components(self, args):
        if args.get("fixed") or args.get("covariates"):  # the frequency differs by cell: only lam is one number
            return {"lam": UNITS["lam"]}
        return {"lam": UNITS["lam"], "between": UNITS["between"]}

    def structure(self, args):
        return "one multiplicative gamma risk effect u per risk, independent across risks"

    def premiums(self, fit, args, data=None):
        ranef = fit.ranef()
        if args.get("fixed"):
            if data is None:
                raise DataError("the premium of a Poisson–gamma fit with rating factors needs the exposure per "
                                "risk: pass the data (catalogue.get('poisson_gamma').eb_summary(fit, args, data))")
            # premium = the risk's frequency u_i mu_i+ / e_i+: the SDs of u_i scaled by the fitted
            # rating-factor frequency (whose own estimation error is not added), as the factory's
            exposure = data.groupby(args["group"])[args["exposure"]].sum().reindex(ranef.index)
            scale = ranef["expected"] / exposure
            prem = ranef[["u", "cond_sd", "pev_sd", "mse_sd"]].mul(scale, axis=0).rename(columns={"u": "premium"})
            prem["Z"] = ranef["Z"]
        else:  # premium = claim frequency per unit exposure, as the classical estimator
            levels = ranef.index
            newdata = pd.DataFrame({args["group"]: levels, args["exposure"]: 1.0})
            prem = fit.predict(newdata)[["premium", "cond_sd", "pev_sd", "mse_sd"]]
            prem.index = levels
            prem["Z"] = ranef["Z"].to_numpy()
        return prem

    def eb_summary(self, fit, args, data=None, prob=0.9):
        prem = self.premiums(fit, args, data)
        nan = math.nan
        comps = {name: (fit.components.loc[name, "estimate"], nan, nan) for name in self.components(args)}
        return EBSummary(prem, table(comps, self.components(args)), method="ML", prob=prob,
                         singular=bool(fit.boundary))


ENTRY = PoissonGamma()
