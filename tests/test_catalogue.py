"""The conformance battery: every catalogue model, checked the same way (scikit-learn's
``parametrize_with_checks`` is the example).

On a simulated portfolio of each model (``Entry.example``) the three arms (classical,
empirical Bayes, the PyMC factory) must see the same risks with the same labels, report the
same variance components under the same names and units, and fit the same covariance
structure; the entry's argument routing must match the functions it routes to. All of it is
asserted from the fitted objects, not from the spec.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

from bayescred import catalogue
from bayescred.catalogue._entry import _load
from bayescred.compare import _posterior_components, risk_labels

ENTRIES = catalogue.entries()
IDS = [e.name for e in ENTRIES]


@pytest.fixture(scope="module", params=ENTRIES, ids=IDS)
def fitted(request):
    """The three arms fitted to the entry's simulated portfolio."""
    entry = request.param
    data, args = entry.example(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classical = entry.classical(data, args)
        eb = entry.eb(data, args)
        summary = entry.eb_summary(eb, args, data)
        model = entry.bayes(data, args)
    return entry, data, args, classical, eb, summary, model


# --------------------------------------------------------------------------- the definition
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_argument_is_read_by_an_arm_that_accepts_it(entry):
    fields = set(entry.Arguments.model_fields)
    read = set().union(*entry.reads.values())
    assert read == fields, f"{entry.name}: arguments no arm reads {fields - read}, read but not in the schema {read - fields}"
    functions = {"classical": _load(entry.classical_function), "bayes": _load(entry.factory_function)}
    for arm, function in functions.items():
        params = set(inspect.signature(function).parameters)
        assert set(entry.reads[arm]) <= params, f"{entry.name}: {arm} does not take {set(entry.reads[arm]) - params}"
    assert set(entry.column_keys) <= fields
    assert set(entry.reads) == set(catalogue.ARMS)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_spec_schema_is_the_entrys(entry):
    from bayescred.spec import spec_from_dict

    _, args = entry.example()
    spec = spec_from_dict({"name": "x", "model": entry.name, "dataset": "hachemeister", "arguments": args}, "t.toml")
    assert spec.arguments == args


def test_an_unknown_model_names_the_catalogue():
    from bayescred.errors import SpecError

    with pytest.raises(SpecError, match="the catalogue has buhlmann"):
        catalogue.get("no_such_model")


# --------------------------------------------------------------------------- the three arms agree
def _risks(index) -> list[str]:
    return sorted(map(str, risk_labels(pd.Index(index) if not isinstance(index, pd.MultiIndex) else index)))


def test_three_arms_see_the_same_risks_and_labels(fitted):
    entry, data, args, classical, eb, summary, model = fitted
    premium_dim = model.named_vars_to_dims["premium"][-1] if "premium" in model.named_vars_to_dims else None
    bayes = list(map(str, model.coords[premium_dim])) if premium_dim else None
    assert _risks(classical.table.index) == _risks(summary.premiums.index)
    if bayes is not None:
        assert sorted(bayes) == _risks(summary.premiums.index)
    assert len(summary.premiums) == data[entry.risks(args)].drop_duplicates().shape[0]


def _model_components(model, entry, args) -> set[str]:
    """The component names a posterior of ``model`` will carry (read from the model, unsampled)."""
    import xarray as xr

    variables = {}
    for name in ("between", "within", "lam", "dispersion"):
        if name in model.named_vars:
            dims = model.named_vars_to_dims.get(name, ())
            shape = tuple(len(model.coords[d]) for d in dims)
            variables[name] = xr.DataArray(np.zeros((1, 2, *shape)), dims=("chain", "draw", *dims),
                                           coords={d: list(model.coords[d]) for d in dims})
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(variables)})
    return set(_posterior_components(tree, entry.posterior_names(args)))


def test_three_arms_report_the_same_components_by_name(fitted):
    entry, data, args, classical, eb, summary, model = fitted
    names = set(entry.components(args))
    assert set(summary.components.index) == names
    assert list(summary.components["unit"]) == [entry.components(args)[n] for n in summary.components.index]
    assert set(entry.classical_components(classical, args)) == names
    assert names <= _model_components(model, entry, args)


def _correlations_classical(classical) -> int:
    between = classical.structure.get("between")
    if isinstance(between, pd.DataFrame):
        values = between.to_numpy(float)
        return int(np.count_nonzero(values[np.triu_indices_from(values, 1)]))
    return 0


def _correlations_eb(eb) -> int:
    vc = getattr(eb, "varcorr", None)
    return 0 if vc is None else int(vc["var2"].notna().sum())


def _correlations_bayes(model) -> int:
    return sum(1 for rv in model.free_RVs if "corr" in rv.name)


def test_three_arms_fit_the_same_covariance_structure(fitted):
    entry, data, args, classical, eb, summary, model = fitted
    correlated = (_correlations_classical(classical) > 0, _correlations_eb(eb) > 0, _correlations_bayes(model) > 0)
    assert len(set(correlated)) == 1, f"{entry.name}: correlated in (classical, EB, Bayes) = {correlated}"
    assert entry.structure(args)


def test_eb_summary_is_complete(fitted):
    entry, data, args, classical, eb, summary, model = fitted
    prem = summary.premiums
    assert {"premium", "cond_sd", "pev_sd", "mse_sd"} <= set(prem.columns)
    assert np.isfinite(prem["premium"]).all() and (prem[["cond_sd", "pev_sd"]] >= 0).all().all()
    assert (prem["pev_sd"] >= prem["cond_sd"] - 1e-9).all()


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "structure" in e.Arguments.model_fields],
                         ids=lambda e: e.name)
@pytest.mark.parametrize("structure", ["diagonal", "correlated"])
def test_every_structure_option_is_fitted_alike_by_the_three_arms(entry, structure):
    """A named structure option (Hachemeister's ``structure``) reaches all three arms."""
    data, args = entry.example(seed=3)
    args = dict(args, structure=structure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = (entry.classical(data, args), entry.eb(data, args), entry.bayes(data, args))
    correlated = (_correlations_classical(fits[0]) > 0, _correlations_eb(fits[1]) > 0, _correlations_bayes(fits[2]) > 0)
    assert correlated == ((structure == "correlated"),) * 3, correlated


# --------------------------------------------------------------------------- one door for bad rows
BAD_ROWS = [3, 7]
DEFECTS = {  # defect -> (the column's role, the value put in rows BAD_ROWS, message before the rows)
    "zero weight": ("weight", 0.0, "must be strictly positive, found zeros"),
    "negative weight": ("weight", -1.0, "must be strictly positive"),
    "missing weight": ("weight", np.nan, "has missing values"),
    "infinite weight": ("weight", np.inf, "has infinite values"),
    "missing response": ("response", np.nan, "has missing values"),
    "infinite response": ("response", -np.inf, "has infinite values"),
    "missing risk label": ("label", None, "grouping column has missing values"),
}


def _roles(entry, data, args):
    """The weight (claim counts of the severity model, exposure of the frequency model), the
    response and the first risk column of an entry's example; crossed gets a weight column."""
    if "weight" in entry.column_keys and "weight" not in args:
        data, args = data.assign(w=1.0), dict(args, weight="w")
    weight = next((args[k] for k in ("weight", "exposure") if k in args), args.get("claims"))
    response = next(args[k] for k in ("response", "severity", "claims") if k in args and args[k] != weight)
    return data, args, {"weight": weight, "response": response, "label": entry.risks(args)[0]}


@pytest.mark.parametrize("entry, defect", [
    pytest.param(e, d, id=f"{e.name}-{d}") for e in ENTRIES for d in DEFECTS
    if DEFECTS[d][0] != "weight" or {"weight", "exposure", "claims"} & set(e.column_keys)])
def test_bad_rows_get_the_same_error_in_every_arm(entry, defect):
    """Zero, negative, missing and infinite weights, a missing or infinite response and a
    missing risk label: one exception class and one message (naming the column and the rows)
    whichever arm is fitted (the one door, bayescred.portfolio.validate)."""
    from bayescred.errors import DataError

    data, args, roles = _roles(entry, *entry.example(seed=3))
    role, value, message = DEFECTS[defect]
    column = roles[role]
    data = data.astype({column: float if value is not None else object})
    data.loc[data.index[BAD_ROWS], column] = value
    raised = []
    for arm in (entry.classical, entry.eb, entry.bayes):
        with warnings.catch_warnings(), pytest.raises(DataError) as info:
            warnings.simplefilter("ignore")
            arm(data, args)
        raised.append((type(info.value), str(info.value)))
    assert len(set(raised)) == 1, raised
    text = raised[0][1]
    assert message in text and column in text, text
    assert all(str(data.index[i]) in text for i in BAD_ROWS), text
