"""bc.compare pairs the risks of a nested (hierarchical) fit with the posterior's, whichever
way the posterior labels them: "region:policy", or the policy alone when policies are unique
(the hierarchical factory's choice). Found by running `bayescred fit --model hierarchical`
on a user's CSV: the EB premiums were labelled "R0:P00", the posterior's "P00", and the run
stopped with "no risk of the EB fit matches the posterior's risks"."""

import numpy as np
import pandas as pd
import pytest

import bayescred as bc
from bayescred.compare import by_risk


def test_nested_risks_fall_back_to_unique_inner_labels():
    eb = pd.DataFrame({"premium": [1.0, 2.0, 3.0]},
                      index=pd.MultiIndex.from_tuples([("R0", "P00"), ("R0", "P01"), ("R1", "P10")],
                                                      names=["region", "policy"]))
    assert by_risk(eb, pd.Index(["P10", "P00"]))["premium"].tolist() == [3.0, 1.0]
    assert by_risk(eb, pd.Index(["R1:P10", "R0:P01"]))["premium"].tolist() == [3.0, 2.0]


def test_inner_labels_repeated_across_groups_are_not_guessed():
    eb = pd.DataFrame({"premium": [1.0, 2.0]},
                      index=pd.MultiIndex.from_tuples([("R0", "1"), ("R1", "1")], names=["region", "policy"]))
    assert by_risk(eb, pd.Index(["1"]))["premium"].isna().all()


@pytest.mark.slow
def test_hierarchical_fit_compares_end_to_end():
    rng = np.random.default_rng(7)
    rows = [dict(region=f"R{r}", policy=f"P{r}{p}", y=100 + 3 * r + p + rng.normal(0, 5), w=rng.uniform(1, 2))
            for r in range(4) for p in range(5) for _ in range(4)]
    data = pd.DataFrame(rows)
    classical = bc.credibility.hierarchical(data, levels=["region", "policy"], response="y", weight="w")
    eb = bc.lmm("y ~ 1 + (1 | region) + (1 | region:policy)", data, weights="w")  # any EB fit: bc.compare summarises it
    posterior = bc.sample(bc.models.hierarchical(data, levels=["region", "policy"], response="y", weight="w"),
                          draws=200, tune=200, chains=2, random_seed=3)
    table = bc.compare(eb, posterior, classical=classical).premiums
    assert len(table) == 20 and table["eblup"].notna().all() and table["classical"].notna().all()
