"""bayescred.formula against R itself: model.matrix column names and values, offsets,
responses, and lmer fixed effects on lme4's own data sets, all in ONE Rscript call."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred import formula as fm

pytestmark = pytest.mark.r

# (our formula, our keyword arguments, R formula, R data preparation)
CASES = [
    ("y ~ x * a", {}, "y ~ x * a", ""),
    ("y ~ a:b", {}, "y ~ a:b", ""),  # R's rule: both factors in full (rank deficient, as R)
    ("y ~ a*b - a", {}, "y ~ a*b - a", ""),
    ("y ~ 0 + a + b", {}, "y ~ 0 + a + b", ""),
    ("y ~ x:a", {}, "y ~ x:a", ""),
    ("y ~ b:a + a", {}, "y ~ b:a + a", ""),
    ("y ~ a*b", {}, "y ~ a*b", ""),  # plain-column algebra, coded without formulaic (_PlainTerms)
    ("y ~ 0 + a*b + x", {}, "y ~ 0 + a*b + x", ""),
    ("y ~ (a + b):x + x", {}, "y ~ (a + b):x + x", ""),
    ("y ~ a*b*x", {}, "y ~ a*b*x", ""),
    ("y ~ a/x", {}, "y ~ a/x", ""),
    ("y ~ x %in% a", {}, "y ~ x %in% a", ""),
    ("y ~ a + b %in% a", {}, "y ~ a + b %in% a", ""),
    ("y ~ (a + b + x)^2", {}, "y ~ (a + b + x)^2", ""),
    ("y ~ x - 1", {}, "y ~ x - 1", ""),
    ("y ~ -1 + a", {}, "y ~ -1 + a", ""),
    ("y ~ poly(x, 3)", {}, "y ~ poly(x, 3)", ""),
    ("y ~ poly(x, 2, raw = TRUE)", {}, "y ~ poly(x, 2, raw = TRUE)", ""),
    ("y ~ scale(x) + log(z) + sqrt(z) + exp(x) + I(x^2) + I(x * z - 1)", {},
     "y ~ scale(x) + log(z) + sqrt(z) + exp(x) + I(x^2) + I(x * z - 1)", ""),
    ("y ~ t", {}, "y ~ t", ""),  # a numeric code stays numeric
    ("y ~ factor(t)", {}, "y ~ factor(t)", ""),
    ("y ~ as.factor(t) * x", {}, "y ~ as.factor(t) * x", ""),
    ("y ~ t + x", {"factors": ["t"]}, "y ~ t + x", "d$t <- factor(d$t)"),
    ("y ~ a + t", {"base_levels": {"a": "b", "t": 195}}, "y ~ a + t",
     "d$a <- relevel(factor(d$a), 'b'); d$t <- relevel(factor(d$t), '195')"),
    # R's C() wants a factor; ours takes the column as it is
    ("y ~ C(a, contr.sum)", {}, "y ~ C(a, contr.sum)", "d$a <- factor(d$a)"),
    ("y ~ C(a, contr.poly) + C(t, sum)", {}, "y ~ C(a, contr.poly) + C(t, sum)", "d$a <- factor(d$a); d$t <- factor(d$t)"),
    ("y ~ C(a, contr.helmert)", {}, "y ~ C(a, contr.helmert)", "d$a <- factor(d$a)"),
    ("y ~ `my col` + x:`my col`", {}, "y ~ `my col` + x:`my col`", ""),
    ("y ~ l + x", {}, "y ~ l + x", ""),
    ("log(y) ~ x + offset(log(z)) + offset(x)", {}, "log(y) ~ x + offset(log(z)) + offset(x)", ""),
    ("y / z ~ x + offset(x - 2 * z)", {}, "y / z ~ x + offset(x - 2 * z)", ""),  # arithmetic, not term algebra
    ("cbind(y, z - y) ~ a", {}, "cbind(y, z - y) ~ a", ""),
]

R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
cases <- fromJSON(args[2], simplifyVector = FALSE)
out <- list(cases = list())
for (cs in cases) {
  d <- read.csv(args[1], check.names = FALSE)
  if (nchar(cs$prep)) eval(parse(text = cs$prep))
  mf <- model.frame(as.formula(cs$r), d)
  X <- model.matrix(as.formula(cs$r), d)
  off <- model.offset(mf); if (is.null(off)) off <- rep(0, nrow(d))
  out$cases[[length(out$cases) + 1]] <- list(names = colnames(X), X = unname(X),
    y = unname(model.response(mf)), offset = off)
}
cake$temperature <- factor(as.character(cake$temperature), levels = levels(cake$temperature), ordered = FALSE)
write.csv(cake, args[3], row.names = FALSE)
cake <- read.csv(args[3])
fits <- list(
  list(data = cake, f = angle ~ recipe * factor(temperature) + (1 | recipe:replicate)),
  list(data = cake, f = angle ~ recipe + C(factor(temperature), contr.sum) + (1 | recipe/replicate)),
  list(data = sleepstudy, f = Reaction ~ poly(Days, 2) + (Days | Subject)),
  list(data = sleepstudy, f = Reaction ~ scale(Days) + (1 | Subject)),
  list(data = cake, f = angle ~ recipe/temp + (1 | recipe:replicate)),
  list(data = cake, f = angle ~ recipe + temp %in% recipe + (1 | recipe:replicate)),
  list(data = setNames(sleepstudy, c("Reaction", "Days", "my subject")),
       f = Reaction ~ Days + (Days | `my subject`))
)
out$fits <- lapply(fits, function(z) {
  m <- lmer(z$f, z$data, REML = TRUE)
  list(names = names(fixef(m)), fixef = unname(fixef(m)), deviance = REMLcrit(m))
})
write.csv(sleepstudy, args[4], row.names = FALSE)
cat(toJSON(out, digits = NA, auto_unbox = FALSE))
"""


def _data(seed: int = 20261202) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 60
    return pd.DataFrame({
        "y": rng.uniform(1, 5, n),
        "x": rng.normal(size=n),
        "z": rng.uniform(0.5, 4, n),
        "a": rng.choice(["a", "b", "c"], n),
        "b": rng.choice(["u", "v"], n),
        "t": rng.choice([175, 185, 195], n),
        "my col": rng.normal(size=n),
        "l": rng.choice([True, False], n),
    })


@pytest.fixture(scope="module")
def r_results(rscript, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formula_r")
    data = _data()
    data.assign(l=data["l"].map({True: "TRUE", False: "FALSE"})).to_csv(tmp / "d.csv", index=False)
    cases = json.dumps([{"r": r, "prep": prep} for _, _, r, prep in CASES])
    (tmp / "run.R").write_text(R_SCRIPT)
    res = subprocess.run([rscript, str(tmp / "run.R"), str(tmp / "d.csv"), cases, str(tmp / "cake.csv"),
                          str(tmp / "sleep.csv")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return data, json.loads(res.stdout), tmp


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_model_matrix_matches_r(r_results, i):
    data, out, _ = r_results
    ours, kwargs, _, _ = CASES[i]
    r = out["cases"][i]
    design = fm.fixed_design(ours, data, **kwargs)
    assert design.names == r["names"]
    np.testing.assert_allclose(design.X, np.array(r["X"], dtype=float).reshape(design.X.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(design.y, np.array(r["y"], dtype=float).reshape(design.y.shape), rtol=1e-12)
    np.testing.assert_allclose(design.offset, np.array(r["offset"], dtype=float), rtol=1e-12, atol=1e-14)


def test_new_data_reuses_scale_poly_and_levels(r_results):
    data, _, _ = r_results
    design = fm.fixed_design("y ~ poly(x, 2) + scale(z) + factor(t) + a", data)
    # predicting on the first rows gives the rows of the fitted design (state learned once)
    np.testing.assert_allclose(design.transform(data.iloc[:7]), design.X[:7], rtol=1e-12)
    with pytest.raises(bc.errors.DataError, match="not seen in the fit"):
        design.transform(data.assign(a="zz").iloc[:3])


FITS = [
    ("cake", "angle ~ recipe * factor(temperature) + (1 | recipe:replicate)"),
    ("cake", "angle ~ recipe + C(factor(temperature), contr.sum) + (1 | recipe/replicate)"),
    ("sleep", "Reaction ~ poly(Days, 2) + (Days | Subject)"),
    ("sleep", "Reaction ~ scale(Days) + (1 | Subject)"),
    ("cake", "angle ~ recipe/temp + (1 | recipe:replicate)"),
    ("cake", "angle ~ recipe + temp %in% recipe + (1 | recipe:replicate)"),
    ("sleep", "Reaction ~ Days + (Days | `my subject`)"),  # lme4 cannot expand || on a backquoted name
]


@pytest.mark.parametrize("i", range(len(FITS)), ids=[f[1] for f in FITS])
def test_lmer_fixed_effects_match_on_lme4_data(r_results, i):
    """lme4's own cake (temperature read back from CSV as numbers: only factor() makes it a
    factor) and sleepstudy. Balanced designs: β̂ is the OLS solution whatever θ, so the
    fixed effects agree to 1e-8 whatever the optimisers' stopping points."""
    _, out, tmp = r_results
    name, formula = FITS[i]
    data = pd.read_csv(tmp / ("cake.csv" if name == "cake" else "sleep.csv"))
    if "`my subject`" in formula:
        data = data.rename(columns={"Subject": "my subject"})
    fit = bc.lmm(formula, data)
    r = out["fits"][i]
    assert list(fit.fixef.index) == r["names"]
    np.testing.assert_allclose(fit.fixef.to_numpy(), r["fixef"], rtol=1e-8)
    assert fit.criterion == pytest.approx(r["deviance"][0], rel=1e-7)
