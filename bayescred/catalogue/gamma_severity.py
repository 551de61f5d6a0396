"""Gamma severity credibility: claim sizes X | λ_i ~ Gamma(ν, λ_i), λ_i ~ Gamma(α, β), so the risk's
mean claim ν/λ_i is inverse gamma (docs/formulas.md §12). Classical: Bühlmann–Straub on the claim
sizes with claim-count weights (the model's exact credibility premium); EB: exact marginal ML;
Bayes: the same marginal with priors, then exact draws of each λ_i."""

from __future__ import annotations

from typing import Literal

from ._entry import EBSummary, Entry, Study, table
from ._types import Likelihood, Name, Positive, Strict

UNITS = {
    "between": "variance of the risk's mean claim μ(Θ) (currency squared)",
    "within": "variance of one claim given the risk, averaged over risks (currency squared)",
}


class Arguments(Strict):
    group: Name
    severity: Name
    claims: Name | None = None
    method: Literal["unbiased", "iterative"] = "unbiased"
    tol: Positive = 1e-13
    likelihood: Likelihood = "marginal"


def _mean_claim(sim):
    return sim.effects["mean"]


class GammaSeverity(Entry):
    name = "gamma_severity"
    title = "Gamma severity"
    text = ("X | λ<sub>i</sub> ~ Gamma(ν, λ<sub>i</sub>) per claim, λ<sub>i</sub> ~ Gamma(α, β); the risk's mean "
            "claim μ(Θ<sub>i</sub>) = ν/λ<sub>i</sub>; Z<sub>i</sub> = N<sub>i</sub>/(N<sub>i</sub> + k), "
            "k = (α − 1)/ν; premium = ν(β + S<sub>i</sub>)/(α + νN<sub>i</sub> − 1) = Z<sub>i</sub> x̄<sub>i</sub> "
            "+ (1 − Z<sub>i</sub>) μ, exact credibility (docs/formulas.md §12). Classical: Bühlmann–Straub on the "
            "claim sizes, weights = numbers of claims; empirical Bayes: exact marginal ML of (ν, α, μ).")
    Arguments = Arguments
    classical_function = "bayescred.credibility:gamma_severity"
    factory_function = "bayescred.models:gamma_severity"
    eb_fit = "bayescred.glmm.gamma_severity:GammaSeverityFit"
    reads = {
        "classical": ("group", "severity", "claims", "method", "tol"),
        "eb": ("group", "severity", "claims"),
        "bayes": ("group", "severity", "claims", "likelihood"),
    }
    column_keys = ("group", "severity", "claims")
    study = Study(3, "Gamma severity (mean claim)", "gamma_severity",
                  {"group": "risk", "severity": "severity", "claims": "claims"}, _mean_claim)
    # no measured coverage of its own yet: the nearest studied model is the other conjugate
    # gamma-effect model fitted by exact marginal ML
    studied_as = "poisson_gamma"

    def eb(self, data, args, method="ML"):
        from ..glmm.gamma_severity import gamma_severity_eb

        return gamma_severity_eb(data, **self.arguments_for("eb", args))

    def eb_label(self, method):
        return "exact marginal ML"

    def components(self, args):
        return dict(UNITS)

    def structure(self, args):
        return "one gamma rate λ per risk (an inverse-gamma mean claim), independent across risks"

    def premiums(self, fit, args, data=None):
        return fit.ranef()[["premium", "cond_sd", "pev_sd", "mse_sd", "Z"]]

    def eb_summary(self, fit, args, data=None, prob=0.9):
        comp = fit.component_table(prob)
        comps = {name: tuple(comp.loc[name, ["estimate", "lower", "upper"]]) for name in UNITS}
        return EBSummary(self.premiums(fit, args), table(comps, UNITS), method="ML", prob=prob,
                         singular=bool(fit.boundary), extra={"interval": comp.attrs["interval"]})


ENTRY = GammaSeverity()
