"""Live parity with lme4's glmer: lme4's own cbpp and grouseticks, and 24 random designs, all
fitted by R in ONE Rscript call.

Designs: Poisson with an exposure offset, binomial as cbind() and as proportions with trial
weights, Gamma with a log link; random intercepts, correlated and uncorrelated (||) slopes,
crossed and nested factors. glmer is run twice: as users run it (default control) and with
PIRLS converged tightly (tolPwrss = 1e-13). Why both: glmer's default PIRLS tolerance
(1e-7 relative on the penalised deviance) leaves its Laplace deviance up to ~3e-6 relative
above the value at the exact conditional mode (cbpp: logLik -92.02657 at its own optimum,
where the exact-mode Laplace value is -92.02629); with tolPwrss = 1e-13 lme4's deviance
function equals ours to 1e-10 at any (θ, β) (at 1e-11 it can still be 5e-6 off).

Acceptance (issue 13): our Laplace log-likelihood is never below either glmer fit's by more
than 1e-6 relative; where the tight glmer fit converged cleanly and reaches our optimum
(1e-6 relative) and is not below ours, fixed effects agree to 1e-4 of max(|β|, SE), variance components to 1e-4
relative (covariances to 1e-4 of the product of the SDs, i.e. the correlation to 1e-4), and
SEs and lme4's condVar SDs to 1e-3 relative. The SEs are compared with the β block of 2H⁻¹
for H = lme4:::deriv12 of glmer's own deviance function at its optimum — what vcov.merMod
uses. Not for Gamma: lme4's Gamma deviance carries ~1e-6 of PIRLS noise even at
tolPwrss = 1e-13 (design 23: 725.0028690 vs our 725.0028708 at the same point), which the
4δ² = 4e-8 of deriv12's cross differences turns into ±60 on off-diagonal Hessian entries
(deriv12 at glmer's optimum and 1e-10 away give H[1,2] = -2.37 and 56.0; ours 56.0), so
its Gamma SEs are not reproducible to 1e-3 (0.180 vs our 0.156 there); for Gamma the test
checks instead that our SEs do not move with the difference step (test_gamma_se_stable); where our log-likelihood is higher (glmer's Nelder–Mead stops within its
FtolAbs = 1e-5, so its estimates can differ by more than 1e-4 of the SE on a flat surface)
the test says so and accepts it. Every design also checks that our criterion evaluated at
glmer's (θ, β) equals glmer's to 1e-8: the same objective, so "higher" means better. nAGQ = 10 on
cbpp and on the scalar designs: the same criteria on lme4's AGQ deviance.
"""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc

pytestmark = pytest.mark.r

N_DESIGNS = 24
SCALAR = {0, 3, 4, 6}  # kinds with one scalar random-effects term: also nAGQ = 10


def _design(i: int, rng: np.random.Generator) -> dict:
    kind = i % 12
    n_a = int(rng.integers(12, 25))
    n_b = int(rng.integers(4, 8))
    rows = int(rng.integers(150, 260))
    a = rng.integers(0, n_a, rows)
    b = rng.integers(0, n_b, rows)
    x = rng.normal(size=rows)
    f = rng.choice(["lo", "mid", "hi"], size=rows)
    expo = rng.uniform(0.5, 3.0, rows)
    ua, sa = rng.normal(0, 0.6, n_a), rng.normal(0, 0.3, n_a)
    ub, uab = rng.normal(0, 0.4, n_b), rng.normal(0, 0.3, (n_a, n_b))
    feff = np.vectorize({"lo": 0.0, "mid": 0.3, "hi": -0.4}.get)(f)
    eta = 0.3 * x + feff + ua[a]
    spec = {"family": "poisson", "weights": False, "offset": False}
    if kind in (0, 1, 2, 8, 10):
        eta = eta + 0.2
        if kind == 0:
            spec["formula"] = "y ~ 1 + (1|a)"
        elif kind == 1:
            spec["formula"] = "y ~ x + (1 + x|a)"
            eta = eta + sa[a] * x
        elif kind == 2:
            spec["formula"] = "y ~ x + f + (1|a) + (1|b)"
            eta = eta + ub[b]
        elif kind == 8:
            spec["formula"] = "y ~ x + (1 + x||a)"
            eta = eta + sa[a] * x
        else:
            spec["formula"] = "y ~ x + (1|a/b)"
            eta = eta + uab[a, b]
        spec["offset"] = kind != 8
        mu = np.exp(eta + (np.log(expo) if spec["offset"] else 0.0))
        y = rng.poisson(mu).astype(float)
        extra = {}
    elif kind in (3, 4, 5, 9):
        spec["family"] = "binomial"
        trials = rng.integers(1, 12, rows)
        if kind == 9:
            eta = eta + sa[a] * x
        if kind == 5:
            eta = eta + ub[b]
        p = 1 / (1 + np.exp(-(eta - 0.5)))
        s = rng.binomial(trials, p)
        extra = {"s": s, "fails": trials - s, "trials": trials}
        y = s / trials
        spec["formula"] = {3: "cbind(s, fails) ~ x + (1|a)", 4: "y ~ f + (1|a)",
                           5: "y ~ x + (1|a) + (1|b)", 9: "cbind(s, fails) ~ x + (1 + x|a)"}[kind]
        spec["weights"] = kind in (4, 5)
    else:
        spec["family"] = "Gamma"
        if kind == 11:
            eta = eta + sa[a] * x
        if kind == 7:
            eta = eta + ub[b]
        shape = 4.0
        y = rng.gamma(shape, np.exp(eta + 1.0) / shape)
        spec["formula"] = {6: "y ~ x + (1|a)", 7: "y ~ f + (1|a) + (1|b)", 11: "y ~ x + (1 + x|a)"}[kind]
        extra = {}
    data = pd.DataFrame({"y": y, "x": x, "f": f, "a": [f"A{v:02d}" for v in a], "b": [f"B{v}" for v in b],
                         "logexpo": np.log(expo), **extra})
    spec["agq"] = kind in SCALAR
    return {"data": data, **spec}


R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); dir <- args[1]
specs <- fromJSON(file.path(dir, "specs.json"), simplifyVector = FALSE)
data(cbpp); data(grouseticks)
write.csv(cbpp, file.path(dir, "cbpp.csv"), row.names = FALSE)
write.csv(grouseticks, file.path(dir, "grouseticks.csv"), row.names = FALSE)
fam <- function(name) switch(name, poisson = poisson(), binomial = binomial(), Gamma = Gamma(link = "log"))
summarise <- function(m) {
  if (inherits(m, "error")) return(list(error = conditionMessage(m)))
  vc <- as.data.frame(VarCorr(m))
  re <- as.data.frame(ranef(m, condVar = TRUE))
  list(loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = unname(getME(m, "theta")),
       vc = lapply(seq_len(nrow(vc)), function(k) list(grp = vc$grp[k], var1 = ifelse(is.na(vc$var1[k]), "", vc$var1[k]),
                   var2 = ifelse(is.na(vc$var2[k]), "", vc$var2[k]), vcov = vc$vcov[k])),
       condsd = lapply(seq_len(nrow(re)), function(k) list(key = paste(re$grpvar[k], re$term[k], re$grp[k], sep = "|"),
                       sd = re$condsd[k])),
       singular = isSingular(m), messages = as.list(m@optinfo$conv$lme4$messages))
}
fitboth <- function(form, d, family, w, off, agq) {
  run <- function(ctrl, nAGQ = 1) tryCatch(suppressWarnings(suppressMessages(
    glmer(as.formula(form), data = d, family = fam(family), weights = w, offset = off, nAGQ = nAGQ, control = ctrl))),
    error = function(e) e)
  ctrl <- glmerControl(tolPwrss = 1e-13)
  tight <- run(ctrl)
  if (inherits(tight, "error")) tight <- run(ctrl <- glmerControl(tolPwrss = 1e-11))
  out <- list(default = summarise(run(glmerControl())), tight = summarise(tight))
  if (!inherits(tight, "error")) {  # SEs from lme4's deriv12 of glmer's deviance function at its optimum
    dev <- glmer(as.formula(form), data = d, family = fam(family), weights = w, offset = off, control = ctrl,
                 devFunOnly = TRUE)
    h <- lme4:::deriv12(dev, c(getME(tight, "theta"), fixef(tight)))$Hessian
    nt <- length(getME(tight, "theta"))
    out$tight$se_deriv12 <- as.list(setNames(sqrt(diag(2 * solve(h))[-seq_len(nt)]), names(fixef(tight))))
  }
  if (agq) {
    out$agq10 <- summarise(run(glmerControl(tolPwrss = 1e-13), nAGQ = 10))
    out$agq0 <- summarise(run(glmerControl(tolPwrss = 1e-13), nAGQ = 0))
  }
  out
}
res <- list()
for (i in seq_along(specs)) {
  s <- specs[[i]]
  d <- read.csv(file.path(dir, paste0("d", i - 1, ".csv")), stringsAsFactors = TRUE)
  w <- if (s$weights) d$trials else NULL
  off <- if (s$offset) d$logexpo else NULL
  res[[as.character(i - 1)]] <- fitboth(s$formula, d, s$family, w, off, s$agq)
}
res[["cbpp"]] <- fitboth("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial", NULL, NULL, TRUE)
res[["grouseticks"]] <- fitboth("TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)", grouseticks, "poisson", NULL, NULL, FALSE)
nb <- glmer.nb(TICKS ~ YEAR + (1|BROOD), grouseticks)
th <- getME(nb, "glmer.nb.theta")
nb_tight <- glmer(TICKS ~ YEAR + (1|BROOD), grouseticks, family = MASS::negative.binomial(th),
                  control = glmerControl(tolPwrss = 1e-13))
res[["nb"]] <- list(theta = th, loglik = as.numeric(logLik(nb)), df = attr(logLik(nb), "df"),
                    loglik_tight = as.numeric(logLik(nb_tight)), fixef = as.list(fixef(nb)))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null"), file.path(dir, "out.json"))
"""


@pytest.fixture(scope="module")
def glmer(rscript, tmp_path_factory):
    d = tmp_path_factory.mktemp("glmer")
    rng = np.random.default_rng(20261202)
    designs = [_design(i, rng) for i in range(N_DESIGNS)]
    specs = []
    for i, des in enumerate(designs):
        des["data"].to_csv(d / f"d{i}.csv", index=False)
        specs.append({k: des[k] for k in ("formula", "family", "weights", "offset", "agq")})
    (d / "specs.json").write_text(json.dumps(specs))
    (d / "check.R").write_text(R_SCRIPT)
    res = subprocess.run([rscript, str(d / "check.R"), str(d)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads((d / "out.json").read_text())
    return d, designs, out


def _factors(data: pd.DataFrame, cols) -> pd.DataFrame:
    data = data.copy()
    for c in cols:
        data[c] = data[c].astype(str)
    return data


def _fit(formula, data, family, weights=None, offset=None, nAGQ=1):  # noqa: N803
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bc.errors.BoundaryWarning)
        return bc.glmm(formula, data, family=family, weights=weights, offset=offset, nAGQ=nAGQ)


def _compare(fit, ref: dict, what: str):
    """The acceptance rules of the module docstring; returns 'parity' or 'ours better'."""
    tight, default = ref["tight"], ref["default"]
    assert "error" not in tight, tight
    ll = fit.loglik
    # the same criterion: ours at glmer's (θ, β) equals glmer's value there
    at_theirs = -0.5 * fit.criterion_at(tight["theta"], list(tight["fixef"].values()))
    assert at_theirs == pytest.approx(tight["loglik"], rel=1e-8, abs=1e-8), what
    for r in (tight, default):
        if "error" not in r:
            assert ll >= r["loglik"] - 1e-6 * abs(r["loglik"]), (what, ll, r["loglik"])
    assert ll == pytest.approx(tight["loglik"], rel=1e-6), what
    if ll > tight["loglik"] + 1e-10 * abs(ll):  # glmer's Nelder-Mead stopped short of the optimum
        return "ours better"
    if tight["messages"]:
        return "glmer not clean"
    fe, se = tight["fixef"], tight["se_deriv12"]
    assert list(fit.fixef.index) == list(fe), what
    for name in fe:
        assert abs(fit.fixef[name] - fe[name]) <= 1e-4 * max(abs(fe[name]), se[name]), (what, name)
        if fit.family.name != "Gamma":
            assert fit.fixef_se[name] == pytest.approx(se[name], rel=1e-3), (what, name)
    if tight["singular"]:
        assert fit.singular, what
        return "parity"
    assert not fit.singular, what
    ours = fit.varcorr
    assert len(ours) == len(tight["vc"]), what
    scale = ours.vcov.abs().max()
    for (_, mine), theirs in zip(ours.iterrows(), tight["vc"]):
        assert (mine.grp, mine.var1 or "", mine.var2 or "") == (theirs["grp"], theirs["var1"], theirs["var2"]), what
        if theirs["var2"]:  # a covariance: to 1e-4 of the product of the two SDs (the correlation to 1e-4)
            sd = ours[ours.var2.isna()].set_index(["grp", "var1"]).sdcor
            tol = 1e-4 * sd[(mine.grp, mine.var1)] * sd[(mine.grp, mine.var2)]
        else:
            tol = 1e-4 * max(abs(theirs["vcov"]), 1e-3 * scale)
        assert abs(mine.vcov - theirs["vcov"]) <= tol, (what, mine.grp, mine.var1, mine.var2)
    mine = fit.ranef(measures=("cond_sd",))
    got = pd.Series(mine.cond_sd.to_numpy(), index=mine.grp + "|" + mine.term + "|" + mine.level.astype(str))
    got = got.groupby(level=0).first()
    theirs = pd.Series({c["key"]: c["sd"] for c in tight["condsd"]})
    np.testing.assert_allclose(got.loc[theirs.index].to_numpy(), theirs.to_numpy(), rtol=1e-3, err_msg=what)
    return "parity"


@pytest.mark.parametrize("i", range(N_DESIGNS))
def test_random_design_matches_glmer(glmer, i):
    _, designs, ref = glmer
    des = designs[i]
    data = des["data"]
    fit = _fit(des["formula"], data, des["family"], weights="trials" if des["weights"] else None,
               offset="logexpo" if des["offset"] else None)
    outcome = _compare(fit, ref[str(i)], f"design {i}: {des['formula']} ({des['family']})")
    if outcome != "parity":
        pytest.xfail(f"{outcome}: our loglik {fit.loglik:.8f}, glmer (tight) {ref[str(i)]['tight']['loglik']:.8f}")


@pytest.mark.parametrize("i", sorted(i for i in range(N_DESIGNS) if i % 12 in SCALAR))
def test_random_design_agq10_matches_glmer(glmer, i):
    _, designs, ref = glmer
    des = designs[i]
    fit = _fit(des["formula"], des["data"], des["family"], weights="trials" if des["weights"] else None,
               offset="logexpo" if des["offset"] else None, nAGQ=10)
    r = ref[str(i)]["agq10"]
    # lme4 reports −½ its AGQ deviance (deviance-residual scale) as logLik for nAGQ > 1
    assert fit.deviance_lme4 / -2 >= r["loglik"] - 1e-6 * abs(r["loglik"])
    assert fit.deviance_lme4 / -2 == pytest.approx(r["loglik"], rel=1e-6)
    for name, value in r["fixef"].items():
        assert abs(fit.fixef[name] - value) <= 1e-4 * max(abs(value), r["se"][name]), name
    assert fit.theta == pytest.approx(np.atleast_1d(r["theta"]), rel=1e-4)


def test_cbpp_matches_glmer(glmer):
    d, _, ref = glmer
    data = _factors(pd.read_csv(d / "cbpp.csv"), ["herd", "period"])
    form = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    fit = _fit(form, data, "binomial")
    assert _compare(fit, ref["cbpp"], "cbpp") in ("parity", "ours better")
    # as users run glmer (default PIRLS tolerance): ours is 2.8e-4 higher, the exact-mode value
    assert fit.loglik > ref["cbpp"]["default"]["loglik"]
    agq = _fit(form, data, "binomial", nAGQ=10)
    r = ref["cbpp"]["agq10"]
    assert agq.deviance_lme4 / -2 == pytest.approx(r["loglik"], rel=1e-6)
    for name, value in r["fixef"].items():
        assert abs(agq.fixef[name] - value) <= 1e-4 * max(abs(value), r["se"][name]), name
    assert agq.theta == pytest.approx(np.atleast_1d(r["theta"]), rel=1e-4)


@pytest.mark.parametrize("i", [None, *sorted(i for i in range(N_DESIGNS) if i % 12 in SCALAR)])
def test_nagq0_matches_glmer(glmer, i):
    """nAGQ = 0 (glmer's first stage only: θ optimised, β from PIRLS with u); SEs from RX."""
    d, designs, ref = glmer
    if i is None:
        data = _factors(pd.read_csv(d / "cbpp.csv"), ["herd", "period"])
        fit = _fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, "binomial", nAGQ=0)
        r = ref["cbpp"]["agq0"]
    else:
        des = designs[i]
        fit = _fit(des["formula"], des["data"], des["family"], weights="trials" if des["weights"] else None,
                   offset="logexpo" if des["offset"] else None, nAGQ=0)
        r = ref[str(i)]["agq0"]
    assert fit.loglik >= r["loglik"] - 1e-6 * abs(r["loglik"])
    assert fit.loglik == pytest.approx(r["loglik"], rel=1e-6)
    assert fit.theta == pytest.approx(np.atleast_1d(r["theta"]), rel=1e-4)
    for name, value in r["fixef"].items():
        assert abs(fit.fixef[name] - value) <= 1e-4 * max(abs(value), r["se"][name]), name
        assert fit.fixef_se[name] == pytest.approx(r["se"][name], rel=1e-3), name


def test_grouseticks_matches_glmer(glmer):
    d, _, ref = glmer
    data = _factors(pd.read_csv(d / "grouseticks.csv"), ["BROOD", "LOCATION", "YEAR", "INDEX"])
    fit = _fit("TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)", data, "poisson")
    outcome = _compare(fit, ref["grouseticks"], "grouseticks")
    assert outcome in ("parity", "ours better", "glmer not clean")
    # glmer warns (large eigenvalue ratio: HEIGHT is not centred); estimates still within 1e-4 of SE
    r = ref["grouseticks"]["tight"]
    for name, value in r["fixef"].items():
        assert abs(fit.fixef[name] - value) <= 1e-4 * max(abs(value), r["se"][name]), name
    assert fit.theta == pytest.approx(np.atleast_1d(r["theta"]), rel=1e-4)


def test_negative_binomial_matches_glmer_nb(glmer):
    """glmer.nb's θ maximises a profile computed with the default PIRLS tolerance (noise of
    ~1e-3 in the log-likelihood); refitted at its θ with tolPwrss = 1e-13 it is the exact
    Laplace value there. Ours (θ from a Brent search on the same profile) must be at least as
    high, and AIC counts θ as glmer.nb does."""
    d, _, ref = glmer
    data = _factors(pd.read_csv(d / "grouseticks.csv"), ["BROOD", "LOCATION", "YEAR", "INDEX"])
    fit = _fit("TICKS ~ YEAR + (1|BROOD)", data, "negative_binomial")
    r = ref["nb"]
    assert fit.loglik >= r["loglik_tight"] - 1e-6 * abs(r["loglik_tight"])
    assert fit.loglik >= r["loglik"] - 1e-6 * abs(r["loglik"])
    assert fit.n_params == r["df"]
    assert fit.nb_theta == pytest.approx(r["theta"], rel=1e-2)  # the profile is flat: 1e-3 in logLik over 0.3%
    for name, value in r["fixef"].items():
        assert fit.fixef[name] == pytest.approx(value, abs=1e-2 * fit.fixef_se[name])


def test_gamma_se_stable(glmer):
    """Our Hessian-based SEs are the same with differences of 1e-4 and 1e-3 (so are not noise)."""
    from bayescred.glmm.optimise import hessian

    _, designs, _ = glmer
    des = designs[23]
    fit = _fit(des["formula"], des["data"], des["family"])
    x = np.concatenate([fit.theta, fit.fixef.to_numpy()])
    nt = len(fit.theta)
    for h in (1e-4, 1e-3):
        _, _, H = hessian(fit._problem.deviance, x, h=h)
        se = np.sqrt(np.diag(2 * np.linalg.inv(H))[nt:])
        np.testing.assert_allclose(se, fit.fixef_se.to_numpy(), rtol=1e-3)


def test_at_least_twenty_designs_compared(glmer):
    _, designs, ref = glmer
    assert len(designs) >= 20 and all("error" not in ref[str(i)]["tight"] for i in range(len(designs)))
