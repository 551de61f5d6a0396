"""No user text is ever run as code: an AST scan of every module in bayescred/.

Fails on ``eval(...)``, ``exec(...)``, ``compile(...)``, ``__import__(...)``, text-evaluating
frame methods (``.eval(expr)``, ``.query(expr)``: the call with an argument; pytensor's
argument-less ``tensor.eval()`` computes a graph and reads no text), and unpickling
(``pickle``/``dill``/``cloudpickle``/``marshal``/``shelve`` imports, ``read_pickle``,
``allow_pickle=True``). Formulas and filters are parsed by bayescred.formula and
bayescred.filters instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bayescred"
BUILTINS = {"eval", "exec", "compile", "__import__"}
TEXT_METHODS = {"eval", "query"}
UNPICKLERS = {"pickle", "dill", "cloudpickle", "marshal", "shelve", "_pickle"}


def offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BUILTINS:
                found.append(f"line {line}: {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in TEXT_METHODS and (node.args or node.keywords):
                found.append(f"line {line}: .{func.attr}(...)")
            if isinstance(func, ast.Attribute) and func.attr in ("read_pickle", "load", "loads") and isinstance(
                func.value, ast.Name
            ) and func.value.id in UNPICKLERS | {"joblib"}:
                found.append(f"line {line}: {func.value.id}.{func.attr}()")
            if isinstance(func, ast.Attribute) and func.attr == "read_pickle":
                found.append(f"line {line}: read_pickle()")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"line {line}: allow_pickle")
        if isinstance(node, ast.Import):
            found += [f"line {line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLERS]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            found.append(f"line {line}: from {node.module} import ...")
    return found


def test_package_never_evaluates_text():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    bad = {str(p.relative_to(PACKAGE.parent)): offences(p.read_text()) for p in files}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize(
    "source",
    [
        "x = eval('1')",
        "exec(code)",
        "df.query('a > 1')",
        "frame.eval(expr)",
        "import pickle",
        "from pickle import loads",
        "pickle.load(f)",
        "pd.read_pickle(path)",
        "np.load(p, allow_pickle=True)",
        "__import__('os')",
    ],
)
def test_scan_catches(source):
    assert offences(source)


def test_scan_allows_graph_evaluation_and_other_loads():
    assert offences("shape = dist.shape.eval()\nimport json\njson.loads(s)\nnp.load(p)\nre.compile('a')") == []
