"""Issue 11: the Poisson–gamma arms fit one model — one rating-factor coding and base-level rule
(``bayescred.rating``), and the variance components under one set of names and units.

Asserted from the fitted objects (the EB fit's ``fixef``/``coding``/``components``, the
factory's ``coef`` coords, ModelInfo ``coding`` and deterministics, the classical
``structure``), on the Swedish bus data (REFERENCE-VALUES §11.1 cleaning; base zone 4 / age 4
is both the published choice and the largest-exposure rule there) and on a simulated
portfolio with a numeric 3-level factor whose largest-exposure level is not the first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest

import bayescred as bc
from bayescred import errors, rating
from bayescred.lmm.poisson_gamma import poisson_gamma_eb
from bayescred.models import poisson_gamma
from bayescred.models._base import info_of

BUS = dict(group="co.id", claims="clm.cnt", exposure="dur")
SIM = dict(group="risk", claims="n", exposure="expo")


@pytest.fixture(scope="module")
def bus(shared_data) -> pd.DataFrame:
    raw = pd.read_csv(shared_data / "bus_insurance.csv")
    return raw[~(raw["tot.cost"] < 0) & (raw["co.id"] != 145)].reset_index(drop=True)


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    """40 risks x 6 rows; ``cls`` numeric 1/2/3 with level 2 carrying most exposure, relativities
    exp(0.3), 1, exp(-0.4); Var u = 0.5; ``x`` a numeric covariate with slope 0.2."""
    rng = np.random.default_rng(11)
    J, K = 40, 6
    n = J * K
    cls = rng.choice([1, 2, 3], n, p=[0.25, 0.5, 0.25])
    df = pd.DataFrame({"risk": np.repeat(np.arange(J), K), "cls": cls, "x": rng.normal(size=n),
                       "expo": rng.uniform(1, 4, n)})
    u = rng.gamma(2.0, 0.5, J)
    eta = -1.0 + pd.Series(cls).map({1: 0.3, 2: 0.0, 3: -0.4}).to_numpy() + 0.2 * df["x"] + np.log(df["expo"])
    df["n"] = rng.poisson(np.exp(eta) * u[df["risk"]])
    return df


def constants(model, names) -> dict:
    """Deterministics of a factory model whose parameters are all fixed (priors given as values)."""
    names = [n for n in names if n in model.named_vars]
    return dict(zip(names, pytensor.function([], [model[n] for n in names])()))


def at_estimates(data, eb, **kwargs):
    """The factory on the same data and arguments, every parameter fixed at the EB estimates."""
    priors = {"log_collective": float(eb.fixef.iloc[0]), "lam": eb.lam}
    if len(eb.fixef) > 1:
        priors["fixef"] = eb.fixef.iloc[1:].to_numpy()
    return poisson_gamma(data, **kwargs, priors=priors)


def assert_same_coding(eb, model):
    assert list(eb.fixef.index) == ["(Intercept)", *model.coords["coef"]]
    assert eb.coding == info_of(model).coding


# --------------------------------------------------------------------------- coding


def test_bus_default_base_is_largest_exposure_in_both_arms(bus):
    eb = poisson_gamma_eb(bus, **BUS, fixed=["zone", "bus.age"])
    model = poisson_gamma(bus, **BUS, fixed=["zone", "bus.age"])
    assert_same_coding(eb, model)
    assert {f: c["base"] for f, c in eb.coding["factors"].items()} == {"zone": 4, "bus.age": 4}
    assert bus.groupby("zone")["dur"].sum().idxmax() == 4 and bus.groupby("bus.age")["dur"].sum().idxmax() == 4
    assert list(model.coords["coef"]) == ["zone1", "zone2", "zone3", "zone5", "zone6", "zone7",
                                          "bus.age0", "bus.age1", "bus.age2", "bus.age3"]
    # the published fit (REFERENCE-VALUES §11.6, base zone 4 / age 4 given explicitly) is the same fit
    published = poisson_gamma_eb(bus, **BUS, fixed="zone + bus.age", base={"zone": 4, "bus.age": 4})
    assert published.coding == eb.coding
    assert eb.lam == pytest.approx(0.420456, rel=1e-3) and eb.loglik == pytest.approx(-1569.98455, rel=1e-6)
    assert eb.fixef["zone7"] == pytest.approx(-0.50675, rel=1e-4)
    # the factory's likelihood at the EB estimates is the EB log-likelihood: the same model
    ll = constants(at_estimates(bus, eb, **BUS, fixed=["zone", "bus.age"]), ["loglik"])["loglik"]
    assert float(np.sum(ll)) == pytest.approx(eb.loglik, rel=1e-10)


def test_bus_given_base_in_both_arms(bus):
    base = {"zone": 1, "bus.age": 0}
    eb = poisson_gamma_eb(bus, **BUS, fixed=["zone", "bus.age"], base=base)
    model = poisson_gamma(bus, **BUS, fixed=["zone", "bus.age"], base=base)
    assert_same_coding(eb, model)
    assert list(model.coords["coef"])[:2] == ["zone2", "zone3"] and "bus.age0" not in model.coords["coef"]
    ll = constants(at_estimates(bus, eb, **BUS, fixed=["zone", "bus.age"], base=base), ["loglik"])["loglik"]
    assert float(np.sum(ll)) == pytest.approx(eb.loglik, rel=1e-10)


def test_numeric_factor_gets_dummies_in_both_arms(sim):
    assert sim.groupby("cls")["expo"].sum().idxmax() == 2  # so the rule is not R's first level
    eb = poisson_gamma_eb(sim, **SIM, fixed=["cls"])
    model = poisson_gamma(sim, **SIM, fixed=["cls"])
    assert_same_coding(eb, model)
    assert list(eb.fixef.index) == ["(Intercept)", "cls1", "cls3"]  # two dummies, not one slope
    assert eb.coding["factors"]["cls"] == {"base": 2, "levels": [2, 1, 3], "columns": ["cls1", "cls3"]}
    assert eb.fixef["cls1"] > 0 > eb.fixef["cls3"]  # truth: +0.3 and -0.4 against level 2
    ll = constants(at_estimates(sim, eb, **SIM, fixed=["cls"]), ["loglik"])["loglik"]
    assert float(np.sum(ll)) == pytest.approx(eb.loglik, rel=1e-10)
    # a single name, a formula of names and C() all mean the same factor
    for spec in ("cls", "C(cls)", "~ cls"):
        assert poisson_gamma_eb(sim, **SIM, fixed=spec).coding == eb.coding
        assert info_of(poisson_gamma(sim, **SIM, fixed=spec)).coding == eb.coding


def test_given_base_and_covariates_in_both_arms(sim):
    eb = poisson_gamma_eb(sim, **SIM, fixed="cls", base={"cls": 3}, covariates="x")
    model = poisson_gamma(sim, **SIM, fixed="cls", base={"cls": "3"}, covariates=["x"])  # a level's text matches
    assert_same_coding(eb, model)
    assert list(model.coords["coef"]) == ["cls1", "cls2", "x"]
    assert eb.coding == {"factors": {"cls": {"base": 3, "levels": [3, 1, 2], "columns": ["cls1", "cls2"]}},
                         "covariates": ["x"]}
    # the factory centres x at its exposure-weighted mean: same slopes, intercept moved by slope * mean
    xbar = np.average(sim["x"], weights=sim["expo"])
    priors = {"log_collective": float(eb.fixef.iloc[0] + eb.fixef["x"] * xbar), "fixef": eb.fixef.iloc[1:].to_numpy(),
              "lam": eb.lam}
    ll = constants(poisson_gamma(sim, **SIM, fixed="cls", base={"cls": 3}, covariates=["x"], priors=priors),
                   ["loglik"])["loglik"]
    assert float(np.sum(ll)) == pytest.approx(eb.loglik, rel=1e-10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(fixed="log(x)"), errors.FormulaError, "covariates="),
        (dict(fixed="cls * x"), errors.FormulaError, "main effects"),
        (dict(covariates="C(cls)"), errors.FormulaError, "fixed="),
        (dict(fixed="risk"), errors.FormulaError, "group="),
        (dict(fixed="cls", base={"x": 1}), errors.FormulaError, "not rating factors"),
        (dict(fixed="cls", base={"cls": 7}), errors.DataError, "base level"),
        (dict(fixed="cls", covariates="cls"), errors.FormulaError, "both"),
        (dict(covariates="kind"), errors.NotNumericError, "'kind': must be numeric"),
    ],
)
def test_both_arms_refuse_the_same_specifications(sim, kwargs, error, match):
    data = sim.assign(kind=np.where(sim["x"] > 0, "a", "b"))
    with pytest.raises(error, match=match):
        poisson_gamma_eb(data, **SIM, **kwargs)
    with pytest.raises(error, match=match):
        poisson_gamma(data, **SIM, **kwargs)


def test_one_rank_check_names_the_columns(sim):
    data = sim.assign(twin=sim["cls"] * 2.0)  # the same partition under another name
    for fit in (poisson_gamma_eb, poisson_gamma):
        with pytest.raises(errors.RankDeficientError, match="cls1.*twin"):
            fit(data, **SIM, fixed=["cls", "twin"])


# --------------------------------------------------------------------------- components and units


def test_components_are_named_with_units_in_every_arm():
    data = bc.datasets.load("sim_poisson_gamma")
    args = dict(group="company", claims="claims", exposure="exposure")
    eb = poisson_gamma_eb(data, **args)
    comp = eb.components
    m, lam = float(np.exp(eb.fixef.iloc[0])), eb.lam
    assert comp.loc["collective", "estimate"] == pytest.approx(m, rel=1e-14) and eb.collective == comp.loc["collective", "estimate"]
    assert comp.loc["lam", "estimate"] == lam
    assert comp.loc["between", "estimate"] == pytest.approx(lam * m**2, rel=1e-14)
    assert dict(comp["unit"]) == rating.UNITS
    # classical at the same lam and m (gamma prior alpha = 1/lam, rate alpha/m): the same three numbers
    classical = bc.credibility.poisson_gamma(data, **args, alpha=1 / lam, beta=1 / (lam * m))
    assert classical.structure["collective"] == pytest.approx(m, rel=1e-12)
    assert classical.structure["between"] == pytest.approx(lam * m**2, rel=1e-12)
    assert classical.structure["lam"] == pytest.approx(lam, rel=1e-12)
    # the factory's deterministics at the same values
    values = constants(at_estimates(data, eb, **args), ["collective", "lam", "between"])
    assert values["collective"] == pytest.approx(m, rel=1e-14)
    assert values["between"] == pytest.approx(lam * m**2, rel=1e-12)
    # the estimated classical structure: lam = between / collective^2, between in frequency^2
    est = bc.credibility.poisson_gamma(data, **args).structure
    assert est["lam"] == pytest.approx(est["between"] / est["collective"] ** 2, rel=1e-14)
    assert 0.001 < est["between"] < 0.05 and 0.2 < est["lam"] < 1.0  # frequency ~0.12, Var u = 0.4 (the truth)


def test_with_rating_factors_only_lam_is_reported(sim):
    eb = poisson_gamma_eb(sim, **SIM, fixed="cls")
    assert list(eb.components.index) == ["collective", "lam"]
    assert eb.components.attrs["note"] == rating.WHY_NO_BETWEEN
    assert "between: not reported" in eb.summary() and eb.to_dict()["between"] is None
    model = poisson_gamma(sim, **SIM, fixed="cls")
    assert "between" not in model.named_vars and {"lam", "alpha", "k", "collective"} <= set(model.named_vars)
    covariate_only = poisson_gamma_eb(sim, **SIM, covariates="x")
    assert "between" not in covariate_only.components.index
    assert "between" not in poisson_gamma(sim, **SIM, covariates="x").named_vars
