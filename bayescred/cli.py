"""The ``bayescred`` command.

    bayescred fit SPEC [--out DIR] [--fast] [--data-dir DIR]   classical + REML + Bayes + report
    bayescred fit --model M --data FILE|--sql QUERY --group COL --response COL [--weight COL] ...
                                                                the same on your own CSV/Parquet/DuckDB data
    bayescred report RUN [--out HTML]                           rebuild a saved run's HTML report
    bayescred datasets                                          what bc.datasets.load accepts
    bayescred lmm FORMULA --data CSV [--weights COL] [--offset COL] [--ml] [--factor COL] [--base COL=LEVEL] --json
    bayescred glm FORMULA --data CSV --family F [--link L] [--weights COL] [--offset COL] [--json]
    bayescred glmm FORMULA --data CSV --family F [--weights COL] [--offset COL] [--nagq N] --json
    bayescred --version;  bayescred --debug COMMAND ...         (--debug: show tracebacks)

A mistake is reported in one line on stderr, without a traceback (``--debug`` shows it), and
the exit status says what kind it was:

    0  done (fit: every reference value reproduced)
    1  internal error: a bug in bayescred (please report it with the --debug output)
    2  usage error: the command line, the spec, a formula, a prior, or a column it names
    3  data error: the data cannot be fitted (missing values, negative weights, too few risks, ...)
    4  fit: one or more published reference values were missed (listed on stdout)
    5  the sampler failed, or fit: it had problems (divergences, R-hat > 1.01; named on the last line)
    6  run folder refused: unwritable, locked by another run, not a run folder, incomplete or damaged
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from . import errors
from .errors import BayescredError, FormulaError
from . import catalogue

EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA, EXIT_MISSED, EXIT_SAMPLER, EXIT_RUN_FOLDER = 1, 2, 3, 4, 5, 6


def exit_code(exc: BaseException) -> int:
    """The documented exit status of an exception (see the module docstring)."""
    if isinstance(exc, errors.RunFolderError):
        return EXIT_RUN_FOLDER
    if isinstance(exc, errors.SamplerError):
        return EXIT_SAMPLER
    if isinstance(exc, errors.MissingColumnError):  # a column the user named: a usage error
        return EXIT_USAGE
    if isinstance(exc, (errors.DataError, errors.DatasetNotFoundError, errors.RankDeficientError)):
        return EXIT_DATA
    if isinstance(exc, (BayescredError, OSError)):  # spec, formula, prior; a file the user named
        return EXIT_USAGE
    return EXIT_INTERNAL


# the options that name the columns of the user's data, as the spec's [arguments] keys
def _column_options() -> dict[str, bool]:
    """The column arguments of every catalogue model: name -> whether it takes several columns."""
    options = {}
    for entry in catalogue.entries():
        for key in entry.column_keys:
            annotation = str(entry.Arguments.model_fields[key].annotation)
            options.setdefault(key, "list" in annotation)
    return options


_COLUMN_OPTIONS = tuple(_column_options())


def _spec_from_options(args):
    """The typed spec that ``fit --model ... --data ...`` describes (checked as a spec file is)."""
    from .spec import spec_from_dict

    if args.spec is not None:
        raise errors.SpecError("give either a SPEC file or --model with --data/--sql, not both")
    if args.model is None or (args.data is None) == (args.sql is None):
        raise errors.SpecError("give a SPEC file, or --model with exactly one of --data FILE and --sql QUERY")
    source = {"file": args.data} if args.data is not None else {"sql": args.sql}
    arguments = {key: getattr(args, key) for key in _COLUMN_OPTIONS if getattr(args, key) is not None}
    raw = {"name": args.name or args.model, "model": args.model,
           "data": {**source, "directory": str(Path.cwd().resolve())}, "arguments": arguments}
    if args.filter is not None:
        raw["filter"] = args.filter
    return spec_from_dict(raw, "command line")


def _fit(args) -> int:
    from .runner import run_spec

    user = any(getattr(args, key) is not None
               for key in ("model", "data", "sql", "name", "filter", *_COLUMN_OPTIONS))
    spec = _spec_from_options(args) if user or args.spec is None else args.spec
    default_name = spec.name if user else Path(args.spec).stem
    out = Path(args.out) if args.out else Path("runs") / default_name
    run = run_spec(spec, out=out, fast=args.fast or None, data_dir=args.data_dir,
                   progress=lambda msg: print(msg, flush=True))
    print(f"report: {out / 'report.html'}")
    return _fit_status(run)


def _fit_status(run) -> int:
    """Exit status of a finished fit: 4 when a reference value was missed, else 5 when the
    sampler had problems (divergences, R-hat above 1.01), which the last line then names."""
    from .report import sampler_problems

    problems = sampler_problems(run.posterior)
    if problems:
        print("SAMPLER PROBLEMS (the posterior is not trustworthy; see the report's diagnostics): "
              + "; ".join(problems), flush=True)
    if not run.ok:
        return EXIT_MISSED
    return EXIT_SAMPLER if problems else 0


def _report(args) -> int:
    from .report import report

    print(report(args.run, out=args.out))
    return 0


def _datasets(args) -> int:
    from . import datasets

    bundled = set(datasets.names("bundled"))
    for name in datasets.names():
        print(f"{name:20s} {'bundled' if name in bundled else 'external (data_dir / BAYESCRED_DATA)'}")
    return 0


def _lmm(args) -> int:
    import pandas as pd

    from .lmm import lmm

    data = pd.read_csv(args.data)
    base_levels = {}
    for item in args.base or []:
        column, sep, level = item.partition("=")
        if not sep or not column:
            raise FormulaError(f"--base takes COLUMN=LEVEL, got {item!r}")
        base_levels[column] = level
    fit = lmm(args.formula, data, weights=args.weights, offset=args.offset, method="ML" if args.ml else "REML",
              factors=args.factor or (), base_levels=base_levels)
    if args.json:
        print(json.dumps(fit.to_dict(), indent=1))
    else:
        print(fit)
        print(fit.varcorr.to_string(index=False))
    return 0


def _glmm(args) -> int:
    import pandas as pd

    from .glmm import glmm

    data = pd.read_csv(args.data)
    fit = glmm(args.formula, data, family=args.family, weights=args.weights, offset=args.offset, nAGQ=args.nagq)
    if args.json:
        print(json.dumps(fit.to_dict(), indent=1))
    else:
        print(fit.summary())
    return 0


def _glm(args) -> int:
    import pandas as pd

    from .glm import glm

    data = pd.read_csv(args.data)
    dispersion = args.dispersion
    try:
        dispersion = float(dispersion)
    except (TypeError, ValueError):
        pass
    fit = glm(args.formula, data, family=args.family, link=args.link, weights=args.weights, offset=args.offset,
              var_power=args.var_power, theta=args.theta, dispersion=dispersion)
    print(json.dumps(fit.to_dict(), indent=1) if args.json else fit.summary())
    return 0


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="bayescred", description=__doc__.split("\n\n")[0],
                                epilog="exit status:\n" + __doc__.split("exit status says what kind it was:\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bayescred {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="run a spec, or a model on your own data: classical + REML + Bayes + report")
    f.add_argument("spec", nargs="?", help="a TOML run spec, e.g. models/hachemeister.toml (or use --model)")
    own = f.add_argument_group("your own data, instead of a SPEC (column names as in the file)")
    own.add_argument("--model", choices=catalogue.names(), help="the credibility model")
    own.add_argument("--data", metavar="FILE", help="a .csv or .parquet file")
    own.add_argument("--sql", metavar="QUERY", help="a DuckDB query, e.g. \"select * from read_parquet('x.parquet')\"")
    own.add_argument("--name", help="the run's name (default: the model)")
    own.add_argument("--filter", help="rows to keep, e.g. \"year >= 2020 and region != 'X'\" (bayescred.filters)")
    for key, several in _column_options().items():  # the column arguments of the catalogue's models
        own.add_argument(f"--{key}", metavar="COL", nargs="+" if several else None,
                         help=f"the {key} columns (as the model's argument)" if several else f"the {key} column")
    f.add_argument("--out", help="output folder (default runs/<spec name>)")
    f.add_argument("--fast", action="store_true", help="short chains (2 x 300 draws), for smoke runs")
    f.add_argument("--data-dir", help="folder of the real datasets (default $BAYESCRED_DATA or ../shared/data)")
    f.set_defaults(func=_fit)

    r = sub.add_parser("report", help="rebuild the HTML report of a saved run folder")
    r.add_argument("run", help="a folder written by `bayescred fit`")
    r.add_argument("--out", help="HTML path (default RUN/report.html)")
    r.set_defaults(func=_report)

    d = sub.add_parser("datasets", help="list the datasets bc.datasets.load accepts")
    d.set_defaults(func=_datasets)

    m = sub.add_parser("lmm", help="fit a linear mixed model (lme4 formula syntax) by REML or ML")
    m.add_argument("formula", help="e.g. 'y ~ 1 + (1 | group)'")
    m.add_argument("--data", required=True, help="CSV file")
    m.add_argument("--weights", help="column of precision weights (residual variance sigma^2 / w)")
    m.add_argument("--offset", help="column of offsets")
    m.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    m.add_argument("--json", action="store_true", help="print LMMFit.to_dict() as JSON")
    m.add_argument("--factor", action="append", metavar="COL",
                   help="treat this numeric column as categorical, as factor(COL) (repeatable)")
    m.add_argument("--base", action="append", metavar="COL=LEVEL",
                   help="reference level of a factor, as R's relevel (repeatable; makes COL a factor)")
    m.set_defaults(func=_lmm)

    g = sub.add_parser("glmm", help="fit a generalised linear mixed model (lme4 glmer syntax) by Laplace or AGQ")
    g.add_argument("formula", help="e.g. 'claims ~ zone + (1 | company)' or 'cbind(s, f) ~ x + (1 | g)'")
    g.add_argument("--data", required=True, help="CSV file")
    g.add_argument("--family", required=True, choices=["poisson", "binomial", "Gamma", "negative_binomial"],
                   help="response family (canonical link; log link for Gamma)")
    g.add_argument("--weights", help="column of prior weights (binomial: number of trials)")
    g.add_argument("--offset", help="column of offsets (e.g. log exposure)")
    g.add_argument("--nagq", type=int, default=1, help="1 = Laplace (default), >1 adaptive Gauss-Hermite nodes")
    g.add_argument("--json", action="store_true", help="print GLMMFit.to_dict() as JSON")
    g.set_defaults(func=_glmm)

    g = sub.add_parser("glm", help="fit a generalised linear model as R's glm / MASS::glm.nb")
    g.add_argument("formula", help="e.g. 'claims ~ zone + offset(log(exposure))' or 'cbind(s, f) ~ x'")
    g.add_argument("--data", required=True, help="CSV file")
    g.add_argument("--family", default="gaussian",
                   help="gaussian, poisson, quasipoisson, binomial, quasibinomial, Gamma, inverse.gaussian, "
                        "negbin, tweedie, ztpoisson (default gaussian)")
    g.add_argument("--link", help="link function (default: the family's canonical link; log for negbin, tweedie)")
    g.add_argument("--weights", help="column of prior weights")
    g.add_argument("--offset", help="column of offsets (added to offset() terms of the formula)")
    g.add_argument("--var-power", type=float, help="Tweedie variance power (profiled when omitted)")
    g.add_argument("--theta", type=float, help="negative binomial theta (estimated when omitted)")
    g.add_argument("--dispersion", help="'pearson' (default), 'deviance', a number (fixed), or a formula '~ x' "
                                        "(double GLM)")
    g.add_argument("--json", action="store_true", help="print GLMFit.to_dict() as JSON")
    g.set_defaults(func=_glm)
    return p


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return text


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"bayescred {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        code = exit_code(exc)
        if args.debug:
            traceback.print_exc()
        if code == EXIT_INTERNAL:
            print(f"bayescred {args.command}: internal error ({type(exc).__name__}): {_one_line(exc)}; "
                  "this is a bug: please report it with the output of `bayescred --debug ...`", file=sys.stderr)
        else:
            print(f"bayescred {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
