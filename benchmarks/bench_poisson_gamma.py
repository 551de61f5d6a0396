"""Poisson–gamma empirical Bayes: fit time and honesty of the three uncertainty measures.

Run: ``.venv/bin/python benchmarks/bench_poisson_gamma.py`` (about a minute; R part skipped
without Rscript + MASS). Writes the ``poisson_gamma`` section of benchmarks/RESULTS.md.

1. Fit time of ``poisson_gamma_eb`` on the bus data and on a simulated portfolio of 10,000
   risks x 10 rows with two rating factors; and on a one-row-per-risk (NB2) portfolio of
   20,000 risks, against statsmodels ``NegativeBinomial`` and R ``MASS::glm.nb`` (timed inside R).
2. Calibration: over many simulated portfolios with known u, the mean squared error of the
   EB relativity against the mean of each measure squared: (i) cond, (ii) pev, (iii) mse.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from bayescred.lmm.poisson_gamma import poisson_gamma_eb  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def portfolio(J: int, K: int, lam: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """J risks x K rows; zone (7 levels), age (5 levels), exposure; true u returned too."""
    rng = np.random.default_rng(seed)
    n = J * K
    df = pd.DataFrame(
        {
            "risk": np.repeat(np.arange(J), K),
            "zone": rng.integers(1, 8, n),
            "age": rng.integers(0, 5, n),
            "expo": rng.uniform(0.5, 2.0, n),
        }
    )
    u = rng.gamma(1 / lam, lam, J)
    eta = -1.0 + 0.1 * df["zone"] - 0.15 * df["age"] + np.log(df["expo"])
    df["claims"] = rng.poisson(np.exp(eta) * u[df["risk"]])
    return df, u


def best_of(f, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def timings() -> list[str]:
    rows = ["| data | rows | risks | poisson_gamma_eb | statsmodels NB2 | R glm.nb (in R) |", "|---|---|---|---|---|---|"]
    if DATA.is_dir():
        bus = pd.read_csv(DATA / "bus_insurance.csv")
        bus = bus[~(bus["tot.cost"] < 0) & (bus["co.id"] != 145)]
        spec = dict(group="co.id", claims="clm.cnt", exposure="dur", fixed="zone + bus.age", base={"zone": 4, "bus.age": 4})
        t = best_of(lambda: poisson_gamma_eb(bus, **spec))
        rows.append(f"| bus (REFERENCE-VALUES §11) | {len(bus):,} | 660 | {t:.3f} s | n/a | n/a |")
    big, _ = portfolio(10_000, 10, 0.4, seed=1)
    spec = dict(group="risk", claims="claims", exposure="expo", fixed="C(zone) + C(age)")
    t = best_of(lambda: poisson_gamma_eb(big, **spec))
    rows.append(f"| simulated, 2 factors | {len(big):,} | 10,000 | {t:.3f} s | n/a | n/a |")

    nb, _ = portfolio(20_000, 1, 0.4, seed=2)
    t_ours = best_of(lambda: poisson_gamma_eb(nb, **spec))
    import statsmodels.api as sm

    X = pd.get_dummies(nb[["zone", "age"]].astype(str), drop_first=True).astype(float)
    X.insert(0, "const", 1.0)
    model = sm.NegativeBinomial(nb["claims"], X, offset=np.log(nb["expo"]), loglike_method="nb2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sm = best_of(lambda: model.fit(disp=0, method="bfgs", maxiter=2000), repeat=1)
    rows.append(f"| one row per risk (NB2) | {len(nb):,} | 20,000 | {t_ours:.3f} s | {t_sm:.3f} s | {r_glm_nb(nb)} |")
    return rows


def r_glm_nb(df: pd.DataFrame) -> str:
    rscript = shutil.which("Rscript")
    if rscript is None or subprocess.run([rscript, "-e", "library(MASS)"], capture_output=True).returncode:
        return "R/MASS absent"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nb.csv"
        df.to_csv(path, index=False)
        code = f"""suppressMessages(library(MASS)); d <- read.csv("{path}")
        d$zone <- factor(d$zone); d$age <- factor(d$age)
        t <- min(sapply(1:3, function(i) system.time(glm.nb(claims ~ zone + age + offset(log(expo)), data = d))[["elapsed"]]))
        cat(t)"""
        out = subprocess.run([rscript, "-e", code], capture_output=True, text=True)
    return f"{float(out.stdout):.3f} s" if out.returncode == 0 else "R failed"


def calibration(n_rep: int = 300, n_boot_rep: int = 60, n_boot: int = 40, J: int = 30, K: int = 4, lam: float = 0.5) -> list[str]:
    """Sum over risks and portfolios of each measure squared over the realised sum of (u_i - u)^2;
    the bootstrap columns on the first ``n_boot_rep`` portfolios (against their own realised error)."""
    spec = dict(group="risk", claims="claims", exposure="expo", covariates="zone + age")  # linear, as simulated
    measures = ("cond_sd", "pev_sd", "mse_sd", "boot_sd", "boot_bc_sd")
    sq, err = dict.fromkeys(measures, 0.0), {"all": 0.0, "boot": 0.0}
    used = boundary = 0
    for rep in range(n_rep):
        df, u = portfolio(J, K, lam, seed=1000 + rep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = poisson_gamma_eb(df, **spec)
            if fit.boundary or not fit.converged:
                boundary += 1
                continue
            with_boot = rep < n_boot_rep
            r = fit.ranef(bootstrap=n_boot if with_boot else 0, seed=rep)
        realised = float(np.sum((r["u"].to_numpy() - u) ** 2))
        err["all"] += realised
        err["boot"] += realised if with_boot else 0.0
        for c in measures[: 5 if with_boot else 3]:
            sq[c] += float(np.sum(r[c].to_numpy() ** 2))
        used += 1
    labels = {
        "cond_sd": "(i) cond_sd",
        "pev_sd": "(ii) pev_sd",
        "mse_sd": "(iii) mse_sd",
        "boot_sd": f"bootstrap boot_sd (B = {n_boot}, first {n_boot_rep} portfolios)",
        "boot_bc_sd": "bootstrap bias-corrected boot_bc_sd (same)",
    }
    lines = [
        f"{used} simulated portfolios ({J} risks x {K} rows, numeric zone and age, lam = {lam}; "
        f"{boundary} boundary or non-converged fits left out). Sum of each measure squared over the "
        "realised sum of squared errors of u_i (1 = honest):",
        "",
        "| measure | ratio to realised MSE |",
        "|---|---|",
    ]
    for c in measures:
        lines.append(f"| {labels[c]} | {sq[c] / err['boot' if c.startswith('boot') else 'all']:.3f} |")
    return lines


def main() -> None:
    body = ["## Poisson–gamma empirical Bayes (`bayescred.lmm.poisson_gamma`)", "", "Fit time (best of 3):", ""]
    body += timings()
    body += ["", "Calibration of the uncertainty measures:", ""]
    body += calibration()
    text = "\n".join(body)
    print(text)
    write_section("poisson_gamma", text)


if __name__ == "__main__":
    main()
