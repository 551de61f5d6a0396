"""The shared likelihoods (bayescred.likelihood) against the engines that fit the same models.

Provenance of every expected number: bc.lmm (our lme4-parity REML/ML engine, its own
profiled deviance in lmm/fit.py, not the shared kernels) and, live, lme4's REMLcrit /
deviance (R, marked ``r``); poisson_gamma_eb's log-likelihood and EB relativities.

* evaluated at bc.lmm's estimates, the shared criterion (REML criterion or ML deviance,
  fixed effects profiled) equals ``fit.criterion`` to 1e-8 relative; minimised with scipy
  from another start it reaches bc.lmm's optimum to 1e-8 relative;
* with the variance parameters at bc.lmm's estimates, the conditional means behind the
  exact draws of the risk effects equal bc.lmm's EBLUPs to 1e-10;
* the 2 x 2 fast path of the regression kernel equals its general p x p path, and every
  kernel gives the same number in numpy and in pytensor.
"""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import bayescred as bc
from bayescred.likelihood import gaussian, negbin
from bayescred.lmm.poisson_gamma import poisson_gamma_eb
from bayescred.models._gaussian import nested_data
from bayescred.models.crossed import _cells as crossed_cells
from bayescred.models.hachemeister import _stats as hachemeister_stats

SEEDS = [3, 17, 2024]


# ---------------------------------------------------------------- random designs (unequal sizes and weights)

def bs_data(seed):
    rng = np.random.default_rng(seed)
    J = int(rng.integers(10, 16))
    rows = []
    for j, u in enumerate(rng.normal(0, 2.0, J)):
        for _ in range(int(rng.integers(2, 8))):
            w = rng.uniform(0.3, 3.0)
            rows.append((f"R{j:02d}", 10 + u + rng.normal(0, 3.0) / np.sqrt(w), w))
    return pd.DataFrame(rows, columns=["risk", "y", "w"])


def hierarchical_data(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(int(rng.integers(6, 9))):
        us = rng.normal(0, 2.0)
        for j in range(int(rng.integers(2, 5))):
            uj = rng.normal(0, 1.5)
            for _ in range(int(rng.integers(2, 6))):
                w = rng.uniform(0.3, 3.0)
                rows.append((f"S{s}", f"r{j}", 50 + us + uj + rng.normal(0, 2.0) / np.sqrt(w), w))
    return pd.DataFrame(rows, columns=["sector", "risk", "y", "w"])


def hachemeister_data(seed, corr):
    rng = np.random.default_rng(seed)
    sd = np.array([6.0, 1.2])
    U = np.diag(sd) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sd)
    rows = []
    for j in range(int(rng.integers(10, 15))):
        bj = np.array([100.0, 3.0]) + np.linalg.cholesky(U) @ rng.normal(size=2)
        periods = np.sort(rng.choice(np.arange(1, 11), size=int(rng.integers(4, 9)), replace=False))
        for t in periods:
            w = rng.uniform(0.3, 3.0)
            rows.append((f"G{j:02d}", float(t), bj[0] + bj[1] * t + rng.normal(0, 4.0) / np.sqrt(w), w))
    return pd.DataFrame(rows, columns=["g", "t", "y", "w"])


def crossed_data(seed, interaction):
    rng = np.random.default_rng(seed)
    I, J = int(rng.integers(5, 8)), int(rng.integers(4, 6))
    ua, ub = rng.normal(0, 2.0, I), rng.normal(0, 1.7, J)
    uab = rng.normal(0, 1.0 if interaction else 0.0, (I, J))
    rows = []
    for i in range(I):
        for j in range(J):
            for _ in range(int(rng.integers(2, 5))):
                w = rng.uniform(0.3, 3.0)
                rows.append((f"A{i}", f"B{j}", 20 + ua[i] + ub[j] + uab[i, j] + rng.normal(0, 1.5) / np.sqrt(w), w))
    return pd.DataFrame(rows, columns=["a", "b", "y", "w"])


# ---------------------------------------------------------------- the models as cases

@dataclass
class Case:
    """One design: its lme4 formula, the shared criterion in unconstrained coordinates x,
    and x read off a variance table (``lookup(grp, var1, var2)`` -> vcov, Residual = sigma2)."""

    name: str
    data: pd.DataFrame
    formula: str
    criterion: Callable  # (x, reml) -> Profiled
    coordinates: Callable  # lookup -> x


def nested_case(name, data, levels, formula):
    stats, _, parents, _ = nested_data(data, levels, "y", "w")
    sizes = [len(set(p)) for p in parents] + [len(stats["n"])]

    def criterion(x, reml):
        v = np.exp(x)
        return gaussian.nested_criterion(list(v[:-1]), v[-1], stats, parents, sizes, reml)

    def coordinates(lookup):
        grps = [":".join(levels[: i + 1]) for i in range(len(levels))]
        return np.log([lookup(g, "(Intercept)", None) for g in grps] + [lookup("Residual", None, None)])

    return Case(name, data, formula, criterion, coordinates)


def hachemeister_case(name, data, full):
    stats, _, _ = hachemeister_stats(data, "g", "t", "y", "w", "origin")

    def criterion(x, reml):
        if full:
            L = np.array([[np.exp(x[0]), 0.0], [x[1], np.exp(x[2])]])
            U = L @ L.T
        else:
            U = np.diag(np.exp(x[:2]))
        return gaussian.regression_criterion(U, np.exp(x[-1]), stats, reml)

    def coordinates(lookup):
        s2 = lookup("Residual", None, None)
        if full:
            U = np.array([[lookup("g", "(Intercept)", None), lookup("g", "(Intercept)", "t")],
                          [lookup("g", "(Intercept)", "t"), lookup("g", "t", None)]])
            L = np.linalg.cholesky(U)
            return np.array([np.log(L[0, 0]), L[1, 0], np.log(L[1, 1]), np.log(s2)])
        return np.log([lookup("g", "(Intercept)", None), lookup("g.1", "t", None), s2])

    formula = "y ~ t + (1 + t|g)" if full else "y ~ t + (1|g) + (0 + t|g)"
    return Case(name, data, formula, criterion, coordinates)


def crossed_stats(data, interaction=True):
    stats, levels, cells = crossed_cells(data, ["a", "b"], "y", "w", None, None)
    stats.update(index_a=levels["a"][1], index_b=levels["b"][1], size_a=len(levels["a"][0]), size_b=len(levels["b"][0]))
    return stats, levels, cells


def crossed_case(name, data, interaction):
    stats, _, _ = crossed_stats(data)

    def criterion(x, reml):
        v = np.exp(x)
        var_ab = v[2] if interaction else 0.0
        return gaussian.crossed_criterion(v[0], v[1], var_ab, v[-1], stats, reml)

    def coordinates(lookup):
        grps = ["a", "b"] + (["a:b"] if interaction else [])
        return np.log([lookup(g, "(Intercept)", None) for g in grps] + [lookup("Residual", None, None)])

    formula = "y ~ 1 + (1|a) + (1|b)" + (" + (1|a:b)" if interaction else "")
    return Case(name, data, formula, criterion, coordinates)


def make_case(kind, seed):
    if kind == "buhlmann_straub":
        return nested_case(kind, bs_data(seed), ["risk"], "y ~ 1 + (1|risk)")
    if kind == "hierarchical":
        return nested_case(kind, hierarchical_data(seed), ["sector", "risk"], "y ~ 1 + (1|sector) + (1|sector:risk)")
    if kind == "hachemeister_diagonal":
        return hachemeister_case(kind, hachemeister_data(seed, 0.0), full=False)
    if kind == "hachemeister_full":
        return hachemeister_case(kind, hachemeister_data(seed, -0.5), full=True)
    if kind == "crossed":
        return crossed_case(kind, crossed_data(seed, True), interaction=True)
    return crossed_case(kind, crossed_data(seed, False), interaction=False)


KINDS = ["buhlmann_straub", "hierarchical", "hachemeister_diagonal", "hachemeister_full", "crossed",
         "crossed_no_interaction"]


def lmm_fit(case, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("error", bc.errors.BoundaryWarning)  # a design must not be singular
        return bc.lmm(case.formula, case.data, weights="w", method="REML" if reml else "ML")


def varcorr_lookup(table):
    def lookup(grp, var1, var2):
        row = table[(table.grp == grp) & (table.var1.fillna("") == (var1 or "")) & (table.var2.fillna("") == (var2 or ""))]
        assert len(row) == 1, (grp, var1, var2)
        return float(row.vcov.iloc[0])

    return lookup


# ---------------------------------------------------------------- the criterion against bc.lmm

@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_criterion_equals_lmm_at_its_estimates_and_at_its_optimum(kind, seed, reml):
    case = make_case(kind, seed)
    fit = lmm_fit(case, reml)
    x_hat = case.coordinates(varcorr_lookup(fit.varcorr))
    at_fit = case.criterion(x_hat, reml)
    assert at_fit.criterion == pytest.approx(fit.criterion, rel=1e-8)
    np.testing.assert_allclose(at_fit.collective[0] + _location(case), fit.fixef.iloc[0], rtol=1e-8)
    # from another start (every variance 4 times the estimate)
    start = x_hat + np.log(4.0)
    if kind == "hachemeister_full":
        start = x_hat + np.array([np.log(2.0), 0.5 * abs(x_hat[1]) + 0.1, np.log(2.0), np.log(4.0)])
    res = minimize(lambda x: case.criterion(x, reml).criterion, start, method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 20000})
    res = minimize(lambda x: case.criterion(x, reml).criterion, res.x, method="BFGS", options={"gtol": 1e-9})
    assert res.fun == pytest.approx(fit.criterion, rel=1e-8)


def _location(case):
    """The centre the factories' reductions subtract from the response (a shift of beta_0 only)."""
    if case.name in ("buhlmann_straub", "hierarchical"):
        return nested_data(case.data, ["risk"] if case.name == "buhlmann_straub" else ["sector", "risk"], "y", "w")[3]
    if case.name.startswith("hachemeister"):
        return hachemeister_stats(case.data, "g", "t", "y", "w", "origin")[2]
    return crossed_stats(case.data)[0]["location"]


# ---------------------------------------------------------------- the conditional means against bc.lmm's EBLUPs

def ranef_lookup(fit):
    rf = fit.ranef()
    return {(g, str(lv), t): v for g, lv, t, v in zip(rf.grp, rf.level, rf.term, rf.value)}


@pytest.mark.parametrize("seed", SEEDS)
def test_nested_conditional_means_are_eblups(seed):
    for levels, formula, data in ((["risk"], "y ~ 1 + (1|risk)", bs_data(seed)),
                                  (["sector", "risk"], "y ~ 1 + (1|sector) + (1|sector:risk)", hierarchical_data(seed))):
        case = nested_case("nested", data, levels, formula)
        fit = lmm_fit(case, True)
        stats, names, parents, centre = nested_data(data, levels, "y", "w")
        sizes = [len(n) for n in names]
        v = np.exp(case.coordinates(varcorr_lookup(fit.varcorr)))
        tau2, within = [np.array([[t]]) for t in v[:-1]], np.array([[v[-1]]])
        m = np.array([[fit.fixef.iloc[0] - centre]])  # one "draw" of the hyperparameters
        A, B = gaussian.nested_precisions(np, tau2, within, stats, parents, sizes)
        _, means, _ = gaussian.nested_posterior(np.random.default_rng(0), m, tau2, A, B, parents)
        blup = ranef_lookup(fit)
        for depth in range(len(levels)):
            grp = ":".join(levels[: depth + 1])
            want = fit.fixef.iloc[0] + np.array(
                [sum(blup[(":".join(levels[: k + 1]), ":".join(str(n).split(":")[: k + 1]), "(Intercept)")]
                     for k in range(depth + 1)) for n in names[depth]])
            np.testing.assert_allclose(means[depth][0] + centre, want, rtol=1e-10, err_msg=grp)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("full", [False, True], ids=["diagonal", "full"])
def test_regression_conditional_means_are_eblups(seed, full):
    case = hachemeister_case("hachemeister", hachemeister_data(seed, -0.5 if full else 0.0), full)
    fit = lmm_fit(case, True)
    stats, names, loc = hachemeister_stats(case.data, "g", "t", "y", "w", "origin")
    lookup = varcorr_lookup(fit.varcorr)
    cov = lookup("g", "(Intercept)", "t") if full else 0.0
    U = np.array([[lookup("g", "(Intercept)", None), cov], [cov, lookup("g" if full else "g.1", "t", None)]])
    s2 = fit.sigma2
    beta = fit.fixef.to_numpy() - np.array([loc, 0.0])
    # fast path (entries), as the factory and its draws use it
    fast = {"M": gaussian._mat(stats["M"]), "b": (stats["b"][:, 0], stats["b"][:, 1]), **{k: stats[k] for k in ("c", "n", "sum_log_w")}}
    _, _, E, d = gaussian.regression_loglik(np, tuple(beta), gaussian._mat(U), s2, fast)
    shift = gaussian.mv2(E, d)
    coef = np.column_stack([beta[0] + shift[0] + loc, beta[1] + shift[1]])
    blup = ranef_lookup(fit)
    want = np.array([[fit.fixef.iloc[0] + blup[("g", str(n), "(Intercept)")], fit.fixef.iloc[1] + blup[("g", str(n), "t")]]
                     for n in names])
    np.testing.assert_allclose(coef, want, rtol=1e-10)
    # general path: E[beta_j | data] = beta + E d
    _, _, E, d = gaussian.regression_loglik(np, beta, U, s2, stats)
    general = beta + np.einsum("jab,jb->ja", E, d) + np.array([loc, 0.0])
    np.testing.assert_allclose(general, want, rtol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("interaction", [True, False])
def test_crossed_conditional_means_are_eblups(seed, interaction):
    case = crossed_case("crossed", crossed_data(seed, interaction), interaction)
    fit = lmm_fit(case, True)
    stats, levels, cells = crossed_stats(case.data)
    v = np.exp(case.coordinates(varcorr_lookup(fit.varcorr)))
    var_ab = v[2] if interaction else 0.0
    m = fit.fixef.iloc[0]
    a, b, c = gaussian.crossed_conditional_means(np, m - stats["location"], v[0], v[1], var_ab, v[-1], stats)
    blup = ranef_lookup(fit)
    np.testing.assert_allclose(a, [blup[("a", str(n), "(Intercept)")] for n in levels["a"][0]], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, [blup[("b", str(n), "(Intercept)")] for n in levels["b"][0]], rtol=1e-10, atol=1e-12)
    if interaction:
        np.testing.assert_allclose(c, [blup[("a:b", n, "(Intercept)")] for n in cells], rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(c, 0.0, atol=1e-12)
    assert gaussian.crossed_collective(v[0], v[1], var_ab, v[-1], stats) + stats["location"] == pytest.approx(m, rel=1e-10)


# ---------------------------------------------------------------- negative binomial

def negbin_data(seed):
    rng = np.random.default_rng(seed)
    J, K = 40, 3
    df = pd.DataFrame({"risk": np.repeat(np.arange(J), K), "x": rng.normal(size=J * K), "expo": rng.uniform(0.5, 3, J * K)})
    u = rng.gamma(2.0, 0.5, J)
    df["n"] = rng.poisson(np.exp(-0.2 + 0.3 * df["x"] + np.log(df["expo"])) * u[df["risk"]])
    return df


@pytest.mark.parametrize("seed", SEEDS)
def test_negbin_equals_poisson_gamma_eb_at_its_optimum(seed):
    from scipy.special import gammaln

    data = negbin_data(seed)
    fit = poisson_gamma_eb(data, group="risk", claims="n", exposure="expo", covariates="x")
    assert not fit.boundary
    companies, company = np.unique(data["risk"], return_inverse=True)
    y, e = data["n"].to_numpy(float), data["expo"].to_numpy(float)
    stats = {"claims": y, "exposure": e, "company": company, "size": len(companies),
             "claims_total": np.bincount(company, weights=y),
             "log_const": np.bincount(company, weights=y * np.log(e) - gammaln(y + 1))}
    eta = fit.fixef["(Intercept)"] + fit.fixef["x"] * data["x"].to_numpy()
    ll, mu_plus = negbin.loglik(np, fit.alpha, eta, stats)
    assert float(np.sum(ll)) == pytest.approx(fit.loglik, rel=1e-10)
    u = negbin.conditional_mean(fit.lam, stats["claims_total"], mu_plus)
    np.testing.assert_allclose(u, fit.ranef().loc[companies, "u"].to_numpy(), rtol=1e-10)


# ---------------------------------------------------------------- fast paths, namespaces, the profiled crossed criterion

def random_regression_stats(rng, J=7, p=2):
    Q = [np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) for n in rng.integers(3, 8, J)]
    W = [rng.uniform(0.5, 2.0, len(q)) for q in Q]
    Y = [q @ rng.normal(size=p) + rng.normal(size=len(q)) for q in Q]
    return {"M": np.array([(q.T * w) @ q for q, w in zip(Q, W)]), "b": np.array([(q.T * w) @ y for q, w, y in zip(Q, W, Y)]),
            "c": np.array([(w * y) @ y for w, y in zip(W, Y)]), "n": np.array([len(q) for q in Q], float),
            "sum_log_w": np.array([np.log(w).sum() for w in W]), "Q": Q, "W": W, "Y": Y}


@pytest.mark.parametrize("corr", [0.0, 0.6, -1.0])
def test_regression_fast_path_equals_general_path(corr):
    rng = np.random.default_rng(11)
    stats = random_regression_stats(rng)
    S = 4  # a leading draws axis, as after sampling
    sd = rng.uniform(0.5, 2.0, (S, 2))
    U = np.einsum("sa,ab,sb->sab", sd, np.array([[1.0, corr], [corr, 1.0]]), sd)
    beta, s2 = rng.normal(size=(S, 2)), rng.uniform(0.5, 2.0, S)
    fast = {"M": gaussian._mat(stats["M"]), "b": (stats["b"][:, 0], stats["b"][:, 1]), **{k: stats[k] for k in ("c", "n", "sum_log_w")}}
    Ue = tuple(x[:, None] for x in gaussian._mat(U))
    ll_f, _, E_f, d_f = gaussian.regression_loglik(np, (beta[:, :1], beta[:, 1:]), Ue, s2[:, None], fast)
    ll_g, _, E_g, d_g = gaussian.regression_loglik(np, beta, U[:, None], s2[:, None], stats)
    np.testing.assert_allclose(ll_f, ll_g, rtol=1e-12)
    np.testing.assert_allclose(np.stack(gaussian._mat(E_g)), np.stack(E_f), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.stack(d_f), np.moveaxis(d_g, -1, 0), rtol=1e-12)


def test_regression_general_path_is_the_dense_gaussian_density_for_p3():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    stats = random_regression_stats(rng, J=5, p=3)
    A = rng.normal(size=(3, 3))
    U, beta, s2 = A @ A.T + 0.1 * np.eye(3), rng.normal(size=3), 0.8
    ll = gaussian.regression_loglik(np, beta, U, s2, stats)[0]
    want = [multivariate_normal(q @ beta, q @ U @ q.T + np.diag(s2 / w)).logpdf(y) for q, w, y in zip(stats["Q"], stats["W"], stats["Y"])]
    np.testing.assert_allclose(ll, want, rtol=1e-11)


def test_kernels_give_the_same_numbers_in_numpy_and_pytensor():
    import pytensor
    import pytensor.tensor as pt

    def run(f):
        return pytensor.function([], f(pt))()

    def T(v):  # a float64 constant (pytensor would store 2.0 as float32)
        return pt.as_tensor(np.asarray(v, dtype=float))

    stats, _, _ = crossed_stats(crossed_data(3, True))
    args = (0.3, 2.0, 1.5, 0.7, 1.9)
    np.testing.assert_allclose(run(lambda xp: gaussian.crossed_loglik(xp, *map(T, args), stats)),
                               gaussian.crossed_loglik(np, *args, stats), rtol=1e-12)
    nstats, _, parents, _ = nested_data(hierarchical_data(3), ["sector", "risk"], "y", "w")
    sizes = [len(set(parents[0])), len(nstats["n"])]
    np.testing.assert_allclose(run(lambda xp: gaussian.nested_collapse(xp, T(0.4), [T(1.2), T(0.8)], T(2.5), nstats, parents, sizes)[0]),
                               gaussian.nested_collapse(np, 0.4, [1.2, 0.8], 2.5, nstats, parents, sizes)[0], rtol=1e-12)
    rstats = random_regression_stats(np.random.default_rng(2), p=3)
    rstats = {k: rstats[k] for k in ("M", "b", "c", "n", "sum_log_w")}
    U = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
    beta = np.array([0.1, -0.3, 0.2])
    np.testing.assert_allclose(run(lambda xp: gaussian.regression_loglik(xp, T(beta), T(U), T(0.9), rstats)[0]),
                               gaussian.regression_loglik(np, beta, U, 0.9, rstats)[0], rtol=1e-12)
    data = negbin_data(3)
    companies, company = np.unique(data["risk"], return_inverse=True)
    y = data["n"].to_numpy(float)
    nb = {"claims": y, "exposure": data["expo"].to_numpy(), "company": company, "size": len(companies),
          "claims_total": np.bincount(company, weights=y), "log_const": np.zeros(len(companies))}
    eta = 0.1 * data["x"].to_numpy()
    np.testing.assert_allclose(run(lambda xp: negbin.loglik(xp, T(1.7), T(eta), nb)[0]), negbin.loglik(np, 1.7, eta, nb)[0],
                               rtol=1e-12)


# ---------------------------------------------------------------- crossed: Z and the exact draws from the levels' factor

def thinned_crossed_stats(seed):
    """A crossed design with about a third of its cells empty (every level keeps a cell)."""
    data = crossed_data(seed, True)
    rng = np.random.default_rng(seed + 1)
    cells = data[["a", "b"]].drop_duplicates()
    keep = cells[(rng.uniform(size=len(cells)) > 0.35) | ~cells["a"].duplicated() | ~cells["b"].duplicated()]
    return crossed_stats(data.merge(keep, on=["a", "b"]))[0]


def crossed_dense(stats, va, vb, vab, s2):
    """docs/formulas.md §6 densely: C, V_m, and the covariance of (a, b) given the cell means
    with c integrated out, (diag(1/va, 1/vb) + G'D^-1 G)^-1, D = vab + s2/w."""
    ia, ib, w = stats["index_a"], stats["index_b"], stats["weight"]
    A, B = np.eye(stats["size_a"])[ia], np.eye(stats["size_b"])[ib]
    C = va * A @ A.T + vb * B @ B.T + vab * np.eye(len(ia))
    G = np.hstack([A, B])
    prior = np.r_[np.full(A.shape[1], 1 / va), np.full(B.shape[1], 1 / vb)]
    cov_ab = np.linalg.inv(np.diag(prior) + G.T @ (G / (vab + s2 / w)[:, None]))
    return C, C + np.diag(s2 / w), cov_ab


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("vab", [0.8, 0.0])
def test_crossed_credibility_factors_are_the_diagonal_of_C_V_inverse(seed, vab):
    import pytensor
    import pytensor.tensor as pt

    stats = thinned_crossed_stats(seed)
    va, vb, s2 = 1.7, 0.6, 2.3
    C, V, _ = crossed_dense(stats, va, vb, vab, s2)
    want = np.diag(C @ np.linalg.inv(V))
    np.testing.assert_allclose(gaussian.crossed_credibility_factors(np, va, vb, vab, s2, stats), want, rtol=1e-10, atol=1e-14)
    T = [pt.as_tensor(np.float64(v)) for v in (va, vb, vab, s2)]
    graph = pytensor.function([], gaussian.crossed_credibility_factors(pt, *T, stats))()
    np.testing.assert_allclose(graph, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("vab", [0.8, 0.0])
def test_crossed_posterior_has_the_exact_conditional_mean_and_covariance(vab):
    """Many draws at one set of hyperparameters: Z and the conditional means are the dense
    formulas' and the BLUPs; the draws' mean is the BLUP,
    the covariance of (a, b) the dense one, c | a, b the cell-wise normal (c = 0 when
    var_ab = 0); each within 5 Monte Carlo standard errors."""
    stats = thinned_crossed_stats(17)
    va, vb, s2, m, S = 1.7, 0.6, 2.3, 0.4, 40_000
    one = np.ones(S)
    Z, means, (a, b, c) = gaussian.crossed_posterior(np.random.default_rng(5), m * one, va * one, vb * one, vab * one,
                                                     s2 * one, stats)
    ea, eb, ec = gaussian.crossed_conditional_means(np, m, va, vb, vab, s2, stats)
    for got, want in zip(means, (ea, eb, ec)):
        np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-9, atol=1e-12)
    C, V, _ = crossed_dense(stats, va, vb, vab, s2)
    np.testing.assert_allclose(Z, np.broadcast_to(np.diag(C @ np.linalg.inv(V)), Z.shape), rtol=1e-9, atol=1e-12)
    _, _, cov_ab = crossed_dense(stats, va, vb, vab, s2)
    ab = np.hstack([a, b])
    sd = np.sqrt(np.diag(cov_ab))
    assert np.all(np.abs(ab.mean(0) - np.r_[ea, eb]) <= 5 * sd / np.sqrt(S))
    se = np.sqrt((np.outer(sd**2, sd**2) + cov_ab**2) / S)
    assert np.all(np.abs(np.cov(ab.T) - cov_ab) <= 5 * se)
    if vab == 0.0:
        assert np.all(c == 0.0)
        return
    D = vab + s2 / stats["weight"]
    resid = c - vab / D * ((stats["mean"] - m) - a[:, stats["index_a"]] - b[:, stats["index_b"]])
    cell_sd = np.sqrt(vab * s2 / stats["weight"] / D)
    assert np.all(np.abs(resid.mean(0)) <= 5 * cell_sd / np.sqrt(S))
    assert np.all(np.abs(resid.std(0) / cell_sd - 1) <= 5 / np.sqrt(2 * S))
    np.testing.assert_allclose(c.mean(0), ec, atol=5 * float(np.max(np.sqrt(np.var(c, 0)))) / np.sqrt(S))


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_crossed_profiled_is_the_criterion_at_the_profiled_within_variance(reml):
    stats, _, _ = crossed_stats(crossed_data(17, True))
    ratios = np.array([1.3, 0.8, 0.4])
    value, sigma2, grad = gaussian.crossed_profiled(ratios, stats, reml)
    assert value == pytest.approx(gaussian.crossed_criterion(*(sigma2 * ratios), sigma2, stats, reml).criterion, rel=1e-12)
    # sigma2_hat minimises the criterion along sigma2 with the ratios fixed
    for f in (0.99, 1.01):
        assert gaussian.crossed_criterion(*(f * sigma2 * ratios), f * sigma2, stats, reml).criterion > value
    h = 1e-6
    numeric = [(gaussian.crossed_profiled(ratios + h * e, stats, reml)[0] - gaussian.crossed_profiled(ratios - h * e, stats, reml)[0])
               / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6)


# ---------------------------------------------------------------- live lme4

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE); dir <- args[1]
spec <- read.csv(file.path(dir, "spec.csv"), stringsAsFactors = FALSE)
out <- c()
for (i in seq_len(nrow(spec))) {
  d <- read.csv(file.path(dir, paste0("d", i - 1, ".csv")), stringsAsFactors = TRUE)
  m <- suppressWarnings(suppressMessages(lmer(as.formula(spec$formula[i]), data = d, weights = d$w, REML = spec$reml[i])))
  crit <- if (spec$reml[i]) REMLcrit(m) else deviance(m)
  out <- c(out, sprintf("%d,crit,,,%.17g", i - 1, crit))
  vc <- as.data.frame(VarCorr(m))
  for (k in seq_len(nrow(vc))) out <- c(out, sprintf("%d,vc,%s,%s|%s,%.17g", i - 1, vc$grp[k],
      ifelse(is.na(vc$var1[k]), "", vc$var1[k]), ifelse(is.na(vc$var2[k]), "", vc$var2[k]), vc$vcov[k]))
}
writeLines(out, file.path(dir, "out.csv"))
"""


@pytest.mark.r
def test_criterion_equals_lme4(rscript, tmp_path):
    cases = [(make_case(kind, seed), reml) for kind in KINDS for seed in SEEDS[:2] for reml in (True, False)]
    for i, (case, _) in enumerate(cases):
        case.data.to_csv(tmp_path / f"d{i}.csv", index=False)
    pd.DataFrame({"formula": [c.formula for c, _ in cases], "reml": ["TRUE" if r else "FALSE" for _, r in cases]}).to_csv(
        tmp_path / "spec.csv", index=False)
    (tmp_path / "check.R").write_text(R_SCRIPT)
    res = subprocess.run([rscript, str(tmp_path / "check.R"), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = pd.DataFrame([ln.split(",", 4) for ln in (tmp_path / "out.csv").read_text().splitlines()],
                       columns=["i", "kind", "grp", "vars", "value"])
    ref["i"], ref["value"] = ref["i"].astype(int), ref["value"].astype(float)
    for i, (case, reml) in enumerate(cases):
        r = ref[ref.i == i]
        crit = r[r.kind == "crit"].value.item()
        vc = r[r.kind == "vc"]

        def lookup(grp, var1, var2):
            return vc[(vc.grp == grp) & (vc.vars == f"{var1 or ''}|{var2 or ''}")].value.item()

        x = case.coordinates(lookup)
        assert case.criterion(x, reml).criterion == pytest.approx(crit, rel=1e-8), (case.name, reml)
        # the minimum: never above lme4's (lme4 may stop a little short of it)
        res = minimize(lambda z: case.criterion(z, reml).criterion, x, method="BFGS", options={"gtol": 1e-9})
        assert res.fun <= crit * (1 + 1e-8), (case.name, reml)
