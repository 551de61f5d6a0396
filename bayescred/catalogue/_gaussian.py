"""What the Gaussian credibility models share: the empirical-Bayes arm is ``bc.lmm`` on the
mixed model that *is* the credibility model (docs/formulas.md §8), and its per-risk summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._entry import EBSummary, Entry, table


class GaussianEntry(Entry):
    """A credibility model whose EB arm is ``bc.lmm(self.formula(args), self.frame(data, args))``."""

    eb_fit = "bayescred.lmm.model:LMMFit"

    def formula(self, args: dict) -> str:
        """The lme4 formula of the mixed model equal to this credibility model."""
        raise NotImplementedError

    def frame(self, data: pd.DataFrame, args: dict) -> pd.DataFrame:
        """The rows the mixed model is fitted to (a derived regressor added where needed)."""
        return data

    def newdata(self, fit, args: dict) -> pd.DataFrame:
        """One row per risk at which the premium is predicted, in the risks' sorted order."""
        cols = self.risks(args)
        return fit.model_frame[cols].drop_duplicates().sort_values(cols).reset_index(drop=True)

    def eb(self, data, args: dict, method: str = "REML"):
        from ..lmm import lmm

        extra = {k: args[k] for k in ("within_ss", "within_df") if k in args and k in self.reads["eb"]}
        return lmm(self.formula(args), self.frame(data, args), weights=args.get("weight"), method=method, **extra)

    def eb_label(self, method: str) -> str:
        return method

    def term_component(self, grp: str, var1: str, args: dict) -> str:
        """The component name of lme4's variance row (grp, var1): ``between[grp]`` by default."""
        return f"between[{grp}]"

    def premiums(self, fit, args: dict, data=None) -> pd.DataFrame:
        newdata = self.newdata(fit, args)
        pred = fit.predict(newdata)
        prem = pred[["premium", "cond_sd", "pev_sd", "mse_sd"]].copy()
        cols = self.risks(args)
        prem.index = (pd.Index(newdata[cols[0]].to_numpy(), name=cols[0]) if len(cols) == 1
                      else pd.MultiIndex.from_frame(newdata[cols]))
        return prem

    def eb_summary(self, fit, args: dict, data=None, prob: float = 0.9) -> EBSummary:
        prem = self.premiums(fit, args)
        units = self.components(args)
        intervals = fit.confint(prob, parm="theta_")  # profile intervals of the SDs; squared below
        res = intervals[intervals["grp"] == "Residual"].iloc[0]
        comps = {"within": (fit.sigma2, res["lower"] ** 2, res["upper"] ** 2)}
        vc = fit.varcorr
        variances = vc[(vc["grp"] != "Residual") & vc["var2"].isna()]
        for (_, row), (_, ci) in zip(variances.iterrows(), intervals[intervals["grp"] != "Residual"].iterrows()):
            name = self.term_component(row["grp"], row["var1"], args)
            comps[name] = (row["vcov"], ci["lower"] ** 2, ci["upper"] ** 2)
        self.add_credibility(fit, args, prem, comps)
        return EBSummary(prem, table(comps, units), method=fit.method, prob=prob, singular=bool(fit.singular),
                         extra=self.extra(fit, args, comps))

    def add_credibility(self, fit, args: dict, premiums: pd.DataFrame, comps: dict) -> None:
        """Add the credibility factor Z per risk where the model defines one (in place)."""

    def extra(self, fit, args: dict, comps: dict) -> dict:
        """What the report draws beyond the tables (a profile, a matrix)."""
        return {}


def one_factor_credibility(fit, args: dict, premiums: pd.DataFrame, comps: dict) -> None:
    """Z_j = w_j• τ² / (w_j• τ² + σ²) of a one-factor model (docs/formulas.md §2)."""
    frame, group = fit.model_frame, args["group"]
    w = frame.groupby(group)[args["weight"]].sum() if args.get("weight") else frame.groupby(group).size()
    tau2 = comps["between"][0]
    premiums["Z"] = (w * tau2 / (w * tau2 + fit.sigma2)).reindex(premiums.index).to_numpy()


def between_profile(fit, comps: dict) -> dict:
    """The profiled criterion over the between SD, from well below the interval to above it."""
    from ..lmm.inference import profile_between

    tau2, lower, upper = comps["between"]
    return {"profile": profile_between(fit, np.sqrt(max(lower, 1e-12 * tau2)) / 30, np.sqrt(max(upper, tau2)) * 3)}
