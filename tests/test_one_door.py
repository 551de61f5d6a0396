"""One door for data (issue 11): every arm (classical ``bc.credibility``, empirical Bayes
``bc.lmm`` / ``poisson_gamma_eb`` and full Bayes ``bc.models``) validates its rows through
``bayescred.portfolio.validate``, so a bad weight, response or risk label gets the same
exception class and the same message, naming the column and the rows, whichever arm is fitted.

The rule for weights and exposures: strictly positive everywhere. Zero weights raise
``ZeroWeightError`` (a ``NonPositiveError``), negative ones ``NonPositiveError``.
"""

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import bayescred as bc
from bayescred import errors
from bayescred.lmm import poisson_gamma_eb

ZERO = "must be strictly positive, found zeros (a row with zero weight carries no information: drop it)"
BAD = [3, 7]  # the rows every defect is put in


def rows():
    """Two sectors x three risks x four periods (risk x period: the crossed cells)."""
    rng = np.random.default_rng(1)
    table = [
        (s, f"{s}{r}", t, 100 + 5 * r + rng.normal(0, 3), rng.uniform(1, 3), int(rng.poisson(2)))
        for s in ("A", "B") for r in range(3) for t in range(1, 5)
    ]
    data = pd.DataFrame(table, columns=["sector", "risk", "period", "y", "w", "claims"])
    data.index = [f"r{i}" for i in range(len(data))]
    return data


# model -> (weight column or None, response column, {arm: call})
ARMS = {
    "buhlmann": (None, "y", {
        "classical": lambda d: bc.credibility.buhlmann(d, group="risk", response="y"),
        "lmm": lambda d: bc.lmm("y ~ 1 + (1 | risk)", d),
        "bayes": lambda d: bc.models.buhlmann(d, group="risk", response="y"),
    }),
    "buhlmann_straub": ("w", "y", {
        "classical": lambda d: bc.credibility.buhlmann_straub(d, group="risk", response="y", weight="w"),
        "lmm": lambda d: bc.lmm("y ~ 1 + (1 | risk)", d, weights="w"),
        "bayes": lambda d: bc.models.buhlmann_straub(d, group="risk", response="y", weight="w"),
    }),
    "hierarchical": ("w", "y", {
        "classical": lambda d: bc.credibility.hierarchical(d, levels=["sector", "risk"], response="y", weight="w"),
        "lmm": lambda d: bc.lmm("y ~ 1 + (1 | sector) + (1 | sector:risk)", d, weights="w"),
        "bayes": lambda d: bc.models.hierarchical(d, levels=["sector", "risk"], response="y", weight="w"),
    }),
    "hachemeister": ("w", "y", {
        "classical": lambda d: bc.credibility.hachemeister(d, group="risk", time="period", response="y", weight="w"),
        "lmm": lambda d: bc.lmm("y ~ period + (1 + period | risk)", d, weights="w"),
        "bayes": lambda d: bc.models.hachemeister(d, group="risk", time="period", response="y", weight="w"),
    }),
    "crossed": ("w", "y", {
        "classical": lambda d: bc.credibility.crossed(d, factors=["risk", "period"], response="y", weight="w"),
        "lmm": lambda d: bc.lmm("y ~ 1 + (1 | risk) + (1 | period) + (1 | risk:period)", d, weights="w"),
        "bayes": lambda d: bc.models.crossed(d, factors=["risk", "period"], response="y", weight="w"),
    }),
    "poisson_gamma": ("w", "claims", {  # the exposure plays the weight's role
        "classical": lambda d: bc.credibility.poisson_gamma(d, group="risk", claims="claims", exposure="w"),
        "lmm": lambda d: poisson_gamma_eb(d, group="risk", claims="claims", exposure="w"),
        "bayes": lambda d: bc.models.poisson_gamma(d, group="risk", claims="claims", exposure="w"),
    }),
}

# defect -> (column role, value put in the rows BAD, exception class, message before the rows)
DEFECTS = {
    "zero weight": ("weight", 0.0, errors.ZeroWeightError, ZERO),
    "negative weight": ("weight", -1.0, errors.NonPositiveError, "must be strictly positive"),
    "NaN weight": ("weight", np.nan, errors.MissingValueError, "has missing values"),
    "None weight": ("weight", None, errors.MissingValueError, "has missing values"),
    "inf weight": ("weight", np.inf, errors.NonFiniteError, "has infinite values"),
    "NaN response": ("response", np.nan, errors.MissingValueError, "has missing values"),
    "inf response": ("response", -np.inf, errors.NonFiniteError, "has infinite values"),
    "missing label": ("label", None, errors.MissingValueError, "grouping column has missing values"),
}
COUNT_DEFECTS = {  # claims of the Poisson–gamma model: non-negative whole numbers
    "negative claims": ("response", -1, errors.NegativeValueError, "claim counts must be non-negative"),
    "fractional claims": ("response", 1.5, errors.NotIntegerError, "claim counts must be whole numbers"),
}


def cases():
    for model, (weight, response, arms) in ARMS.items():
        defects = dict(DEFECTS, **(COUNT_DEFECTS if model == "poisson_gamma" else {}))
        for defect, (role, value, exc, message) in defects.items():
            if role == "weight" and weight is None:
                continue
            column = {"weight": weight, "response": response, "label": "risk"}[role]
            for arm in arms:
                yield pytest.param(model, arm, column, value, exc, message, id=f"{model}-{defect}-{arm}")


def spoil(data: pd.DataFrame, column: str, value) -> pd.DataFrame:
    data = data.copy()
    if isinstance(value, float):
        data[column] = data[column].astype(float)
    data.loc[data.index[BAD], column] = value
    return data


def raised(call, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(errors.DataError) as info:
            call(data)
    return info.value


@pytest.mark.parametrize("model, arm, column, value, exc, message", list(cases()))
def test_same_error_in_every_arm(model, arm, column, value, exc, message):
    data = spoil(rows(), column, value)
    before = data.copy()
    err = raised(ARMS[model][2][arm], data)
    assert type(err) is exc
    assert str(err) == f"column {column!r}: {message} (rows r3, r7)"
    assert err.column == column and err.rows == ["r3", "r7"]
    pd.testing.assert_frame_equal(data, before)  # the caller's frame is never modified


@pytest.mark.parametrize("model, defect", [
    (model, defect) for model in ARMS for defect in ("zero weight", "None weight", "missing label")
    if ARMS[model][0] is not None or DEFECTS[defect][0] != "weight"
])
def test_same_error_from_polars(model, defect):
    """Other engines: row positions name the rows, the same in every arm (a polars null is
    the missing value)."""
    weight, response, arms = ARMS[model]
    role, value, exc, message = DEFECTS[defect]
    column = {"weight": weight, "label": "risk"}[role]
    data = pl.from_pandas(spoil(rows(), column, value).reset_index(drop=True))
    seen = {arm: raised(call, data) for arm, call in arms.items()}
    assert {(type(e), str(e)) for e in seen.values()} == {(exc, f"column {column!r}: {message} (rows 3, 7)")}


def test_zero_weight_is_a_non_positive_weight():
    """``except NonPositiveError`` keeps catching zero weights."""
    assert issubclass(errors.ZeroWeightError, errors.NonPositiveError)


def test_array_weights_to_lmm_follow_the_same_rule():
    data = rows()
    w = data["w"].to_numpy().copy()
    w[BAD] = 0.0
    err = raised(lambda d: bc.lmm("y ~ 1 + (1 | risk)", d, weights=w), data)
    assert type(err) is errors.ZeroWeightError
    assert str(err) == f"column 'weights': {ZERO} (rows r3, r7)"


def test_glmm_keeps_zero_prior_weights():
    """R's glm/glmer allow zero prior weights; bc.glmm shares the door but not that rule."""
    data = rows().assign(hit=lambda d: (d["claims"] > 1).astype(int))
    data.loc[data.index[BAD], "w"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.glmm("hit ~ 1 + (1 | risk)", data, family="binomial", weights="w")
    assert np.isfinite(fit.loglik)
    data.loc[data.index[BAD], "w"] = np.inf
    assert type(raised(lambda d: bc.glmm("hit ~ 1 + (1 | risk)", d, family="binomial", weights="w"), data)) \
        is errors.NonFiniteError
