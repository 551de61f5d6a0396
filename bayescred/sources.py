"""The spec's data: a catalogue dataset or the user's own file or query, filtered, and the
model's rows as pandas where an arm needs each row (the runner fits them, the report
summarises them)."""

from __future__ import annotations

import narwhals.stable.v2 as nw
import pandas as pd

from . import catalogue, datasets, filters
from .errors import DataSourceError, MissingColumnError
from .spec import Spec

__all__ = ["open_data", "load_data", "rows"]


def load_data(spec: Spec, data_dir=None) -> pd.DataFrame:
    """The spec's data with its ``filter`` applied, as pandas rows (a lazy source: the model's
    columns only, see :func:`rows`)."""
    return rows(open_data(spec, data_dir), catalogue.get(spec.model).columns(spec.arguments))


def open_data(spec: Spec, data_dir=None):
    """The spec's data with its ``filter`` applied: a catalogue dataset (bundled, or real from
    ``data_dir``) as pandas, or the user's ``[data]``: a CSV file (pandas), a Parquet file (a
    lazy polars scan) or a DuckDB query (a DuckDB relation), its columns renamed as mapped.
    Lazy inputs stay lazy: the filter and the per-risk sums run in the engine."""
    if spec.source is None:
        data = datasets.load(spec.dataset, data_dir=data_dir)
    else:
        data = _user_data(spec)
    if spec.filter:
        data = filters.apply(data, spec.filter)
    return data


def _user_data(spec: Spec):
    source, folder = spec.source, spec.data_directory()
    if source.file is not None:
        path = folder / source.file
        if not path.is_file():
            raise DataSourceError(f"spec field data.file: no such file {str(path)!r}")
        try:
            if path.suffix.lower() == ".csv":
                data = pd.read_csv(path)
            else:
                pl = _engine("polars", "reading a Parquet file")
                data = pl.scan_parquet(path)
                data.collect_schema()  # a damaged file fails here, not in the middle of a fit
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataSourceError(f"spec field data.file: cannot read {str(path)!r}: {_first_line(exc)}") from exc
        except Exception as exc:  # polars' own errors (ComputeError, ...) share no base class with these
            if type(exc).__module__.split(".")[0] != "polars":
                raise
            raise DataSourceError(f"spec field data.file: cannot read {str(path)!r}: {_first_line(exc)}") from exc
        where = source.file
    else:
        duckdb = _engine("duckdb", "an SQL query")
        con = duckdb.connect()
        con.execute("set file_search_path = ?", [str(folder)])  # relative paths in the query: the spec's folder
        try:
            data = con.sql(source.sql)
        except duckdb.Error as exc:
            raise DataSourceError(f"spec field data.sql: DuckDB refused the query: {_first_line(exc)}") from exc
        if data is None:
            raise DataSourceError("spec field data.sql: the query returns no table (write a select)")
        where = "the query"
    if source.columns:
        names = nw.from_native(data).collect_schema().names()
        for new, old in source.columns.items():
            if old not in names:
                raise MissingColumnError(f"spec field data.columns.{new}: column {old!r} is not in {where}; "
                                         f"it has {', '.join(map(str, names))}")
        data = nw.from_native(data).rename({old: new for new, old in source.columns.items()}).to_native()
    return data


def _engine(name: str, what: str):
    """The optional engine package ``name`` (``pip install bayescred[engines]``), imported on use."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise DataSourceError(f"spec field data: {what} needs the {name} package "
                              "(pip install 'bayescred[engines]')") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def rows(data, columns: list[str]) -> pd.DataFrame:
    """The model's ``columns`` of ``data`` as pandas rows, for the arms that need each row: the
    REML fit (``bc.lmm`` fits the observations, not cell statistics) and the report's data
    summary. A pandas frame is returned as is; a lazy one is collected with those columns only."""
    if isinstance(data, pd.DataFrame):
        return data
    frame = nw.from_native(data)
    cols = [c for c in columns if c in frame.collect_schema().names()]
    frame = frame.select(cols)
    if isinstance(frame, nw.LazyFrame):
        frame = frame.collect()
    return frame.to_pandas()
