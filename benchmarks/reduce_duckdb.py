"""Reduce 10 million rows to per-risk sufficient statistics where the data lives.

Writes a Parquet file of 100,000 risks x 100 periods (risk, period, weight, loss; a
Bühlmann–Straub portfolio), then reduces it with ``bayescred.portfolio.summarise`` in
separate processes:

* **duckdb**: ``duckdb.sql("select * from read_parquet(...)")`` passed as it is; validation
  and the two-pass group-by run inside DuckDB, only the 100,000 per-risk rows come back;
* **polars-lazy**: ``polars.scan_parquet(...)``, the same through polars' lazy engine;
* **pandas**: ``pandas.read_parquet(...)`` first (all rows in memory), then the same call.

Each run reports wall time and the process's peak resident memory (``ru_maxrss``), next to a
process that only imports the libraries (the baseline). The per-risk tables of the three
runs must agree to 1e-12 relative. Usage (from the repository root):

    .venv/bin/python benchmarks/reduce_duckdb.py [--risks 100000] [--periods 100]

and the figures go to this script's section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"

RUNNER = r"""
import json, resource, sys, time
import duckdb, numpy as np, pandas as pd, polars as pl
from bayescred import portfolio
engine, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if engine == "duckdb":
    table = portfolio.summarise(duckdb.sql(f"select * from read_parquet('{path}')"), "risk", "loss", "weight")
elif engine == "duckdb-nocheck":
    table = portfolio.summarise(duckdb.sql(f"select * from read_parquet('{path}')"), "risk", "loss", "weight", check=False)
elif engine == "polars-lazy":
    table = portfolio.summarise(pl.scan_parquet(path), "risk", "loss", "weight")
elif engine == "pandas":
    table = portfolio.summarise(pd.read_parquet(path), "risk", "loss", "weight")
elif engine != "baseline":
    raise SystemExit(f"unknown engine {engine}")
wall = time.perf_counter() - t0
if engine != "baseline":
    table.to_parquet(out)
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"engine": engine, "wall_s": wall, "peak_mib": peak_mib}))
"""


def write_parquet(path: Path, n_risks: int, n_periods: int, seed: int = 2026) -> None:
    """Bühlmann–Straub rows (m = 80, τ² = 64, σ² = 100, w ~ U(0.5, 1.5)), written in chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = max(1, 1_000_000 // n_periods)
    schema = pa.schema([("risk", pa.int32()), ("period", pa.int16()), ("weight", pa.float64()), ("loss", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_risks, chunk):
            k = min(chunk, n_risks - start)
            risk = np.repeat(np.arange(start + 1, start + k + 1, dtype=np.int32), n_periods)
            period = np.tile(np.arange(1, n_periods + 1, dtype=np.int16), k)
            w = rng.uniform(0.5, 1.5, k * n_periods)
            loss = 80 + np.repeat(rng.normal(0, 8, k), n_periods) + rng.normal(0, 1, k * n_periods) * np.sqrt(100 / w)
            writer.write_table(pa.table({"risk": risk, "period": period, "weight": w, "loss": loss}, schema=schema))


def run(engine: str, path: Path) -> dict:
    out = WORK / f"summary_{engine}.parquet"
    res = subprocess.run(
        [sys.executable, "-c", RUNNER, engine, str(path), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--risks", type=int, default=100_000)
    parser.add_argument("--periods", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    import duckdb
    import numpy as np
    import pandas as pd

    WORK.mkdir(exist_ok=True)
    n_rows = args.risks * args.periods
    path = WORK / f"bs_{args.risks}x{args.periods}.parquet"
    t0 = time.perf_counter()
    if not path.exists():
        write_parquet(path, args.risks, args.periods)
    print(f"parquet: {path} ({path.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.1f} s)")

    load = os.getloadavg()[0]
    engines = ["baseline", "duckdb", "duckdb-nocheck", "polars-lazy", "pandas"]
    results = {}
    for engine in engines:
        results[engine] = run(engine, path)
        print(results[engine])
    ref = pd.read_parquet(WORK / "summary_pandas.parquet")
    worst = 0.0
    for engine in ("duckdb", "duckdb-nocheck", "polars-lazy"):
        got = pd.read_parquet(WORK / f"summary_{engine}.parquet")
        assert got.index.equals(ref.index) and (got["n"] == ref["n"]).all()
        for col in ("weight", "mean", "within_ss"):
            worst = max(worst, float(np.max(np.abs(got[col] - ref[col]) / np.abs(ref[col]))))
    assert worst < 1e-12, worst
    print(f"max relative difference to pandas: {worst:.1e}")

    base = results["baseline"]["peak_mib"]
    labels = {
        "duckdb": "DuckDB relation (`read_parquet`), validated",
        "duckdb-nocheck": "DuckDB relation, `check=False`",
        "polars-lazy": "polars `scan_parquet` (lazy), validated",
        "pandas": "`pandas.read_parquet` then reduce, validated",
    }
    lines = [
        f"## Reduction of {n_rows:,} rows to per-risk sufficient statistics",
        "",
        f"`portfolio.summarise(data, \"risk\", \"loss\", \"weight\")` on a Parquet file of {n_rows:,} rows "
        f"({args.risks:,} risks x {args.periods} periods; {path.stat().st_size / 2**20:.0f} MiB), each run in its "
        "own process. Peak memory is the process's `ru_maxrss`; the baseline process only imports "
        f"numpy, pandas, polars, duckdb and bayescred ({base:.0f} MiB). Output: {args.risks:,} per-risk rows "
        f"(n, weight, mean, within_ss); all engines agree with pandas to {worst:.0e} relative.",
        "",
        "| input | wall time (s) | peak memory (MiB) | above baseline (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for engine, label in labels.items():
        r = results[engine]
        lines.append(f"| {label} | {r['wall_s']:.2f} | {r['peak_mib']:.0f} | {r['peak_mib'] - base:.0f} |")
    lines += [
        "",
        f"DuckDB {duckdb.__version__}, pandas {pd.__version__}; load average {load:.1f} at the start (a shared "
        "machine: timings are indicative, and peak memory moved by up to ~100 MiB between repeated runs, the "
        "pandas run excepted). The DuckDB and polars-lazy runs never hold the "
        "rows in Python: validation (counts, null/NaN/inf/positivity checks, number of risks) and the two-pass "
        "group-by are executed by the engine. Command: `.venv/bin/python benchmarks/reduce_duckdb.py`.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(HERE))
        from _results import write_section

        write_section("reduce_duckdb", text)


if __name__ == "__main__":
    main()
