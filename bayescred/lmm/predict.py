"""``LMMFit.predict`` as lme4's ``predict.merMod``: which random effects, new levels, intervals.

The target of a row is μ = x₀'β + Σ_{terms in re_form} z₀'u (lme4's ``re.form``): all
random terms by default, none for ``re_form="~0"`` (lme4's ``re.form = NA``), or the terms
a formula such as ``"~ (1 | Subject)"`` names. Its prediction x₀'β̂ + Σ z₀'û carries the three
measures of the EBLUPs (docs/formulas.md §9): ``cond_sd`` (β, θ
known), ``pev_sd`` (also β̂), ``mse_sd`` (also θ̂). A level not seen in the fit is an error
unless ``allow_new_levels=True``; then û = 0 (the collective premium, as lme4) and the new
risk's own deviation z₀'u adds Var(z₀'u) = z₀'Σz₀ to every measure. ``interval`` adds the
normal intervals premium ± z_{(1+level)/2}·sd of the chosen measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .. import formula as fm
from ..errors import DataError, NewLevelError

MEASURES = ("cond", "pev", "mse")


def _no_random(re_form) -> bool:
    if re_form is False:
        return True
    if isinstance(re_form, str):
        text = re_form.replace(" ", "")
        return text in ("~0", "~-1", "NA")
    return False


def selected_terms(fit, re_form) -> dict[int, np.ndarray]:
    """Which random effects ``re_form`` keeps: {term index: mask of its effects}. As lme4,
    a term of ``re_form`` may take some effects of a model term on the same grouping
    factor (``~ (1 | Subject)`` keeps the intercept of ``(Days | Subject)``)."""
    terms = fit._design.terms
    if re_form is None or re_form is True:
        return {i: np.ones(t.k, bool) for i, t in enumerate(terms)}
    if _no_random(re_form):
        return {}
    if not isinstance(re_form, str):
        raise fm.FormulaError(f"re_form must be None, '~0' (or False) or a formula of random terms, got {re_form!r}")
    parsed = fm.parse(re_form)
    if parsed.response is not None or parsed.fixed != "1" or not parsed.random:
        raise fm.FormulaError(f"re_form must name random terms only, as '~ (1 | group)', got {re_form!r}")
    keep: dict[int, np.ndarray] = {}
    for sub in fm.random_terms(parsed, fit._data):
        for i, t in enumerate(terms):
            if t.group == sub.group and set(sub.names) <= set(t.names):
                mask = np.isin(t.names, sub.names)
                keep[i] = keep[i] | mask if i in keep else mask
                break
        else:
            have = ", ".join(f"({' + '.join(t.names)} | {t.group})" for t in terms)
            raise fm.FormulaError(
                f"re_form term ({' + '.join(sub.names)} | {sub.group}) is not part of the model's terms {have}")
    return dict(sorted(keep.items()))


def _check_new_levels(fit, data: pd.DataFrame, zs, keep) -> None:
    for i in keep:
        t = fit._design.terms[i]
        codes = zs[i][1]
        if (codes < 0).any():
            labels = fm.group_labels(t.columns, data)
            new = list(dict.fromkeys(labels[codes < 0]))
            shown = ", ".join(repr(v) for v in new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
            raise NewLevelError(
                f"level {shown} of grouping factor '{t.group}' was not in the fitted data "
                "(pass allow_new_levels=True for the collective premium, u = 0)",
                column=t.group, rows=list(data.index[codes < 0]),
            )


def _measures_for(fit, unc, data, X, zs, off, keep) -> pd.DataFrame:
    """Premiums and the three SDs of the targets that keep only the terms ``keep``."""
    beta = fit.fixef.to_numpy()
    prem, cond, pev, mse = [], [], [], []
    for r in range(len(data)):
        entries, value, new_var = [], float(X[r] @ beta + off[r]), 0.0
        for i, mask in keep.items():
            Zi, codes = zs[i][0] * mask, zs[i][1]
            lev = codes[r]
            if lev < 0:
                new_var += float(Zi[r] @ fit.covariances[i] @ Zi[r])
                continue
            value += float(Zi[r] @ fit._modes[i][lev])
            entries += [(i, lev, e, Zi[r, e]) for e in np.flatnonzero(mask)]
        g1, g2, g3 = unc.components(X[r], entries)
        g1 += new_var
        prem.append(value)
        cond.append(np.sqrt(max(g1, 0)))
        pev.append(np.sqrt(max(g1 + g2, 0)))
        mse.append(np.sqrt(max(g1 + g2 + 2 * g3 - unc.ml_bias(entries), 0)))
    return pd.DataFrame({"premium": prem, "cond_sd": cond, "pev_sd": pev, "mse_sd": mse}, index=data.index)


def predict(fit, newdata=None, re_form=None, allow_new_levels=False, interval=None, level=0.95,
            bootstrap=None, seed=None) -> pd.DataFrame:
    """Premiums with ``cond_sd``, ``pev_sd``, ``mse_sd`` (and ``boot_sd`` with ``bootstrap``);
    ``interval`` ("cond", "pev", "mse" or a list of them) adds ``<measure>_lower`` and
    ``<measure>_upper`` at ``level``. See the module docstring."""
    wanted = [interval] if isinstance(interval, str) else list(interval or [])
    for m in wanted:
        if m not in MEASURES:
            raise DataError(f"interval must be one or more of {', '.join(MEASURES)}, got {m!r}")
    if not 0 < level < 1:
        raise DataError(f"level must be between 0 and 1, got {level!r}")
    keep = selected_terms(fit, re_form)
    unc = fit._measures()
    data, X, zs, off = unc._targets(newdata)
    if not allow_new_levels:
        _check_new_levels(fit, data, zs, keep)
    if sum(int(m.sum()) for m in keep.values()) == sum(t.k for t in fit._design.terms):
        out = unc.predict(newdata, bootstrap=bootstrap, seed=seed)
    else:
        if bootstrap:
            raise DataError("the parametric bootstrap predicts with every random term (re_form=None)")
        out = _measures_for(fit, unc, data, X, zs, off, keep)
    z = stats.norm.ppf(0.5 + level / 2)
    for m in wanted:
        out[f"{m}_lower"] = out["premium"] - z * out[f"{m}_sd"]
        out[f"{m}_upper"] = out["premium"] + z * out[f"{m}_sd"]
    return out
