"""Classical vs empirical Bayes vs full Bayes, side by side.

The EBLUP treats the estimated variance components as known. Its uncertainty comes in three
grades (docs/formulas.md §9; seed 002_112bee5238c97912.txt §2.3): (i) the conditional SD at the
estimates (lme4's condVar), (ii) the prediction-error SD that also counts the fixed effects
(Henderson), (iii) a second-order MSE that also counts the variance parameters
(Prasad–Rao / Kackar–Harville). The posterior SD counts everything the model knows it does
not know. The ratios posterior SD / EBLUP measure show how much the plug-in understates.

Intervals: posterior intervals are equal-tailed (ETI); EBLUP intervals are normal,
estimate ± z·SD, at the same probability, so like is compared with like.

GLMMs (``bc.glmm`` against ``bc.models.poisson_lognormal`` and its siblings) are compared
on what both define per risk without the data: the relativity exp(u_j) — the
credibility-weighted part of the premium, which is the relativity times the rating-factor
rate — with the EB measures carried from the link scale by the delta method
(SD(exp û) = exp(û) SD(û)); and the components by name: ``between`` = Var(u), the variance
of the link-scale effect, ``dispersion`` = the Gamma dispersion (glmer's residual variance).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from ._callable import make_callable
from . import catalogue
from .catalogue import EBSummary
from .errors import DataError

MEASURES = ("cond_sd", "pev_sd", "mse_sd")
MEASURE_NAMES = {
    "cond_sd": "(i) conditional SD",
    "pev_sd": "(ii) PEV SD incl. fixed effects",
    "mse_sd": "(iii) second-order MSE SD",
}


def risk_labels(index: pd.Index) -> pd.Index:
    """Risk labels as the posterior names them: a crossed or nested cell (a, b) is "a:b"."""
    if isinstance(index, pd.MultiIndex):
        return pd.Index([":".join(map(str, key)) for key in index], name=":".join(map(str, index.names)))
    return index


def by_risk(frame: pd.DataFrame, risks: pd.Index) -> pd.DataFrame:
    """Rows of a per-risk table in the order of the posterior's risk labels. A nested risk
    (region, policy) is "region:policy", or the policy alone where the posterior names its
    risks so (a hierarchical factory does when the inner labels are unique)."""
    labels = risk_labels(frame.index)
    if isinstance(frame.index, pd.MultiIndex) and not labels.isin(risks).any():
        inner = frame.index.get_level_values(-1)
        if inner.is_unique:
            labels = pd.Index(inner, name=frame.index.names[-1])
    return frame.set_axis(labels).reindex(risks)


def _draws(posterior, name: str) -> np.ndarray:
    """Posterior draws of ``name`` with chain and draw stacked first: (S, ...)."""
    da = posterior["posterior"][name]
    da = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    return da


def _eti(values: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1 - prob) / 2
    return np.quantile(values, a, axis=0), np.quantile(values, 1 - a, axis=0)


def posterior_table(posterior, name: str, prob: float = 0.9) -> pd.DataFrame:
    """Mean, SD, median and ETI of a per-risk posterior variable, one row per risk."""
    da = _draws(posterior, name)
    values = da.to_numpy()
    lo, hi = _eti(values, prob)
    dims = [d for d in da.dims if d != "sample"]
    index = pd.Index(da[dims[0]].to_numpy(), name=dims[0]) if dims else pd.Index([name])
    return pd.DataFrame(
        {
            "mean": values.mean(axis=0).ravel(),
            "sd": values.std(axis=0, ddof=1).ravel(),
            "median": np.median(values, axis=0).ravel(),
            "lower": np.ravel(lo),
            "upper": np.ravel(hi),
        },
        index=index,
    )


def _posterior_components(posterior, renames: dict) -> dict:
    """Draws (S,) of each variance parameter: between/within/lam/dispersion, one per term or
    diagonal entry (``between[term]``), renamed by the catalogue entry's ``renames``."""
    post, out = posterior["posterior"], {}
    for var in ("between", "within", "lam", "dispersion"):
        if var not in post:
            continue
        da = _draws(posterior, var)
        dims = [d for d in da.dims if d != "sample"]
        values = da.to_numpy()
        if not dims:
            out[var] = values
        elif len(dims) == 1 or (len(dims) == 2 and values.shape[1] == values.shape[2]):
            for i, lab in enumerate(da[dims[0]].to_numpy()):
                out[f"{var}[{lab}]"] = values[:, i] if len(dims) == 1 else values[:, i, i]
    return {renames.get(name, name): draws for name, draws in out.items()}


def _components(eb: EBSummary, posterior, classical, prob: float, entry, args: dict) -> pd.DataFrame:
    """One row per variance component of the EB fit, the classical fit and the posterior,
    matched by name; each name has one unit, the catalogue entry's (a clash is an error)."""
    post = _posterior_components(posterior, entry.posterior_names(args) if entry else {})
    units = dict(entry.components(args)) if entry else {}
    eb_comp = eb.components
    if "unit" in eb_comp:
        for name, unit in eb_comp["unit"].items():
            if units.setdefault(name, unit) != unit:
                raise DataError(f"variance component {name!r}: the EB fit reports it in {unit!r}, "
                                f"the model defines it in {units[name]!r}")
    classical_values = entry.classical_components(classical, args) if entry is not None and classical is not None else {}
    rows = []
    for name in dict.fromkeys([*eb_comp.index, *classical_values, *post]):
        row = {"component": name, "unit": units.get(name, "")}
        if name in eb_comp.index:
            got = eb_comp.loc[name]
            row.update(reml=got.get("estimate"), reml_lower=got.get("lower"), reml_upper=got.get("upper"))
        if name in classical_values:
            row["classical"] = float(classical_values[name])
        if name in post:
            d = post[name]
            lo, hi = _eti(d, prob)
            row.update(post_mean=d.mean(), post_sd=d.std(ddof=1), post_median=np.median(d),
                       post_lower=float(lo), post_upper=float(hi))
        rows.append(row)
    return pd.DataFrame(rows).set_index("component")


@dataclass
class Comparison:
    """Tables (and plots) comparing classical, EBLUP and posterior answers."""

    variance_components: pd.DataFrame
    premiums: pd.DataFrame
    credibility: pd.DataFrame
    prob: float
    posterior: object = None
    eb: EBSummary | None = None
    classical: object = None
    quantity: str = "premium"

    @property
    def interval_label(self) -> str:
        return f"{self.prob:.0%} ETI (posterior) / {self.prob:.0%} normal (EBLUP)"

    def understatement(self) -> pd.Series:
        """Median over risks of posterior SD / each EBLUP measure (>1: the EBLUP understates)."""
        cols = [f"sd_ratio_{m}" for m in MEASURES if f"sd_ratio_{m}" in self.premiums]
        return self.premiums[cols].median()


GLMM_FACTORIES = {"poisson_lognormal": "log", "gamma_lognormal": "log", "binomial_logitnormal": "logit"}
UNITS = {"log": "variance of the log-scale effect (log relativity)",
         "logit": "variance of the logit-scale effect (log odds ratio)"}


def glmm_summary(fit, posterior, prob: float = 0.9) -> EBSummary:
    """An :class:`EBSummary` of a GLMM fit (``bc.glmm``'s protocol: ``ranef()`` with
    ``grp, level, term, value, cond_sd[, pev_sd, mse_sd]``, ``varcorr`` as lme4's
    as.data.frame(VarCorr)) for the posterior of a GLMM factory: per risk of the factory's
    group, the relativity exp(û_j) and its SDs by the delta method; components ``between``
    (the group's random-intercept variance) and, where glmer has a residual, ``dispersion``,
    each with its unit."""
    attrs = posterior["posterior"].attrs
    factory = attrs.get("bayescred_factory")
    if factory not in GLMM_FACTORIES:
        raise DataError(f"a GLMM fit compares with the posterior of a GLMM factory ({', '.join(GLMM_FACTORIES)}); "
                        f"this posterior is from {factory!r}")
    group = posterior["posterior"]["u"].dims[-1]
    risks = list(posterior["posterior"][group].to_numpy())
    re = fit.ranef()
    rows = re[(re["grp"] == group) & (re["term"] == "(Intercept)")]
    if rows.empty:
        raise DataError(f"the GLMM fit has no random intercept (1 | {group}), the posterior's group", column=group)
    label = {str(r): r for r in risks}
    rows = rows.set_index(rows["level"].map(lambda v: label.get(str(v), v)))
    rel = np.exp(rows["value"].astype(float))
    prem = pd.DataFrame({"premium": rel}, index=pd.Index(rows.index, name=group))
    for m in MEASURES:
        if m in rows:
            prem[m] = rel * rows[m].astype(float)
    vc = fit.varcorr
    comps = {}
    own = vc[(vc["grp"] == group) & (vc["var1"] == "(Intercept)") & vc["var2"].isna()]
    if len(own):
        comps["between"] = (float(own["vcov"].iloc[0]), UNITS[GLMM_FACTORIES[factory]])
    resid = vc[vc["grp"] == "Residual"]
    if len(resid) and factory == "gamma_lognormal":
        comps["dispersion"] = (float(resid["vcov"].iloc[0]), "squared coefficient of variation of one claim")
    components = pd.DataFrame({"estimate": [v for v, _ in comps.values()], "lower": np.nan, "upper": np.nan,
                               "unit": [u for _, u in comps.values()]}, index=list(comps))
    return EBSummary(prem, components, method="Laplace", prob=prob, singular=bool(getattr(fit, "singular", False)),
                     extra={"quantity": "relativity"})


def _credibility_matrices(cred, posterior, eb_prem, classical, prob, entry, args) -> pd.DataFrame:
    """Regression credibility: the diagonal of each risk's credibility matrix A_j, one block of
    columns per coefficient (classical, REML plug-in, posterior median and ETI), the
    coefficient named as the variance components name it (``between[slope]``: ``slope``)."""
    A = posterior["posterior"]["A"]
    renames = entry.posterior_names(args) if entry is not None else {}
    columns = {}
    for coef in A["coef"].to_numpy():
        name = renames.get(f"between[{coef}]", f"between[{coef}]")[len("between["):-1]
        if classical is not None and f"A_{name}" in classical.table:
            columns[f"classical_{name}"] = by_risk(classical.table, cred.index)[f"A_{name}"].to_numpy()
        if f"A_{name}" in eb_prem:
            columns[f"reml_{name}"] = eb_prem[f"A_{name}"].to_numpy()
        draws = A.sel(coef=coef, coef_=coef).stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
        lo, hi = _eti(draws, prob)
        columns.update({f"post_median_{name}": np.median(draws, axis=0), f"post_lower_{name}": lo,
                        f"post_upper_{name}": hi})
    return cred.assign(**columns)


def compare(eb, posterior, classical=None, prob: float = 0.9, *, arguments: dict | None = None) -> Comparison:
    """Side-by-side tables of classical, EBLUP and posterior answers.

    ``eb`` is any empirical-Bayes fit of the posterior's model: an ``LMMFit`` of the
    credibility model's mixed model, a Poisson–gamma EB fit, a GLMM fit (``bc.glmm``: then
    the per-risk quantity compared is the relativity, see :func:`glmm_summary`), or an
    :class:`EBSummary` already built. ``posterior`` is the DataTree of ``bc.sample`` (its
    attrs name the factory and its arguments: the catalogue entry of that model summarises
    the fit per risk and names the variance components of all three arms, with their units);
    ``classical`` a fit of ``bc.credibility`` (its ``.structure`` and ``.table``).
    ``arguments``: the model's arguments, when they differ from those the factory recorded.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    entry = catalogue.for_posterior(posterior)
    args = dict(arguments) if arguments is not None else _recorded_arguments(posterior)
    if not isinstance(eb, EBSummary):
        if entry is not None and not entry.is_eb_fit(eb):
            wanted = entry.eb_fit.partition(":")[2]
            raise DataError(f"the posterior is of the catalogue model {entry.name!r}, whose EB fit is a {wanted} "
                            f"(catalogue.get({entry.name!r}).eb), not a {type(eb).__name__}; a GLMM fit compares "
                            f"with the posterior of a GLMM factory ({', '.join(GLMM_FACTORIES)})")
        eb = entry.eb_summary(eb, args, prob=prob) if entry is not None else glmm_summary(eb, posterior, prob)
    quantity = eb.extra.get("quantity", "premium")
    z = NormalDist().inv_cdf(0.5 + prob / 2)
    post = posterior_table(posterior, quantity, prob)
    risks = post.index
    eb_prem = by_risk(eb.premiums, risks)
    if eb_prem["premium"].isna().all():
        raise ValueError(f"no risk of the EB fit matches the posterior's risks {list(risks[:5])}")
    tab = pd.DataFrame(index=risks)
    if classical is not None:
        tab["classical"] = by_risk(classical.table, risks)["premium"].to_numpy()
    tab["eblup"] = eb_prem["premium"].to_numpy()
    for m in MEASURES:
        if m in eb_prem:
            tab[m] = eb_prem[m].to_numpy()
    tab["post_mean"] = post["mean"]
    tab["post_sd"] = post["sd"]
    tab["post_lower"] = post["lower"]
    tab["post_upper"] = post["upper"]
    for m in MEASURES:
        if m in tab:
            tab[f"sd_ratio_{m}"] = tab["post_sd"] / tab[m]
    if "mse_sd" in tab:
        tab["eblup_lower"] = tab["eblup"] - z * tab["mse_sd"]
        tab["eblup_upper"] = tab["eblup"] + z * tab["mse_sd"]

    components = _components(eb, posterior, classical, prob, entry, args)
    cred = pd.DataFrame(index=risks)
    if classical is not None and "Z" in classical.table:
        cred["classical"] = by_risk(classical.table, risks)["Z"].to_numpy()
    if "Z" in eb_prem:
        cred["reml"] = eb_prem["Z"].to_numpy()
    if "Z" in posterior["posterior"]:
        zt = posterior_table(posterior, "Z", prob)
        cred["post_median"] = zt["median"].to_numpy()
        cred["post_lower"] = zt["lower"].to_numpy()
        cred["post_upper"] = zt["upper"].to_numpy()
    if "A" in posterior["posterior"]:
        cred = _credibility_matrices(cred, posterior, eb_prem, classical, prob, entry, args)
    return Comparison(components, tab, cred, prob, posterior, eb, classical, quantity)


def _recorded_arguments(posterior) -> dict:
    """The arguments the factory was called with (``bc.sample`` keeps them in the attrs)."""
    import json

    text = posterior["posterior"].attrs.get("bayescred_arguments")
    return json.loads(text) if text else {}


make_callable(__name__)  # bc.compare(...) calls the function; the module stays importable
