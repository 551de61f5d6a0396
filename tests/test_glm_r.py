"""Live parity of bc.glm with R: glm (gaussian, poisson with offsets, quasipoisson, binomial and
quasibinomial as proportion + weights and as cbind, Gamma, inverse.gaussian), MASS::glm.nb and
statmod::tweedie(var.power, link.power = 0), on 22 random designs per family (factors,
interactions, prior weights, offsets), each family in ONE Rscript call.

Acceptance (issue 12): coefficients within 1e-6 (of max(1, |beta|)), deviance, null deviance,
log-likelihood and AIC within 1e-8 relative, standard errors and dispersion within 1e-6
relative. R's Debian build has no ``tweedie`` package, so the Tweedie log-likelihood is
checked against an independent evaluation in R: the compound Poisson–gamma density summed
term by term with dpois and dgamma at R's fitted means and phi = deviance / sum(w).
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescred as bc

pytestmark = pytest.mark.r

N_DESIGNS = 22

R_SCRIPT = r"""
suppressMessages({library(MASS); library(statmod)})
args <- commandArgs(TRUE); dir <- args[1]
spec <- read.csv(file.path(dir, "spec.csv"), stringsAsFactors = FALSE)
out <- character()
emit <- function(i, key, name, value) out <<- c(out, sprintf("%d,%s,%s,%.15g", i, key, name, value))
tw_logdens <- function(y, mu, phi, p) {
  lam <- mu^(2 - p) / (phi * (2 - p)); g <- (2 - p) / (p - 1); tau <- phi * (p - 1) * mu^(p - 1)
  sapply(seq_along(y), function(k) {
    if (y[k] == 0) return(-lam[k])
    j <- 1:3000
    l <- dpois(j, lam[k], log = TRUE) + dgamma(y[k], shape = j * g, scale = tau[k], log = TRUE)
    m <- max(l); m + log(sum(exp(l - m)))
  })
}
for (k in seq_len(nrow(spec))) {
  s <- spec[k, ]; i <- s$i
  d <- read.csv(file.path(dir, paste0("d", i, ".csv")), stringsAsFactors = TRUE)
  .wts <- if (s$weights) d$w else NULL
  .off <- if (s$offset) d$off else NULL
  f <- as.formula(s$formula)
  m <- tryCatch(if (s$family == "negbin") {
    suppressWarnings(glm.nb(f, data = d, weights = .wts))
  } else {
    fam <- switch(s$family, gaussian = gaussian(link = s$link), poisson = poisson(link = s$link),
                  quasipoisson = quasipoisson(link = s$link), binomial = binomial(link = s$link),
                  quasibinomial = quasibinomial(link = s$link),
                  Gamma = Gamma(link = s$link), inverse.gaussian = inverse.gaussian(link = s$link),
                  tweedie = tweedie(var.power = s$p, link.power = 0))
    suppressWarnings(glm(f, data = d, family = fam, weights = .wts, offset = .off))
  }, error = function(e) NULL)
  if (is.null(m)) { emit(i, "error", "", 1); next }
  sm <- summary(m)
  cf <- coef(m)
  for (j in seq_along(cf)) emit(i, "coef", names(cf)[j], cf[j])
  se <- sm$coefficients[, 2]
  for (j in seq_along(se)) emit(i, "se", names(se)[j], se[j])
  emit(i, "deviance", "", deviance(m)); emit(i, "null_deviance", "", m$null.deviance)
  emit(i, "df_residual", "", m$df.residual); emit(i, "dispersion", "", sm$dispersion)
  emit(i, "aic", "", if (is.null(m$aic)) NA else m$aic)
  ll <- if (s$family %in% c("quasipoisson", "quasibinomial", "tweedie")) NA else as.numeric(logLik(m))
  emit(i, "loglik", "", ll)
  if (s$family == "negbin") { emit(i, "theta", "", m$theta); emit(i, "theta_se", "", m$SE.theta) }
  if (s$family == "tweedie") {
    phi <- deviance(m) / sum(m$prior.weights)
    emit(i, "tw_loglik", "", sum(m$prior.weights * tw_logdens(m$y, fitted(m), phi, s$p)))
  }
}
writeLines(out, file.path(dir, "out.csv"))
"""

FAMILIES = ["gaussian", "poisson", "quasipoisson", "binomial", "quasibinomial", "Gamma", "inverse.gaussian", "negbin",
            "tweedie"]


def _design(family: str, i: int, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """A random data set and its spec (formula, link, weights?, offset?, Tweedie power)."""
    n = int(rng.integers(60, 260))
    x1, x2 = rng.normal(size=n), rng.uniform(-1, 1, n)
    f = rng.choice(["a", "b", "c", "d"][: 2 + i % 3], size=n)
    g = rng.choice(["u", "v"], size=n)
    w = rng.uniform(0.5, 3.0, n)
    off = rng.uniform(-0.5, 0.5, n)
    eff = {"a": 0.0, "b": 0.3, "c": -0.2, "d": 0.15}
    fe = np.vectorize(eff.get)(f)
    shapes = ["y ~ x1 + f", "y ~ x1 * f", "y ~ x1 + x2 + f + g", "y ~ f * g + x2", "y ~ x1 + f:g",
              "y ~ x1 + I(x2^2) + g", "y ~ 0 + f + x1", "y ~ x1 + offset(off)"]
    formula = shapes[i % len(shapes)]
    use_off = (i % 3 == 1) and "offset(" not in formula
    use_w = i % 2 == 0
    eta = 0.4 * x1 - 0.3 * x2 + fe + 0.2 * (g == "v") + (off if (use_off or "offset(" in formula) else 0)
    spec = {"i": i, "formula": formula, "family": family, "link": "", "weights": use_w, "offset": use_off, "p": 0.0}
    data = pd.DataFrame({"x1": x1, "x2": x2, "f": f, "g": g, "w": w, "off": off})
    if family == "gaussian":
        spec["link"] = ["identity", "log", "identity"][i % 3]
        mu = 3 + eta if spec["link"] == "identity" else np.exp(2 + eta)
        y = mu + rng.normal(size=n) * 0.5 / (np.sqrt(w) if use_w else 1)
    elif family in ("poisson", "quasipoisson", "negbin"):
        spec["link"] = "log"
        mu = np.exp(1.0 + eta)
        spec["offset"] = use_off or family == "poisson" and "offset(" not in formula
        if spec["offset"] and not use_off:
            mu = mu * np.exp(off)
        if family == "negbin" and spec["offset"]:  # glm.nb takes offsets in the formula only
            spec["formula"], spec["offset"] = formula + " + offset(off)", False
        y = rng.poisson(mu) if family == "poisson" else rng.negative_binomial(3.0, 3.0 / (3.0 + mu))
    elif family in ("binomial", "quasibinomial"):
        spec["link"] = ["logit", "probit", "cloglog"][i % 3]
        size = rng.integers(1, 12, n)
        s = rng.binomial(size, 1 / (1 + np.exp(-eta)))
        if i % 2 == 0:  # cbind(successes, failures); prior weights only on odd designs
            spec["formula"] = formula.replace("y ~", "cbind(s, fl) ~")
            spec["weights"] = False
            data["s"], data["fl"] = s, size - s
            y = None
        else:  # proportion with the trials as prior weights
            data["w"] = size.astype(float)
            spec["weights"] = True
            y = s / size
    elif family == "Gamma":
        spec["link"] = ["log", "inverse", "identity"][i % 3]
        mu = np.exp(1 + eta) if spec["link"] == "log" else 1 / (1.5 + 0.2 * eta) \
            if spec["link"] == "inverse" else 6 + eta
        y = rng.gamma(4.0, mu / 4.0)
    elif family == "inverse.gaussian":
        spec["link"] = ["log", "1/mu^2", "inverse"][i % 3]
        mu = np.exp(0.5 + 0.5 * eta) if spec["link"] == "log" else 1 / np.sqrt(1 + 0.2 * np.abs(eta)) \
            if spec["link"] == "1/mu^2" else 1 / (1 + 0.2 * np.abs(eta))
        y = rng.wald(mu, 8.0)
    else:  # tweedie: compound Poisson-gamma with power p
        p = float(rng.choice([1.2, 1.5, 1.65, 1.8]))
        spec.update(link="log", p=p)
        mu, phi = np.exp(0.5 + eta), 1.2
        lam = mu ** (2 - p) / (phi * (2 - p))
        counts = rng.poisson(lam)
        shape, scale = (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
        y = np.array([rng.gamma(shape, sc, k).sum() if k else 0.0 for k, sc in zip(counts, scale)])
    if y is not None:
        data["y"] = y
    return data, spec


def _ours(data: pd.DataFrame, spec: dict):
    kw = dict(weights="w" if spec["weights"] else None, offset="off" if spec["offset"] else None)
    fam = spec["family"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fam == "negbin":
            return bc.glm(spec["formula"], data, family="negbin", **kw)
        if fam == "tweedie":
            return bc.glm(spec["formula"], data, family="tweedie", var_power=spec["p"], **kw)
        return bc.glm(spec["formula"], data, family=fam, link=spec["link"], **kw)


@pytest.fixture(scope="module")
def rscript_glm(rscript):
    """Rscript with MASS and statmod (skip with a message otherwise)."""
    res = subprocess.run([rscript, "-e", "library(MASS); library(statmod)"], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip("R packages MASS and statmod are needed (Debian r-cran-mass r-cran-statmod)")
    return rscript


@pytest.fixture(scope="module", params=FAMILIES)
def crosscheck(request, rscript_glm, tmp_path_factory):
    rscript = rscript_glm
    family = request.param
    d = tmp_path_factory.mktemp(f"glm_{family.replace('.', '_')}")
    rng = np.random.default_rng(1200 + FAMILIES.index(family))
    designs = [_design(family, i, rng) for i in range(N_DESIGNS)]
    for data, spec in designs:
        data.to_csv(d / f"d{spec['i']}.csv", index=False)
    pd.DataFrame([s for _, s in designs]).assign(
        weights=lambda t: t.weights.map({True: "TRUE", False: "FALSE"}),
        offset=lambda t: t.offset.map({True: "TRUE", False: "FALSE"})).to_csv(d / "spec.csv", index=False)
    (d / "check.R").write_text(R_SCRIPT)
    res = subprocess.run([rscript, str(d / "check.R"), str(d)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [ln.split(",", 3) for ln in (d / "out.csv").read_text().splitlines()]
    ref = pd.DataFrame(rows, columns=["i", "key", "name", "value"])
    ref["i"] = ref["i"].astype(int)
    ref["value"] = pd.to_numeric(ref["value"], errors="coerce")
    return family, designs, ref


def _scalar(r: pd.DataFrame, key: str) -> float:
    return float(r[r.key == key].value.item())


def test_family_matches_r(crosscheck):
    family, designs, ref = crosscheck
    assert len(designs) >= 20 and ref.i.nunique() == len(designs)
    errors = 0
    for data, spec in designs:
        r = ref[ref.i == spec["i"]]
        where = f"{family} design {spec['i']}: {spec['formula']} ({spec['link']})"
        if (r.key == "error").any():  # R found no valid starting values: so must we
            with pytest.raises(bc.errors.BayescredError):
                _ours(data, spec)
            errors += 1
            continue
        fit = _ours(data, spec)
        coef = r[r.key == "coef"].set_index("name").value
        assert list(fit.coef.index) == list(coef.index), where
        np.testing.assert_array_equal(fit.coef.isna().to_numpy(), coef.isna().to_numpy(), err_msg=where)
        ok = coef.notna().to_numpy()
        np.testing.assert_allclose(fit.coef.to_numpy()[ok], coef.to_numpy()[ok], rtol=1e-6, atol=1e-6, err_msg=where)
        se = r[r.key == "se"].set_index("name").value
        np.testing.assert_allclose(fit.se.loc[se.index].to_numpy(), se.to_numpy(), rtol=1e-6, err_msg=where)
        assert fit.deviance == pytest.approx(_scalar(r, "deviance"), rel=1e-8, abs=1e-10), where
        assert fit.null_deviance == pytest.approx(_scalar(r, "null_deviance"), rel=1e-8, nan_ok=True), where
        assert fit.df_residual == _scalar(r, "df_residual"), where
        assert fit.dispersion == pytest.approx(_scalar(r, "dispersion"), rel=1e-6), where
        aic, ll = _scalar(r, "aic"), _scalar(r, "loglik")
        if family in ("quasipoisson", "quasibinomial"):
            assert np.isnan(fit.aic) and np.isnan(fit.loglik) and np.isnan(aic), where
        elif family == "tweedie":
            assert fit.loglik == pytest.approx(_scalar(r, "tw_loglik"), rel=1e-8), where
        else:
            assert fit.aic == pytest.approx(aic, rel=1e-8), where
            assert fit.loglik == pytest.approx(ll, rel=1e-8), where
        if family == "negbin":
            assert fit.theta == pytest.approx(_scalar(r, "theta"), rel=1e-6), where
            assert fit.theta_se == pytest.approx(_scalar(r, "theta_se"), rel=1e-6), where
    assert errors <= 2, f"{errors} designs failed in R; the comparison must cover at least 20"
