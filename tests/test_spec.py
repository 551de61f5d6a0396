"""Run specifications (issues 6 and 10): the typed schema, field-named errors, tolerances."""

from pathlib import Path

import pytest

from bayescred.errors import SpecError
from bayescred.spec import Reference, load_spec

CATALOGUE = sorted((Path(__file__).resolve().parent.parent / "models").glob("*.toml"))
HEAD = 'name="x"\nmodel="buhlmann"\ndataset="buhlmann_table31"\n'
ARGS = '[arguments]\ngroup="class"\nresponse="loss"\n'
REF = '[[reference]]\nquantity="classical.premium"\nrisk=1\nvalue=1\ntol="rel 1e-3"\nsource="s"\n'


def write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_minimal_spec_gets_sampler_defaults(tmp_path):
    spec = load_spec(write(tmp_path, HEAD + ARGS))
    assert spec.sampler["chains"] == 4 and spec.eb_method == "REML" and spec.references == ()
    assert spec.arguments == {"group": "class", "response": "loss"}  # defaults are not passed on


@pytest.mark.parametrize(
    "text, message",
    [
        ('model="buhlmann"\ndataset="buhlmann_table31"\n' + ARGS, "spec field name: missing"),
        (HEAD.replace('"buhlmann"', '"nope"') + ARGS, r"spec field model: unknown model 'nope'; the catalogue has buhlmann, "),
        (HEAD.replace("buhlmann_table31", "nope") + ARGS, r"spec field dataset: unknown dataset 'nope'"),
        (HEAD + 'colour="red"\n' + ARGS, "spec field colour: unknown key; allowed: arguments, data, dataset"),
        (HEAD + ARGS + "[sampler]\nthin=2\n", "spec field sampler.thin: unknown key; allowed: chains, draws"),
        (HEAD + ARGS + "[sampler]\nchains=1\n", "spec field sampler.chains: at least 2 chains"),
        (HEAD + ARGS + "[sampler]\ndraws=0\n", "spec field sampler.draws: .*greater than or equal to 1"),
        (HEAD + ARGS + "[sampler]\ntune=-1\n", "spec field sampler.tune: .*greater than or equal to 0"),
        (HEAD + ARGS + '[sampler]\ndraws="1000"\n', "spec field sampler.draws: Input should be a valid integer"),
        (HEAD + ARGS + "[sampler]\nchains=2.5\n", "spec field sampler.chains: Input should be a valid integer"),
        (HEAD + ARGS + "[sampler]\nrandom_seed=true\n", "spec field sampler.random_seed"),
        (HEAD + ARGS + "[empirical_bayes]\nmethod='MLE'\n", "spec field empirical_bayes.method"),
        (HEAD + ARGS.replace("group", "grup"), "spec field arguments.group: missing.*arguments.grup: unknown key"),
        (HEAD + ARGS + "within=-1\n", "spec field arguments.within: .*greater than or equal to 0"),
        (HEAD + ARGS + "between=nan\n", "spec field arguments.between: .*finite number"),
        (HEAD + ARGS + 'likelihood="exact"\n', "spec field arguments.likelihood"),
        (HEAD + ARGS.replace('"loss"', "3"), "spec field arguments.response: Input should be a valid string"),
        (HEAD + ARGS + REF.replace("rel 1e-3", "about 1"), r"spec field reference\[1\].tol: tol must read"),
        (HEAD + ARGS + REF.replace("rel 1e-3", "rel -1"), r"reference\[1\].tol: .*positive number, got 'rel -1'"),
        (HEAD + ARGS + REF.replace("rel 1e-3", "abs inf"), r"reference\[1\].tol"),
        (HEAD + ARGS + REF.replace("value=1", "value=nan"), r"reference\[1\].value: .*finite"),
        (HEAD + ARGS + REF.replace('source="s"\n', ""), r"reference\[1\].source: missing"),
        (HEAD + ARGS + "[priors]\nbetween='wide'\n", "spec field priors.between: a prior in a spec is 'flat'"),
        ('name="x" model=', "not valid TOML"),
    ],
)
def test_bad_specs_fail_with_the_field(tmp_path, text, message):
    with pytest.raises(SpecError, match=message) as info:
        load_spec(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_every_model_has_its_own_argument_schema(tmp_path):
    text = 'name="x"\nmodel="crossed"\ndataset="credit_insurance"\n[arguments]\nfactors=["a"]\nresponse="y"\n'
    with pytest.raises(SpecError, match="spec field arguments.factors: .*at least 2 items"):
        load_spec(write(tmp_path, text))
    text = text.replace('["a"]', '["a", "b"]') + 'group="g"\n'
    with pytest.raises(SpecError, match="arguments.group: unknown key; allowed: between, factors"):
        load_spec(write(tmp_path, text))


def test_reference_tolerances():
    assert Reference("q", 100.0, "rel 1e-3", "s").holds(100.09)
    assert not Reference("q", 100.0, "rel 1e-3", "s").holds(100.11)
    assert Reference("q", 2.0, "abs 0.05", "s").holds(1.951)
    assert not Reference("q", 2.0, "abs 0.05", "s").holds(2.06)
    assert not Reference("q", 2.0, "abs 0.05", "s").holds(float("nan"))
    with pytest.raises(SpecError, match="positive number"):
        Reference("q", 2.0, "rel -1", "s")


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_catalogue_specs_parse(path):
    spec = load_spec(path)
    assert spec.references, f"{path.name} checks no published value"
    assert all(r.source for r in spec.references)
