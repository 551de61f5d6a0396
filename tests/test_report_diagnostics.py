"""The report's sampler diagnostics on a posterior with entries fixed by the model's structure
(the zero covariances of Hachemeister's diagonal between matrix): no numpy or ArviZ warning on
every run, NaN (undefined) R-hat and ESS for the fixed entries, numbers for the others."""

import warnings

import numpy as np
import pytest
import xarray as xr

from bayescred.report import diagnostics


def _tree():
    rng = np.random.default_rng(0)
    chains, draws = 4, 200
    between = np.zeros((chains, draws, 2, 2))
    between[..., 0, 0] = rng.gamma(5, 1, (chains, draws))
    between[..., 1, 1] = rng.gamma(5, 1, (chains, draws))
    post = xr.Dataset({"collective": (("chain", "draw"), rng.normal(size=(chains, draws))),
                       "between": (("chain", "draw", "coef", "coef_"), between)},
                      coords={"chain": np.arange(chains), "draw": np.arange(draws),
                              "coef": ["intercept", "slope"], "coef_": ["intercept", "slope"]})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), bool)),
                        "energy": (("chain", "draw"), rng.normal(size=(chains, draws)))},
                       coords={"chain": np.arange(chains), "draw": np.arange(draws)})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def test_structural_zeros_raise_no_warning_and_are_undefined():
    tree = _tree()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = diagnostics.summary(tree, ["collective", "between"])
        p = diagnostics.rank_p_values(tree, ["collective", "between"])
        diagnostics.trace_figure(tree, ["collective", "between"])
    fixed = [i for i in table.index if "intercept, slope" in i or "slope, intercept" in i]
    assert len(fixed) == 2
    assert table.loc[fixed, "r_hat"].isna().all()
    varying = table.drop(index=fixed)
    assert np.isfinite(varying["r_hat"]).all() and (varying["ess_bulk"] > 100).all()
    assert np.isfinite(p["collective"])


@pytest.mark.parametrize("dim", ["a", "b", "risk"])
@pytest.mark.parametrize("risks", [5, 12, 300])
def test_predictive_check_pools_the_risks_into_one_panel(dim, risks):
    """The report of a 300-risk portfolio whose grouping column is named "a" crashed:
    arviz-plots laid out 300² panels (and fails outright on "b")."""
    rng = np.random.default_rng(risks)
    pp = xr.Dataset({"y": (("chain", "draw", dim), rng.normal(size=(2, 50, risks)))},
                    coords={"chain": [0, 1], "draw": np.arange(50), dim: np.arange(risks)})
    tree = xr.DataTree.from_dict({"posterior_predictive": pp, "observed_data": pp.isel(chain=0, draw=0, drop=True)})
    fig = diagnostics.ppc_figure(tree, "y")
    assert len([ax for ax in fig.axes if ax.has_data()]) == 1
