"""Exceptions and warnings of bayescred: one class per kind of problem.

Every data error names the column and the offending rows (row labels of the caller's
frame, at most a handful shown) so the user can find them. All data errors are
``ValueError`` subclasses, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

_SHOW = 5


class BayescredError(Exception):
    """Base class of every bayescred exception."""


class DataError(BayescredError, ValueError):
    """Bad input data. ``column`` and ``rows`` say where."""

    def __init__(self, message: str, column: str | None = None, rows: Sequence | None = None):
        self.column = column
        self.rows = list(rows) if rows is not None else []
        where = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:_SHOW])
            more = f" and {len(self.rows) - _SHOW} more" if len(self.rows) > _SHOW else ""
            where = f" (rows {shown}{more})"
        prefix = f"column {column!r}: " if column is not None else ""
        super().__init__(f"{prefix}{message}{where}")


class MissingColumnError(DataError, KeyError):
    """A column the model needs is not in the data."""

    __str__ = ValueError.__str__


class NotNumericError(DataError):
    """A column that must be numeric holds text, dates or objects."""


class MissingValueError(DataError):
    """A column holds missing values (NaN, None, null)."""


class NonFiniteError(DataError):
    """A numeric column holds +/-inf."""


class NonPositiveError(DataError):
    """Weights or exposures must be strictly positive."""


class NegativeValueError(DataError):
    """Counts (claims) must be non-negative."""


class NotIntegerError(DataError):
    """Counts (claims) must be whole numbers."""


class TooFewRisksError(DataError):
    """The estimator needs at least two risks (groups)."""


class TooFewPeriodsError(DataError):
    """A risk has fewer observations than the estimator needs."""


class ConstantCovariateError(DataError):
    """A regressor (e.g. time) is constant within a risk, so its slope is not identified."""


class EmptyCellError(DataError):
    """A cell of a crossed classification has no data."""


class ZeroWeightError(NonPositiveError):
    """A weight or exposure is zero (a row, or a risk's total): such a row carries no
    information, and every arm refuses it the same way (a :class:`NonPositiveError`)."""


class EmptyDataError(DataError):
    """The data has no rows."""


class DuplicateRowError(DataError):
    """The same risk and period appear twice."""


class FormulaError(BayescredError, ValueError):
    """A model formula cannot be parsed or does not fit the data."""


class RankDeficientError(BayescredError, ValueError):
    """Fixed-effect columns are linearly dependent."""


class PriorError(BayescredError, ValueError):
    """A prior specification does not fit the model (unknown name, wrong shape)."""


class SpecError(BayescredError, ValueError):
    """A run specification (TOML) is malformed."""


class DatasetNotFoundError(BayescredError, FileNotFoundError):
    """A dataset that is not shipped was asked for and its directory is not set."""


class BoundaryWarning(UserWarning):
    """An estimate sits on the boundary of the parameter space (variance 0, correlation +/-1)."""


class ConvergenceWarning(UserWarning):
    """An optimiser or sampler did not converge cleanly."""


class NoClaimsError(DataError):
    """A level of a categorical rating factor (or the whole data) has no claims, so its
    log-frequency estimate is minus infinity (the Poisson/NB maximum likelihood does not exist)."""


class NotAFrameError(DataError, TypeError):
    """The data is not a data frame of a supported engine (pandas, polars, DuckDB, Dask, ...)."""


class NestingError(DataError):
    """An inner level of a hierarchy appears under more than one outer level."""


class SummaryError(DataError):
    """Aggregated (cell-summary) input is inconsistent, e.g. within-cell df that do not match the counts."""


class UnbalancedError(DataError):
    """A balanced-design estimator (e.g. balanced Bühlmann) got risks with different numbers of periods."""


class DuplicateColumnError(DataError):
    """Two columns of the data have the same name."""


class TooManyLevelsError(DataError):
    """A random-effects term has as many levels (times effects) as observations, so it
    cannot be separated from the residual (lme4's "number of levels ... must be <
    number of observations")."""


class FilterError(SpecError):
    """A row filter (a spec's ``filter``) cannot be read or names a column the data lacks."""


class ComparabilityWarning(UserWarning):
    """Fits compared side by side whose likelihoods are on different bases (REML vs ML, or REML
    with different fixed effects), so their AIC/BIC cannot be compared."""


class ArgumentError(BayescredError, ValueError):
    """An argument outside its allowed values (a method, convention or residual type name)."""


class RunFolderError(BayescredError):
    """A run folder cannot be written (unwritable, busy with another run, not a run folder) or
    read (incomplete or damaged: its manifest does not match its files)."""


class SamplerError(BayescredError):
    """The sampler stopped with an error instead of returning draws."""


class PosteriorSizeError(ArgumentError):
    """Every risk's draws would not fit in this machine's memory; ``bc.sample(...,
    per_risk="summary")`` keeps per-risk summaries instead."""


class NewLevelError(DataError):
    """New data has a level of a grouping factor that the fit did not see (lme4's
    ``allow.new.levels = FALSE``)."""


class InvalidArgumentError(ArgumentError):
    """An override argument (a fixed variance, a tolerance, a prior parameter, an array
    passed instead of a column) is not a valid value; ``column`` names the argument."""

    def __init__(self, message: str, column: str | None = None):
        self.column = column
        self.rows = []
        super().__init__(message)


class DegenerateResponseError(DataError):
    """The response has no variation left for a model to explain: every value equal, or
    exactly fitted by the model's effects (zero residual variance, no likelihood maximum)."""


class DataSourceError(BayescredError, ValueError):
    """A spec's own data cannot be read: a missing or unreadable file, or an SQL query DuckDB refuses."""


class SamplerFallbackWarning(UserWarning):
    """``bc.sample`` used a slower sampler backend than the preferred one because the
    preferred one could not compile the model; the message names the error and the backend
    used (recorded as the posterior's attribute ``bayescred_sampler``)."""
