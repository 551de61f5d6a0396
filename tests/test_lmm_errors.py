"""bc.lmm refuses bad input before computing, with one error class per kind (issue 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import errors


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 4)
    return pd.DataFrame({"g": g, "x": rng.normal(size=24), "y": rng.normal(size=24) + g, "w": 1.0 + g % 3,
                         "one": "A", "id": np.arange(24)})


def test_unknown_column_is_named(data):
    with pytest.raises(errors.MissingColumnError, match="'nope'"):
        bc.lmm("y ~ x + (1|nope)", data)
    with pytest.raises(errors.MissingColumnError, match="'z'"):
        bc.lmm("y ~ log(z) + (1|g)", data)


def test_single_level_grouping_factor(data):
    with pytest.raises(errors.TooFewRisksError, match="'one'"):
        bc.lmm("y ~ 1 + (1|one)", data)


def test_as_many_levels_as_observations(data):
    with pytest.raises(errors.TooManyLevelsError, match="'id'"):
        bc.lmm("y ~ 1 + (1|id)", data)
    with pytest.raises(errors.TooManyLevelsError):  # 6 levels x 4 effects = 24 = n
        data = data.assign(x2=data.x**2, x3=data.x**3)
        bc.lmm("y ~ 1 + (1 + x + x2 + x3|g)", data)


def test_non_positive_weights_name_rows(data):
    bad = data.copy()
    bad.loc[[3, 7], "w"] = [0.0, -1.0]
    with pytest.raises(errors.NonPositiveError) as exc:
        bc.lmm("y ~ 1 + (1|g)", bad, weights="w")
    assert exc.value.column == "w" and exc.value.rows == [3, 7]


def test_rank_deficient_fixed_effects_named(data):
    d = data.assign(x2=2 * data.x, c=3.0)
    with pytest.raises(errors.RankDeficientError, match="x2"):
        bc.lmm("y ~ x + x2 + (1|g)", d)
    with pytest.raises(errors.RankDeficientError, match=r"\bc\b"):
        bc.lmm("y ~ x + c + (1|g)", d)


def test_missing_values_name_rows(data):
    d = data.copy()
    d.loc[5, "x"] = np.nan
    with pytest.raises(errors.MissingValueError) as exc:
        bc.lmm("y ~ x + (1|g)", d)
    assert exc.value.column == "x" and exc.value.rows == [5]
    d = data.astype({"g": float})
    d.loc[2, "g"] = np.nan
    with pytest.raises(errors.MissingValueError, match="'g'"):
        bc.lmm("y ~ 1 + (1|g)", d)


def test_other_bad_input(data):
    with pytest.raises(errors.FormulaError):
        bc.lmm("y ~ x", data)  # no random term
    with pytest.raises(errors.FormulaError):
        bc.lmm("y + x", data)
    with pytest.raises(errors.NotNumericError):
        bc.lmm("one ~ 1 + (1|g)", data)
    with pytest.raises(errors.SummaryError):
        bc.lmm("y ~ 1 + (1|g)", data, weights="w", within_ss=10.0)
    with pytest.raises(ValueError):
        bc.lmm("y ~ 1 + (1|g)", data, method="MLE")


def test_caller_frame_not_mutated(data):
    before = data.copy()
    fit = bc.lmm("y ~ x + (1|g)", data, weights="w")
    fit.ranef()
    fit.predict(data)
    pd.testing.assert_frame_equal(data, before)


# ---------------------------------------------------------------- issue 10


def test_weights_series_aligns_on_the_index(data):
    """Issue 10: a shuffled Series changed fixef (1688.76 -> 1679.85 there); it is aligned."""
    by_name = bc.lmm("y ~ x + (1 | g)", data, weights="w")
    shuffled = bc.lmm("y ~ x + (1 | g)", data, weights=data["w"].sample(frac=1.0, random_state=3))
    np.testing.assert_allclose(shuffled.fixef, by_name.fixef, rtol=1e-12)
    assert shuffled.criterion == pytest.approx(by_name.criterion, rel=1e-12)


@pytest.mark.parametrize("argument", ["weights", "offset"])
def test_series_with_other_labels_is_refused(data, argument):
    other = pd.Series(np.ones(len(data)), index=np.arange(len(data)) + 100)
    with pytest.raises(errors.InvalidArgumentError, match=f"{argument}=") as info:
        bc.lmm("y ~ x + (1 | g)", data, **{argument: other})
    assert info.value.column == argument


def test_array_of_wrong_length_is_refused(data):
    with pytest.raises(errors.InvalidArgumentError, match="one value per row"):
        bc.lmm("y ~ x + (1 | g)", data, weights=np.ones(3))


@pytest.mark.parametrize("ss, df, argument", [(-1.0, 10, "within_ss"), (float("nan"), 10, "within_ss"),
                                              (5.0, 2.5, "within_df"), (5.0, -1, "within_df")])
def test_summary_overrides_are_validated(data, ss, df, argument):
    with pytest.raises(errors.InvalidArgumentError, match=argument):
        bc.lmm("y ~ 1 + (1 | g)", data, weights="w", within_ss=ss, within_df=df)


@pytest.mark.parametrize("response", ["all_equal", "constant_within_groups"])
def test_exactly_fitted_response_is_refused_not_zero_division(data, response):
    """Issue 10: all-equal responses made ranef()/predict()/to_dict() raise ZeroDivisionError
    (and the CLI crash). The likelihood has no maximum there: a specific error, up front."""
    y = 3.0 if response == "all_equal" else 10.0 * data["g"]
    with pytest.raises(errors.DegenerateResponseError, match="residual variance 0"):
        bc.lmm("y ~ 1 + (1 | g)", data.assign(y=y))


def test_poisson_gamma_eb_overrides_are_validated():
    from bayescred.lmm import poisson_gamma_eb

    d = pd.DataFrame({"risk": np.repeat([0, 1, 2], 3), "n": [0, 1, 2, 1, 3, 0, 2, 2, 1], "e": 1.0})
    with pytest.raises(errors.InvalidArgumentError, match="lam"):
        poisson_gamma_eb(d, group="risk", claims="n", exposure="e", fixef=[0.0], lam=float("nan"))
    with pytest.raises(errors.InvalidArgumentError, match="fixef"):
        poisson_gamma_eb(d, group="risk", claims="n", exposure="e", fixef=[float("inf")], lam=0.5)


def test_exact_fit_is_told_from_a_large_but_finite_variance_ratio(data):
    """Where the optimiser stops on an exactly fitted response depends on its path; beyond
    θ = 1e4 the unpenalised least-squares fit of X and Z decides, not that stopping point."""
    exact = data.assign(y=10.0 * data["g"] + 2.0 * data["x"])
    with pytest.raises(errors.DegenerateResponseError, match="residual variance 0"):
        bc.lmm("y ~ x + (1 | g)", exact)
    noisy = exact.assign(y=exact["y"] + 1e-3 * np.random.default_rng(1).normal(size=len(exact)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bc.lmm("y ~ x + (1 | g)", noisy)
    assert fit.theta[0] > 1e3 and not fit._design.fits_exactly()
