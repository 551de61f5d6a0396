"""Simulation-based calibration (Talts et al. 2018) of every Bayesian factory.

For each replicate: draw the hyperparameters from the prior, simulate a portfolio with a
fixed design, sample the posterior with ``bc.sample`` (the compiled model is reused: only
the data change) and record the rank of each true hyperparameter among L thinned posterior
draws. If the sampler and the marginal likelihood are right, ranks are uniform on 0..L.

    .venv/bin/python benchmarks/sbc.py [replicates]     # default 100 per factory

Writes rank histograms to benchmarks/figures/sbc_<factory>.png and the "sbc" section of
RESULTS.md (chi-square uniformity p-values). tests/test_sbc_smoke.py runs a few replicates.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

HERE = Path(__file__).resolve().parent

import bayescred as bc  # noqa: E402
from bayescred.models import (  # noqa: E402
    binomial_logitnormal,
    buhlmann,
    buhlmann_straub,
    crossed,
    gamma_lognormal,
    hachemeister,
    hierarchical,
    poisson_gamma,
    poisson_lognormal,
)

THIN = 99  # posterior draws kept per replicate: ranks take values 0..99


# ---------------------------------------------------------------- one case per factory

def _gauss_priors(n_between=None):
    sd = pm.HalfNormal.dist(sigma=10.0) if n_between is None else pm.HalfNormal.dist(sigma=np.full(n_between, 10.0))
    return {"collective": pm.Normal.dist(100.0, 10.0), "between_sd": sd, "within_sd": pm.HalfNormal.dist(sigma=20.0)}


def _draw_gauss(rng, n_between=1):
    return {"collective": rng.normal(100, 10), "between_sd": np.abs(rng.normal(0, 10, n_between)),
            "within_sd": abs(rng.normal(0, 20))}


def case_buhlmann_straub(rng, weighted=True):
    J, T = 20, 5
    w = rng.uniform(0.5, 1.5, (J, T)) if weighted else np.ones((J, T))

    def simulate(rng):
        p = _draw_gauss(rng)
        theta = p["collective"] + p["between_sd"][0] * rng.normal(size=J)
        y = theta[:, None] + p["within_sd"] / np.sqrt(w) * rng.normal(size=(J, T))
        data = pd.DataFrame({"risk": np.repeat(np.arange(J), T), "y": y.ravel(), "w": w.ravel()})
        truth = {"collective": p["collective"], "between": p["between_sd"][0] ** 2, "within": p["within_sd"] ** 2}
        return data, truth

    if weighted:
        factory = lambda d: buhlmann_straub(d, group="risk", response="y", weight="w", priors=_gauss_priors())
    else:
        factory = lambda d: buhlmann(d, group="risk", response="y", priors=_gauss_priors())
    return simulate, factory


def case_buhlmann(rng):
    return case_buhlmann_straub(rng, weighted=False)


def case_hierarchical(rng):
    S, J, T = 5, 4, 4
    w = rng.uniform(0.5, 1.5, (S, J, T))

    def simulate(rng):
        p = _draw_gauss(rng, 2)
        sector = p["between_sd"][0] * rng.normal(size=S)
        risk = p["between_sd"][1] * rng.normal(size=(S, J))
        y = p["collective"] + sector[:, None, None] + risk[:, :, None] + p["within_sd"] / np.sqrt(w) * rng.normal(size=(S, J, T))
        s, j, _ = np.meshgrid(np.arange(S), np.arange(J), np.arange(T), indexing="ij")
        data = pd.DataFrame({"sector": s.ravel(), "risk": j.ravel(), "y": y.ravel(), "w": w.ravel()})
        truth = {"collective": p["collective"], "between": p["between_sd"] ** 2, "within": p["within_sd"] ** 2}
        return data, truth

    factory = lambda d: hierarchical(d, levels=["sector", "risk"], response="y", weight="w", priors=_gauss_priors(2))
    return simulate, factory


def case_hachemeister(rng):
    J, T = 10, 8
    w = rng.uniform(0.5, 1.5, (J, T))
    t = np.arange(1, T + 1)
    priors = {"collective": pm.Normal.dist(mu=np.array([100.0, 5.0]), sigma=np.array([10.0, 2.0])),
              "between_sd": pm.HalfNormal.dist(sigma=np.array([10.0, 2.0])), "within_sd": pm.HalfNormal.dist(sigma=10.0)}

    def simulate(rng):
        beta = rng.normal([100.0, 5.0], [10.0, 2.0])
        sd = np.abs(rng.normal(0, [10.0, 2.0]))
        rho = 2 * rng.beta(2.0, 2.0) - 1  # LKJ(2) in 2-D
        sigma = abs(rng.normal(0, 10.0))
        U = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
        coef = rng.multivariate_normal(beta, U, size=J)
        y = coef[:, :1] + coef[:, 1:] * t + sigma / np.sqrt(w) * rng.normal(size=(J, T))
        data = pd.DataFrame({"risk": np.repeat(np.arange(J), T), "t": np.tile(t, J), "y": y.ravel(), "w": w.ravel()})
        truth = {"collective": beta, "between_sd": sd, "between_corr": rho, "within": sigma**2}
        return data, truth

    factory = lambda d: hachemeister(d, group="risk", time="t", response="y", weight="w", centering="origin",
                                     structure="correlated", priors=priors)  # the LKJ(2) U simulated above
    return simulate, factory


def case_poisson_gamma(rng):
    J, K = 40, 3
    exposure = rng.uniform(1.0, 40.0, (J, K))
    zone = np.tile(np.arange(K) % 2, (J, 1))
    priors = {"log_collective": pm.Normal.dist(np.log(0.1), 0.5), "fixef": pm.Normal.dist(0.0, 0.5),
              "lam": pm.HalfNormal.dist(sigma=0.5)}

    def simulate(rng):
        c, b, lam = np.exp(rng.normal(np.log(0.1), 0.5)), rng.normal(0, 0.5), abs(rng.normal(0, 0.5))
        u = rng.gamma(1 / lam, lam, J)
        # zone 0 has the larger exposure by design (2 of 3 cells), so it is the base level
        y = rng.poisson(exposure * c * np.exp(b * zone) * u[:, None])
        data = pd.DataFrame({"company": np.repeat(np.arange(J), K), "zone": zone.ravel(), "claims": y.ravel(),
                             "exposure": exposure.ravel()})
        return data, {"collective": c, "fixef": np.array([b]), "lam": lam}

    factory = lambda d: poisson_gamma(d, group="company", claims="claims", exposure="exposure", fixed=["zone"], priors=priors)
    return simulate, factory


def case_crossed(rng):
    I, J, n = 4, 3, 6

    def simulate(rng):
        p = _draw_gauss(rng, 3)
        a = p["between_sd"][0] * rng.normal(size=I)
        b = p["between_sd"][1] * rng.normal(size=J)
        c = p["between_sd"][2] * rng.normal(size=(I, J))
        y = p["collective"] + a[:, None, None] + b[None, :, None] + c[:, :, None] + p["within_sd"] * rng.normal(size=(I, J, n))
        i, j, _ = np.meshgrid(np.arange(I), np.arange(J), np.arange(n), indexing="ij")
        data = pd.DataFrame({"a": i.ravel(), "b": j.ravel(), "y": y.ravel()})
        return data, {"collective": p["collective"], "between": p["between_sd"] ** 2, "within": p["within_sd"] ** 2}

    factory = lambda d: crossed(d, factors=["a", "b"], response="y", priors=_gauss_priors(3))
    return simulate, factory


# GLMM factories (latent, non-centred): one normal effect per risk on the link scale, one
# rating factor with two levels (level 0 is R's base); priors tight enough that every
# simulated portfolio is plausible (no empty or all-success risks by construction)
_GLMM_PRIORS = {"fixef": pm.Normal.dist(0.0, 0.5), "between_sd": pm.HalfNormal.dist(sigma=0.5)}


def _draw_glmm(rng, centre):
    return rng.normal(centre, 0.5), rng.normal(0, 0.5), abs(rng.normal(0, 0.5))


def case_poisson_lognormal(rng):
    J, K = 30, 2
    exposure = rng.uniform(1.0, 40.0, (J, K))
    zone = np.tile(np.arange(K), (J, 1))
    priors = {"log_collective": pm.Normal.dist(np.log(0.1), 0.5), **_GLMM_PRIORS}

    def simulate(rng):
        a, b, sd = _draw_glmm(rng, np.log(0.1))
        u = sd * rng.normal(size=J)
        y = rng.poisson(exposure * np.exp(a + b * zone + u[:, None]))
        data = pd.DataFrame({"company": np.repeat(np.arange(J), K), "zone": zone.ravel(), "claims": y.ravel(),
                             "exposure": exposure.ravel()})
        return data, {"collective": np.exp(a), "fixef": np.array([b]), "between": sd**2}

    factory = lambda d: poisson_lognormal(d, group="company", claims="claims", exposure="exposure", fixed=["zone"],
                                          priors=priors)
    return simulate, factory


def case_gamma_lognormal(rng):
    J, K = 20, 2
    claims = rng.integers(1, 11, (J, K))
    zone = np.tile(np.arange(K), (J, 1))
    priors = {"log_collective": pm.Normal.dist(np.log(1000.0), 0.5), "dispersion": pm.HalfNormal.dist(sigma=1.0),
              **_GLMM_PRIORS}

    def simulate(rng):
        a, b, sd = _draw_glmm(rng, np.log(1000.0))
        phi = abs(rng.normal(0, 1.0))
        u = sd * rng.normal(size=J)
        mean = np.exp(a + b * zone + u[:, None])
        y = rng.gamma(claims / phi, mean * phi / claims)
        data = pd.DataFrame({"company": np.repeat(np.arange(J), K), "zone": zone.ravel(), "severity": y.ravel(),
                             "claims": claims.ravel()})
        return data, {"collective": np.exp(a), "fixef": np.array([b]), "between": sd**2, "dispersion": phi}

    factory = lambda d: gamma_lognormal(d, group="company", severity="severity", claims="claims", fixed=["zone"],
                                        priors=priors)
    return simulate, factory


def case_binomial_logitnormal(rng):
    J, K = 20, 2
    trials = rng.integers(5, 41, (J, K))
    x = np.tile(np.arange(K), (J, 1))
    priors = {"logit_collective": pm.Normal.dist(-1.0, 0.5), **_GLMM_PRIORS}

    def simulate(rng):
        a, b, sd = _draw_glmm(rng, -1.0)
        u = sd * rng.normal(size=J)
        p = 1 / (1 + np.exp(-(a + b * x + u[:, None])))
        data = pd.DataFrame({"risk": np.repeat(np.arange(J), K), "x": x.ravel(),
                             "successes": rng.binomial(trials, p).ravel(), "trials": trials.ravel()})
        return data, {"collective": 1 / (1 + np.exp(-a)), "fixef": np.array([b]), "between": sd**2}

    factory = lambda d: binomial_logitnormal(d, group="risk", successes="successes", trials="trials", fixed=["x"],
                                             priors=priors)
    return simulate, factory


CASES = {"buhlmann": case_buhlmann, "buhlmann_straub": case_buhlmann_straub, "hierarchical": case_hierarchical,
         "hachemeister": case_hachemeister, "poisson_gamma": case_poisson_gamma, "crossed": case_crossed,
         "poisson_lognormal": case_poisson_lognormal, "gamma_lognormal": case_gamma_lognormal,
         "binomial_logitnormal": case_binomial_logitnormal}


# ---------------------------------------------------------------- the loop

def ranks(name: str, replicates: int, seed: int = 1, draws: int = 300, tune: int = 300, chains: int = 2) -> dict:
    """Rank of each true hyperparameter among THIN posterior draws, per replicate."""
    rng = np.random.default_rng(seed)
    simulate, factory = CASES[name](rng)
    data, _ = simulate(rng)
    base = factory(data)  # compiled once by its first bc.sample; later replicates only swap data
    names = [v.name for v in base.data_vars]
    out: dict[str, list] = {}
    for r in range(replicates):
        data, truth = simulate(rng)
        fresh = factory(data)  # validates and reduces the simulated portfolio (cheap)
        pm.set_data({n: fresh[n].get_value() for n in names}, model=base)
        tree = bc.sample(base, draws=draws, tune=tune, chains=chains, random_seed=seed * 100_000 + r,
                         log_likelihood=False, posterior_predictive=False)
        post = tree["posterior"].to_dataset()
        keep = np.linspace(0, chains * draws - 1, THIN).astype(int)
        for key, value in truth.items():
            sample = post[key].values.reshape(chains * draws, -1)[keep]
            for k, v in enumerate(np.atleast_1d(value)):
                out.setdefault(f"{key}[{k}]" if np.ndim(value) else key, []).append(int(np.sum(sample[:, k] < v)))
    return {k: np.array(v) for k, v in out.items()}


def uniformity_pvalue(r: np.ndarray, bins: int = 10) -> float:
    """Chi-square test of ranks (0..THIN) against the uniform distribution, in equal bins."""
    counts = np.histogram(r, bins=bins, range=(-0.5, THIN + 0.5))[0]
    return float(stats.chisquare(counts).pvalue)


def main(replicates: int = 100) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.spec_from_file_location("_results", HERE / "_results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    (HERE / "figures").mkdir(exist_ok=True)
    lines = ["## Simulation-based calibration (`benchmarks/sbc.py`)", "",
             f"{replicates} replicates per factory; ranks among {THIN} thinned posterior draws "
             "(2 chains x 300 after 300 tuning); chi-square test of uniformity in 10 bins. "
             "Histograms: `benchmarks/figures/sbc_<factory>.png`.", "",
             "| factory | parameter | p-value | seconds |", "|---|---|---|---|"]
    for name in CASES:
        t0 = time.perf_counter()
        rk = ranks(name, replicates)
        secs = time.perf_counter() - t0
        fig, axes = plt.subplots(1, len(rk), figsize=(3 * len(rk), 2.6), squeeze=False)
        for ax, (param, r) in zip(axes[0], rk.items()):
            ax.hist(r, bins=10, range=(-0.5, THIN + 0.5), color="#4c72b0", edgecolor="white")
            ax.axhline(len(r) / 10, color="k", lw=0.8, ls="--")
            ax.set_title(f"{param}\np = {uniformity_pvalue(r):.2f}", fontsize=9)
            ax.set_yticks([])
            lines.append(f"| {name} | {param} | {uniformity_pvalue(r):.3f} | {secs:.0f} |")
        fig.suptitle(f"SBC ranks: {name} ({replicates} replicates)", fontsize=10)
        fig.tight_layout()
        fig.savefig(HERE / "figures" / f"sbc_{name}.png", dpi=90)
        plt.close(fig)
        print(name, {k: round(uniformity_pvalue(v), 3) for k, v in rk.items()}, f"{secs:.0f}s", flush=True)
    results.write_section("sbc", "\n".join(lines))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
