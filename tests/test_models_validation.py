"""Bad priors and unusable data are refused with a clear error by the factory, before any
model graph is built (let alone compiled);
good input gives models with the pinned names, dims and coords. Nothing is sampled here."""

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import bayescred as bc
from bayescred import errors
from bayescred.models import buhlmann, buhlmann_straub, crossed, hachemeister, hierarchical, poisson_gamma


@pytest.fixture(scope="module")
def t31():
    return bc.datasets.load("buhlmann_table31")


@pytest.fixture(scope="module")
def hach():
    return bc.datasets.load("hachemeister")


@pytest.fixture(scope="module")
def credit():
    return bc.datasets.load("credit_insurance")


@pytest.fixture(scope="module")
def pg():
    return bc.datasets.load("sim_poisson_gamma")


# ---------------------------------------------------------------- priors

def test_unknown_prior_name(t31):
    with pytest.raises(errors.PriorError, match="unknown prior name.*'tau'.*takes priors on"):
        buhlmann(t31, group="class", response="loss", priors={"tau": pm.HalfNormal.dist(1.0)})


def test_prior_with_wrong_shape(hach):
    with pytest.raises(errors.PriorError, match="shape \\(3,\\).*needs \\(2,\\)"):
        hachemeister(hach, group="state", time="period", response="severity", weight="claims",
                     priors={"between_sd": pm.HalfNormal.dist(sigma=np.ones(3))})


def test_fixed_value_with_wrong_shape(credit):
    with pytest.raises(errors.PriorError, match="does not fit the parameter's shape"):
        crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                within_ss=1e7, within_df=392, priors={"between_sd": [1.0, 2.0]})


def test_scale_prior_with_negative_support(t31):
    with pytest.raises(errors.PriorError, match="puts mass on negative values"):
        buhlmann(t31, group="class", response="loss", priors={"within_sd": pm.Normal.dist(0, 10)})


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # PyTensor folding Gamma's 1/beta at beta = 0
@pytest.mark.parametrize("name, prior", [("collective", lambda: pm.Normal.dist(0, -10)),
                                         ("within_sd", lambda: pm.HalfNormal.dist(sigma=-2.0)),
                                         ("between_sd", lambda: pm.Gamma.dist(alpha=2.0, beta=0.0))])
def test_prior_with_invalid_parameters(t31, name, prior):
    """The factories' log densities do not re-check their priors' parameters (check_bounds off):
    the door does, once."""
    with pytest.raises(errors.PriorError, match=f"prior '{name}': .*(invalid parameters|no finite density)"):
        buhlmann(t31, group="class", response="loss", priors={name: prior()})


def test_factory_models_check_their_priors_once_not_in_the_log_density(t31):
    assert buhlmann(t31, group="class", response="loss").check_bounds is False


def test_negative_fixed_scale(t31):
    with pytest.raises(errors.PriorError, match="non-negative"):
        buhlmann(t31, group="class", response="loss", priors={"between_sd": -1.0})


def test_correlation_out_of_range_and_not_a_distribution(hach):
    with pytest.raises(errors.PriorError, match="lie in"):
        hachemeister(hach, group="state", time="period", response="severity", weight="claims", structure="correlated",
                     priors={"between_corr": 1.5})
    with pytest.raises(errors.PriorError, match="can only be fixed"):
        hachemeister(hach, group="state", time="period", response="severity", weight="claims", structure="correlated",
                     priors={"between_corr": pm.Uniform.dist(-1, 1)})


def test_prior_of_the_wrong_kind(t31):
    with pytest.raises(errors.PriorError, match="expected a PyMC distribution"):
        buhlmann(t31, group="class", response="loss", priors={"collective": {"mu": 0}})
    with pytest.raises(errors.PriorError, match="only string accepted is 'flat'"):
        buhlmann(t31, group="class", response="loss", priors={"collective": "normal"})
    with pytest.raises(errors.PriorError, match="must be a dict"):
        buhlmann(t31, group="class", response="loss", priors=[1, 2])


def test_bad_likelihood(t31):
    with pytest.raises(errors.PriorError, match="'marginal' or 'latent'"):
        buhlmann(t31, group="class", response="loss", likelihood="laplace")


# ---------------------------------------------------------------- data

def test_missing_and_non_numeric_columns(t31):
    with pytest.raises(errors.MissingColumnError, match="'losses'"):
        buhlmann(t31, group="class", response="losses")
    bad = t31.assign(loss=t31["loss"].astype(str))
    with pytest.raises(errors.NotNumericError, match="'loss'"):
        buhlmann(bad, group="class", response="loss")


def test_missing_value_names_rows(t31):
    bad = t31.copy()
    bad.loc[4, "loss"] = np.nan
    with pytest.raises(errors.MissingValueError, match="rows 4"):
        buhlmann(bad, group="class", response="loss")


def test_too_few_risks_and_periods(t31):
    with pytest.raises(errors.TooFewRisksError):
        buhlmann(t31[t31["class"] == 1], group="class", response="loss")
    one_each = t31.drop_duplicates("class")
    with pytest.raises(errors.TooFewPeriodsError, match="within variance"):
        buhlmann(one_each, group="class", response="loss")


def test_non_positive_weight(hach):
    bad = hach.assign(claims=hach["claims"].where(hach.index != 7, 0))
    with pytest.raises(errors.NonPositiveError, match="rows 7"):
        buhlmann_straub(bad, group="state", response="severity", weight="claims")


def test_hachemeister_constant_time(hach):
    with pytest.raises(errors.ConstantCovariateError, match="'period'"):
        hachemeister(hach.assign(period=3), group="state", time="period", response="severity", weight="claims")
    with pytest.raises(ValueError, match="centering"):
        hachemeister(hach, group="state", time="period", response="severity", weight="claims", centering="middle")


def test_crossed_needs_both_summaries_and_two_levels(credit):
    with pytest.raises(errors.DataError, match="within_ss= and within_df="):
        crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count", within_ss=1e7)
    with pytest.raises(errors.TooFewRisksError, match="'experience'"):
        crossed(credit[credit["experience"] == 1], factors=["status", "experience"], response="mean_payment",
                weight="count", within_ss=1e7, within_df=100)
    dup = pd.concat([credit, credit.iloc[:1]], ignore_index=True)
    with pytest.raises(errors.DataError, match="one row per cell"):
        crossed(dup, factors=["status", "experience"], response="mean_payment", weight="count", within_ss=1e7, within_df=392)


def test_poisson_gamma_counts(pg):
    with pytest.raises(errors.NegativeValueError):
        poisson_gamma(pg.assign(claims=-pg["claims"]), group="company", claims="claims", exposure="exposure")
    with pytest.raises(errors.NotIntegerError):
        poisson_gamma(pg.assign(claims=pg["claims"] + 0.5), group="company", claims="claims", exposure="exposure")
    with pytest.raises(errors.DataError, match="no claims"):
        poisson_gamma(pg.assign(claims=0), group="company", claims="claims", exposure="exposure")


def test_hierarchical_levels(t31):
    with pytest.raises(errors.DataError, match="distinct"):
        hierarchical(t31, levels=["class", "class"], response="loss")


# ---------------------------------------------------------------- structure (pinned names, dims, coords)

def test_buhlmann_straub_names_and_dims(hach):
    for likelihood in ("marginal", "latent"):
        model = buhlmann_straub(hach, group="state", response="severity", weight="claims", likelihood=likelihood)
        for name in ("collective", "between", "within", "k", "Z", "premium"):
            assert name in model.named_vars
        assert model.named_vars_to_dims["Z"] == ("state",)
        assert model.named_vars_to_dims["premium"] == ("state",)
        assert list(model.coords["state"]) == [1, 2, 3, 4, 5]


def test_hierarchical_names_and_dims():
    data = pd.DataFrame({"sector": list("aaabbb"), "risk": [1, 1, 2, 1, 2, 2], "y": [1.0, 2, 3, 4, 5, 7]})
    model = hierarchical(data, levels=["sector", "risk"], response="y")
    assert list(model.coords["risk"]) == ["a:1", "a:2", "b:1", "b:2"]  # inner labels repeat: joined
    assert model.named_vars_to_dims["between"] == ("level",)
    assert model.named_vars_to_dims["premium_sector"] == ("sector",)
    assert model.named_vars_to_dims["premium"] == ("risk",)


def test_hachemeister_names_and_dims(hach):
    model = hachemeister(hach, group="state", time="period", response="severity", weight="claims")
    assert model.named_vars_to_dims["A"] == ("state", "coef", "coef_")
    assert list(model.coords["coef"]) == ["intercept", "period"]
    assert model.named_vars_to_dims["premium"] == ("state",)
    assert {"collective", "between", "within", "k", "premium"} <= set(model.named_vars)


def test_poisson_gamma_names_and_dims(pg):
    model = poisson_gamma(pg, group="company", claims="claims", exposure="exposure", fixed=["zone"])
    assert {"collective", "lam", "alpha", "Z", "premium", "fixef"} <= set(model.named_vars)
    assert list(model.coords["coef"]) == [f"zone{z}" for z in sorted(pg["zone"].unique()) if z != pg.groupby("zone")["exposure"].sum().idxmax()]


def test_crossed_names_and_dims(credit):
    model = crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                    within_ss=credit.attrs["within_ss"], within_df=credit.attrs["within_df"])
    assert list(model.coords["term"]) == ["status", "experience", "status:experience"]
    assert model.named_vars_to_dims["premium"] == ("cell",)
    assert list(model.coords["cell"])[:2] == ["1:1", "1:2"]


def test_caller_frame_not_mutated(hach):
    before = hach.copy()
    hachemeister(hach, group="state", time="period", response="severity", weight="claims", centering="group")
    pd.testing.assert_frame_equal(hach, before)


# ---------------------------------------------------------------- issue 10: data a sampler cannot take


@pytest.mark.parametrize("factory", [
    lambda d: buhlmann(d, "state", "severity"),
    lambda d: buhlmann_straub(d, "state", "severity", "claims"),
    lambda d: hierarchical(d.assign(region=d["state"] % 2), ["region", "state"], "severity", "claims"),
    lambda d: hachemeister(d, "state", "period", "severity", "claims"),
])
def test_all_equal_responses_are_refused_before_sampling(hach, factory):
    """Issue 10: the Bayesian model ended in a nutpie Rust backtrace on all-equal responses."""
    with pytest.raises(errors.DegenerateResponseError, match="within variance"):
        factory(hach.assign(severity=1500.0))


def test_hachemeister_exact_lines_are_refused(hach):
    lines = 1000.0 + 10 * hach["state"] + (5 + hach["state"]) * hach["period"]
    with pytest.raises(errors.DegenerateResponseError, match="line in time"):
        hachemeister(hach.assign(severity=lines), "state", "period", "severity", "claims")


def test_crossed_all_equal_cells_are_refused(credit):
    with pytest.raises(errors.DegenerateResponseError, match="within-cell variance 0"):
        crossed(credit, ["status", "experience"], "mean_payment", "count", within_ss=0.0, within_df=392)


@pytest.mark.parametrize("ss, df, argument", [(-1.0, 392, "within_ss"), (10.0, 391.5, "within_df"), (10.0, 0, "within_df")])
def test_crossed_summary_overrides_are_validated(credit, ss, df, argument):
    with pytest.raises(errors.InvalidArgumentError, match=argument):
        crossed(credit, ["status", "experience"], "mean_payment", "count", within_ss=ss, within_df=df)


def test_series_instead_of_a_column_name_is_refused(hach):
    with pytest.raises(errors.InvalidArgumentError, match="weight= must name a column"):
        buhlmann_straub(hach, "state", "severity", hach["claims"])
    with pytest.raises(errors.InvalidArgumentError, match="exposure= must name a column"):
        poisson_gamma(hach.assign(n=1), "state", "n", hach["claims"])
