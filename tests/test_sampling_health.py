"""Sampler health at default settings (4 chains x 1,000 draws, nutpie) on every bundled
dataset and the shared real ones: no divergences, R-hat <= 1.01 and bulk ESS >= 400 for
every hyperparameter; and the marginal and latent versions of a model give the same
posterior (means and SDs within 3 Monte Carlo standard errors of their difference).
Each model compiles once (10-30 s on this machine), hence ``slow``."""

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.models import buhlmann, buhlmann_straub, crossed, hachemeister, poisson_gamma

pytestmark = pytest.mark.slow

HYPER = ["collective", "between", "within", "between_corr", "lam", "fixef", "log_collective"]


def check_health(tree, label):
    post = tree["posterior"].to_dataset()
    names = [n for n in HYPER if n in post]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0, f"{label}: divergences"
    rhat = az.rhat(post, var_names=names)
    ess = az.ess(post, var_names=names, method="bulk")
    for n in names:
        assert float(rhat[n].max()) <= 1.01, f"{label}: R-hat of {n} = {float(rhat[n].max()):.4f}"
        assert float(ess[n].min()) >= 400, f"{label}: bulk ESS of {n} = {float(ess[n].min()):.0f}"


def bundled_models():
    t31 = bc.datasets.load("buhlmann_table31")
    hach = bc.datasets.load("hachemeister")
    credit = bc.datasets.load("credit_insurance")
    yield "buhlmann_table31", lambda: buhlmann(t31, group="class", response="loss")
    yield "venter", lambda: buhlmann(bc.datasets.load("venter"), group="state", response="loss")
    yield "hachemeister BS", lambda: buhlmann_straub(hach, group="state", response="severity", weight="claims")
    yield "hachemeister regression", lambda: hachemeister(hach, group="state", time="period", response="severity", weight="claims")
    yield "halliwell_trend", lambda: hachemeister(bc.datasets.load("halliwell_trend"), group="state", time="year", response="loss_ratio")
    yield "credit_insurance", lambda: crossed(credit, factors=["status", "experience"], response="mean_payment", weight="count",
                                              within_ss=credit.attrs["within_ss"], within_df=credit.attrs["within_df"])
    yield "sim_poisson_gamma", lambda: poisson_gamma(bc.datasets.load("sim_poisson_gamma"), group="company", claims="claims",
                                                     exposure="exposure", fixed=["zone"])


@pytest.mark.parametrize("label,factory", list(bundled_models()), ids=[m[0] for m in bundled_models()])
def test_health_bundled(label, factory):
    check_health(bc.sample(factory(), random_seed=2026), label)


def shared_models(root):
    bs = pd.read_csv(root / "bs_simulated.csv")
    yield "bs_simulated", lambda: buhlmann_straub(bs, group="risk", response="X.jt", weight="W.jt")
    wc = pd.read_csv(root / "workers_comp_losses.csv")
    wc = wc[(wc["year"] <= 6) & (wc["payroll"] > 0) & (wc["loss"] > 0)]  # REFERENCE-VALUES §8.1
    wc = wc.assign(log_rate=np.log(wc["loss"] / wc["payroll"]))
    yield "workers_comp", lambda: buhlmann(wc, group="riskclass", response="log_rate")
    bus = pd.read_csv(root / "bus_insurance.csv")
    bus = bus[~(bus["tot.cost"] < 0) & (bus["co.id"] != 145)]  # REFERENCE-VALUES §11.1
    yield "bus", lambda: poisson_gamma(bus, group="co.id", claims="clm.cnt", exposure="dur", fixed=["zone", "bus.age"])
    fabric = pd.read_csv(root / "fabric.csv").assign(log_x=lambda d: np.log(d["x"]), one=1.0)
    yield "fabric", lambda: poisson_gamma(fabric, group="rf", claims="y", exposure="one", covariates=["log_x"])
    train = pd.read_csv(root / "train_collisions.csv")
    yield "train", lambda: poisson_gamma(train, group="id", claims="y", exposure="t", covariates=["x"])
    mass = pd.read_csv(root / "usmassBI2.csv")
    yield "massbi", lambda: buhlmann(mass[mass["YEAR"] <= 1997], group="TOWNCODE", response="AC")


SHARED = ["bs_simulated", "workers_comp", "bus", "fabric", "train", "massbi"]


@pytest.mark.parametrize("label", SHARED)
def test_health_shared(label, shared_data):
    factory = dict(shared_models(shared_data))[label]
    check_health(bc.sample(factory(), random_seed=2026), label)


def agree(a, b, names, label, sel=None):
    """Means and SDs of ``names`` (restricted to ``sel`` where they have that dim) agree
    within 3 MCSE of the difference."""
    pa, pb = a["posterior"].to_dataset(), b["posterior"].to_dataset()
    for n in names:
        xa, xb = pa[[n]], pb[[n]]
        if sel and set(sel) <= set(xa[n].dims):
            xa, xb = xa.isel(sel), xb.isel(sel)
        for stat, method in (("mean", "mean"), ("std", "sd")):
            va, vb = getattr(xa[n], stat)(("chain", "draw")).values, getattr(xb[n], stat)(("chain", "draw")).values
            se = np.sqrt(az.mcse(xa, method=method)[n].values ** 2 + az.mcse(xb, method=method)[n].values ** 2)
            assert np.all(np.abs(va - vb) <= 3 * se), f"{label}: {stat} of {n}: {va} vs {vb} (3 MCSE {3 * se})"


@pytest.mark.parametrize("label", ["hachemeister BS", "hachemeister regression", "sim_poisson_gamma", "credit_insurance"])
def test_marginal_equals_latent(label):
    hach = bc.datasets.load("hachemeister")
    credit = bc.datasets.load("credit_insurance")
    pg = bc.datasets.load("sim_poisson_gamma")
    build = {
        "hachemeister BS": (lambda lik: buhlmann_straub(hach, group="state", response="severity", weight="claims", likelihood=lik),
                            ["collective", "between", "within", "premium"]),
        "hachemeister regression": (lambda lik: hachemeister(hach, group="state", time="period", response="severity",
                                                             weight="claims", likelihood=lik),
                                    ["collective", "between_sd", "within", "premium"]),
        "sim_poisson_gamma": (lambda lik: poisson_gamma(pg, group="company", claims="claims", exposure="exposure", likelihood=lik),
                              ["collective", "lam"]),
        "credit_insurance": (lambda lik: crossed(credit, factors=["status", "experience"], response="mean_payment",
                                                 weight="count", within_ss=credit.attrs["within_ss"],
                                                 within_df=credit.attrs["within_df"], likelihood=lik),
                             ["collective", "within", "premium"]),
    }
    factory, names = build[label]
    marginal = bc.sample(factory("marginal"), random_seed=7, draws=2000)
    # the latent model is the reference here, so it is sampled without divergences: its funnel
    # needs target_accept 0.99 (at its default 0.95 seed 8 gave a divergence on Hachemeister BS
    # and the SD of state 4's premium 3.1 MCSE away from the marginal's; 2.2 at 0.99, 8000 draws)
    latent = bc.sample(factory("latent"), random_seed=8, draws=2000, target_accept=0.99)
    agree(marginal, latent, names, label)
    if label == "sim_poisson_gamma":  # several company premiums (the frequency of each company)
        agree(marginal, latent, ["premium"], label, sel={"company": [0, 1, 2, 50, 100]})
