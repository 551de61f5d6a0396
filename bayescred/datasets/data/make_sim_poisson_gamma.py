"""Regenerate bayescred/datasets/data/sim_poisson_gamma.csv and its truth (sim_poisson_gamma.json beside it).

Run from the repository root:  .venv/bin/python bayescred/datasets/data/make_sim_poisson_gamma.py
The portfolio is drawn by bayescred's own simulator (bayescred.datasets.simulate.poisson_gamma)
with a fixed seed, so the same command always writes the same files.
"""

import json
from pathlib import Path

from bayescred.datasets import simulate

SEED = 20261121
PARAMS = dict(
    n_risks=150,
    n_periods=5,
    collective=0.10,  # claims per unit of exposure for a zone-1 company with frailty 1
    between=0.40,  # lambda = Var(u), u ~ Gamma(1/lambda, 1/lambda)
    exposure=(1.0, 40.0),  # exposure per company-year, uniform
    factors={"zone": [0.0, 0.3, -0.2, 0.5]},  # log-relativities of zones 1-4, zone 1 the base
)

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sim = simulate.poisson_gamma(**PARAMS, seed=SEED)
    data = sim.data.rename(columns={"risk": "company"})[["company", "zone", "period", "exposure", "claims"]]
    data["exposure"] = data["exposure"].round(4)
    data.to_csv(HERE / "sim_poisson_gamma.csv", index=False)
    truth = {
        "seed": SEED,
        "generator": "bayescred.datasets.simulate.poisson_gamma",
        "params": PARAMS,
        **{k: v for k, v in sim.truth.items() if k != "factors"},
        "zone_log_relativity": PARAMS["factors"]["zone"],
        "u": [round(float(x), 10) for x in sim.effects["u"]],
    }
    (HERE / "sim_poisson_gamma.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"{len(data)} rows, {data.claims.sum()} claims, {data.exposure.sum():.1f} exposure")
