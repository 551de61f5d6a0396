"""Run specifications (issue 6): parsing, validation, reference tolerance arithmetic."""

from pathlib import Path

import pytest

from bayescred.errors import SpecError
from bayescred.spec import Reference, load_spec

CATALOGUE = sorted((Path(__file__).resolve().parent.parent / "models").glob("*.toml"))


def write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_minimal_spec_gets_sampler_defaults(tmp_path):
    spec = load_spec(write(tmp_path, 'name="x"\nmodel="buhlmann"\ndataset="buhlmann_table31"\n'
                                     '[arguments]\ngroup="class"\nresponse="loss"\n'))
    assert spec.sampler["chains"] == 4 and spec.eb_method == "REML" and spec.references == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ('model="buhlmann"\ndataset="d"\n[arguments]\n', "missing required key 'name'"),
        ('name="x"\nmodel="nope"\ndataset="d"\n[arguments]\n', "not one of"),
        ('name="x"\nmodel="buhlmann"\ndataset="d"\ncolour="red"\n[arguments]\n', "unknown keys"),
        ('name="x"\nmodel="buhlmann"\ndataset="d"\n[arguments]\n[sampler]\nthin=2\n', "unknown sampler"),
        ('name="x"\nmodel="buhlmann"\ndataset="d"\n[arguments]\n[[reference]]\nquantity="a"\nvalue=1\n'
         'tol="about 1"\nsource="s"\n', "tol must read"),
        ('name="x"\nmodel="buhlmann"\ndataset="d"\n[arguments]\n[[reference]]\nquantity="a"\nvalue=1\n',
         "lacks"),
        ('name="x" model=', "not valid TOML"),
    ],
)
def test_bad_specs_fail_with_the_reason(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, text))


def test_reference_tolerances():
    assert Reference("q", 100.0, "rel 1e-3", "s").holds(100.09)
    assert not Reference("q", 100.0, "rel 1e-3", "s").holds(100.11)
    assert Reference("q", 2.0, "abs 0.05", "s").holds(1.951)
    assert not Reference("q", 2.0, "abs 0.05", "s").holds(2.06)
    assert not Reference("q", 2.0, "abs 0.05", "s").holds(float("nan"))


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_catalogue_specs_parse(path):
    spec = load_spec(path)
    assert spec.references, f"{path.name} checks no published value"
    assert all(r.source for r in spec.references)
