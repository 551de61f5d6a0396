"""`bayescred fit` on the user's own data (not a catalogue dataset): a spec with a [data] table
naming a CSV or Parquet file or a DuckDB query, or the CLI's --model/--data flags; the same
classical and REML numbers whichever way the rows arrive; one-line errors with the documented
exit codes (bayescred.cli: 2 = usage, which covers a file, column or query the user named)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayescred import credibility
from bayescred.cli import EXIT_USAGE, main
from bayescred.errors import SpecError
from bayescred.runner import open_data, run_spec
from bayescred.spec import load_spec

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")


def simulate(seed=20261202, risks=10, years=5) -> pd.DataFrame:
    """A Bühlmann–Straub portfolio: policy i has loss ratio m + a_i + e_ij / sqrt(premium_ij / 100),
    a_i ~ N(0, 0.15^2), e_ij ~ N(0, 0.2^2) (premium the volume)."""
    rng = np.random.default_rng(seed)
    policy = np.repeat([f"P{i:02d}" for i in range(risks)], years)
    premium = rng.uniform(50, 400, risks * years)
    a = np.repeat(rng.normal(0, 0.15, risks), years)
    loss_ratio = 0.7 + a + rng.normal(0, 0.2, risks * years) / np.sqrt(premium / 100)
    return pd.DataFrame({"PolicyID": policy, "year": np.tile(np.arange(2019, 2019 + years), risks),
                         "LR": loss_ratio, "premium": premium})


# a finished fit: 0, or 5 when --fast's 2 x 300 draws leave R-hat above 1.01 (bayescred.cli, issue 14)
FIT_DONE = (0, 5)
MAPPED = 'columns = {policy = "PolicyID", loss_ratio = "LR"}\n'
ARGUMENTS = '[arguments]\ngroup = "policy"\nresponse = "loss_ratio"\nweight = "premium"\n'


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("mine")
    data = simulate()
    data.to_csv(path / "losses.csv", index=False)
    data.to_parquet(path / "losses.parquet")
    return path


def write_spec(folder, data_table: str, name="mine") -> str:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nmodel = "buhlmann_straub"\n[data]\n{data_table}{ARGUMENTS}')
    return str(path)


SOURCES = {
    "csv": 'file = "losses.csv"\n' + MAPPED,
    "parquet": 'file = "losses.parquet"\n' + MAPPED,
    # a relative path inside the query resolves against the spec's folder, as file = does
    "sql": "sql = \"select PolicyID, LR, premium from read_parquet('losses.parquet') where year >= 2019\"\n" + MAPPED,
}


@pytest.fixture(scope="module")
def runs(folder):
    return {kind: run_spec(write_spec(folder, table, kind), fast=True, progress=lambda _: None)
            for kind, table in SOURCES.items()}


def test_parquet_and_sql_stay_lazy_for_the_engine(folder):
    assert isinstance(open_data(load_spec(write_spec(folder, SOURCES["parquet"], "parquet"))), pl.LazyFrame)
    relation = open_data(load_spec(write_spec(folder, SOURCES["sql"], "sql")))
    assert isinstance(relation, duckdb.DuckDBPyRelation)
    # the classical fit reduces the relation in DuckDB and gives the CSV's numbers
    lazy = credibility.buhlmann_straub(relation, group="policy", response="loss_ratio", weight="premium")
    csv = credibility.buhlmann_straub(simulate().rename(columns={"PolicyID": "policy", "LR": "loss_ratio"}),
                                      group="policy", response="loss_ratio", weight="premium")
    for key in ("collective", "between", "within"):
        assert lazy.structure[key] == pytest.approx(csv.structure[key], rel=1e-10)


@pytest.mark.parametrize("kind", ["parquet", "sql"])
def test_parquet_and_sql_give_the_csv_numbers(runs, kind):
    csv, other = runs["csv"], runs[kind]
    assert other.spec.references == () and len(other.checks) == 0
    for key in ("collective", "between", "within"):
        assert other.classical.structure[key] == pytest.approx(csv.classical.structure[key], rel=1e-10, abs=1e-12)
    pd.testing.assert_frame_equal(other.classical.table, csv.classical.table, rtol=1e-10, check_dtype=False)
    pd.testing.assert_frame_equal(other.eb_summary.premiums, csv.eb_summary.premiums, rtol=1e-10, check_dtype=False)
    assert other.eb.sigma2 == pytest.approx(csv.eb.sigma2, rel=1e-10)


def test_user_data_is_fitted_sensibly(runs):
    """Not a stub: ten simulated policies, the classical and REML premiums between each policy's
    own mean and the collective, and 10 premiums out."""
    run = runs["csv"]
    table = run.classical.table
    assert len(table) == 10 and run.classical.structure["between"] > 0
    lo = np.minimum(table["mean"], run.classical.structure["collective"])
    hi = np.maximum(table["mean"], run.classical.structure["collective"])
    assert ((table["premium"] >= lo - 1e-12) & (table["premium"] <= hi + 1e-12)).all()
    assert len(run.eb_summary.premiums) == 10


def test_cli_flags_write_a_run_folder_that_report_reloads(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    out = tmp_path / "runs" / "mine"
    code = main(["fit", "--model", "buhlmann_straub", "--data", "losses.parquet", "--group", "PolicyID",
                 "--response", "LR", "--weight", "premium", "--out", str(out), "--fast"])
    printed = capsys.readouterr().out
    assert code in FIT_DONE and "no reference values" in printed
    assert (out / "report.html").is_file()
    reloaded = load_spec(out / "spec.toml")  # the data's folder is absolute: the report reloads it anywhere
    assert reloaded.source.file == "losses.parquet" and reloaded.arguments["group"] == "PolicyID"
    monkeypatch.chdir(tmp_path)
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "No reference values in this spec." in html and "losses.parquet" in html


def test_spec_with_file_runs_through_the_cli(folder, tmp_path, capsys):
    spec = write_spec(folder, SOURCES["csv"], "cli_csv")
    assert main(["fit", spec, "--out", str(tmp_path / "run"), "--fast"]) in FIT_DONE
    assert "no reference values" in capsys.readouterr().out


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "table, message",
    [
        ('file = "nope.parquet"\n', "spec field data.file: no such file"),
        ('file = "losses.csv"\ncolumns = {policy = "Policy", loss_ratio = "LR"}\n',
         "spec field data.columns.policy: column 'Policy' is not in losses.csv"),
        ('file = "losses.parquet"\ncolumns = {policy = "PolicyID", loss_ratio = "lr"}\n',
         "spec field data.columns.loss_ratio: column 'lr' is not in losses.parquet"),
        ("sql = \"selec * from read_parquet('losses.parquet')\"\n" + MAPPED, "spec field data.sql: DuckDB refused"),
        ("sql = \"select * from read_parquet('nope.parquet')\"\n" + MAPPED, "spec field data.sql: DuckDB refused"),
        ('file = "losses.xlsx"\n', "spec field data.file: file must end in .csv or .parquet"),
        ('file = "losses.csv"\nsql = "select 1"\n', "give exactly one of file"),
    ],
)
def test_bad_user_data_is_one_line_with_exit_2(folder, tmp_path, capsys, table, message):
    spec = write_spec(folder, table, "bad")
    assert main(["fit", spec, "--out", str(tmp_path / "run"), "--fast"]) == EXIT_USAGE
    assert message in one_line(capsys)
    assert not (tmp_path / "run" / "report.html").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "buhlmann_straub", "--data", "missing.csv", "--group", "PolicyID", "--response", "LR",
          "--weight", "premium"], "no such file"),
        (["--model", "buhlmann_straub", "--data", "losses.csv", "--group", "PolicyID", "--response", "LR",
          "--weight", "premum"], "column 'premum'"),
        (["--model", "buhlmann_straub", "--data", "losses.csv", "--group", "PolicyID", "--response", "LR"],
         "spec field arguments.weight: missing"),
        (["--model", "buhlmann_straub", "--sql", "select * from nowhere", "--group", "g", "--response", "y",
          "--weight", "w"], "spec field data.sql: DuckDB refused"),
        (["--model", "buhlmann_straub", "--group", "PolicyID"], "exactly one of --data FILE and --sql QUERY"),
        ([], "give a SPEC file, or --model"),
    ],
)
def test_bad_cli_flags_are_one_line_with_exit_2(folder, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(folder)
    assert main(["fit", *argv, "--out", str(tmp_path / "run"), "--fast"]) == EXIT_USAGE
    assert message in one_line(capsys)


def test_spec_names_one_data_source(folder):
    path = folder / "both.toml"
    path.write_text('name = "x"\nmodel = "buhlmann_straub"\ndataset = "hachemeister"\n[data]\nfile = "losses.csv"\n'
                    + ARGUMENTS)
    with pytest.raises(SpecError, match="exactly one of dataset"):
        load_spec(path)
    with pytest.raises(SpecError, match="give either a SPEC file or --model"):
        from bayescred.cli import _spec_from_options, parser

        _spec_from_options(parser().parse_args(["fit", str(path), "--model", "buhlmann_straub"]))


def test_parquet_rows_are_reduced_in_polars_not_collected(folder, monkeypatch):
    """The classical fit and the Bayesian factory collect from the Parquet scan only per-risk
    summaries (at most one row per policy), never the 50 raw rows."""
    from bayescred import models

    heights = []
    collect = pl.LazyFrame.collect

    def recorded(self, *args, **kwargs):
        out = collect(self, *args, **kwargs)
        heights.append(out.height)
        return out

    monkeypatch.setattr(pl.LazyFrame, "collect", recorded)
    scan = open_data(load_spec(write_spec(folder, SOURCES["parquet"], "parquet")))
    args = {"group": "policy", "response": "loss_ratio", "weight": "premium"}
    credibility.buhlmann_straub(scan, **args)
    models.buhlmann_straub(scan, **args)
    assert heights and max(heights) <= 10


@pytest.mark.parametrize(
    "dataset, model, args",
    [
        ("hachemeister", "hachemeister",
         {"group": "state", "time": "period", "response": "severity", "weight": "claims", "centering": "group"}),
        ("sim_poisson_gamma", "poisson_gamma", {"group": "company", "claims": "claims", "exposure": "exposure"}),
        ("venter", "buhlmann", {"group": "state", "response": "loss"}),
    ],
)
def test_other_models_from_parquet_give_the_pandas_numbers(tmp_path, dataset, model, args):
    """The classical fit on the lazy Parquet scan and the REML/ML fit on its collected model
    columns equal the fits on the pandas frame."""
    import bayescred as bc
    from bayescred import catalogue
    from bayescred.sources import rows

    frame = bc.datasets.load(dataset)
    frame.to_parquet(tmp_path / "d.parquet")
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "s"\nmodel = "{model}"\n[data]\nfile = "d.parquet"\n[arguments]\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in args.items()))
    scan = open_data(load_spec(spec))
    assert isinstance(scan, pl.LazyFrame)
    estimator = getattr(credibility, model)
    lazy, eager = estimator(scan, **args), estimator(frame, **args)
    numeric = eager.table.select_dtypes("number").columns
    pd.testing.assert_frame_equal(lazy.table[numeric], eager.table[numeric], rtol=1e-10, check_dtype=False,
                                  check_index_type=False)
    entry = catalogue.get(model)
    lazy_rows = rows(scan, entry.columns(args))
    lazy_eb = entry.eb_summary(entry.eb(lazy_rows, args), args, lazy_rows)
    eager_eb = entry.eb_summary(entry.eb(frame, args), args, frame)
    pd.testing.assert_frame_equal(lazy_eb.premiums, eager_eb.premiums, rtol=1e-10, check_dtype=False,
                                  check_index_type=False)


def test_cli_levels_and_factors_become_lists(folder):
    from bayescred.cli import _spec_from_options, parser

    spec = _spec_from_options(parser().parse_args(
        ["fit", "--model", "hierarchical", "--data", "losses.csv", "--levels", "region", "PolicyID",
         "--response", "LR", "--weight", "premium"]))
    assert spec.arguments == {"levels": ["region", "PolicyID"], "response": "LR", "weight": "premium"}
    spec = _spec_from_options(parser().parse_args(
        ["fit", "--model", "crossed", "--data", "losses.csv", "--factors", "PolicyID", "year", "--response", "LR"]))
    assert spec.arguments["factors"] == ["PolicyID", "year"] and spec.source.file == "losses.csv"


def test_cli_filter_runs_in_the_engine_as_the_sql_where(folder, tmp_path, capsys, monkeypatch):
    """--filter on the Parquet scan keeps the rows a SQL ``where`` keeps: the same classical fit."""
    monkeypatch.chdir(folder)
    flags = ["--group", "PolicyID", "--response", "LR", "--weight", "premium", "--fast"]
    assert main(["fit", "--model", "buhlmann_straub", "--data", "losses.parquet", "--filter", "year >= 2021",
                 "--out", str(tmp_path / "a"), *flags]) in FIT_DONE
    assert main(["fit", "--model", "buhlmann_straub", "--sql",
                 "select * from read_parquet('losses.parquet') where year >= 2021",
                 "--out", str(tmp_path / "b"), *flags]) in FIT_DONE
    a = pd.read_csv(tmp_path / "a" / "classical_table.csv", index_col=0)
    b = pd.read_csv(tmp_path / "b" / "classical_table.csv", index_col=0)
    full = credibility.buhlmann_straub(simulate(), group="PolicyID", response="LR", weight="premium").table
    pd.testing.assert_frame_equal(a, b, rtol=1e-10)
    assert not np.allclose(a["weight"], full["weight"].to_numpy())  # the filter did drop rows
    assert load_spec(tmp_path / "a" / "spec.toml").filter == "year >= 2021"


def test_missing_engine_is_one_line(folder, tmp_path, capsys, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_polars(name, *args, **kwargs):
        if name == "polars":
            raise ImportError("no polars here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_polars)
    spec = write_spec(folder, SOURCES["parquet"], "noengine")
    assert main(["fit", spec, "--out", str(tmp_path / "run"), "--fast"]) == EXIT_USAGE
    assert "needs the polars package" in one_line(capsys)
