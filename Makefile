# The two commands of the README: `make run` and `make test`. Both set everything up first.
PY := .venv/bin/python
OUT ?= runs/hachemeister

.PHONY: setup run test test-fast test-py313 bench docs notebooks clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(PY) -m bayescred fit models/hachemeister.toml --out $(OUT)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not r"

# the second supported Python: the fast tests in their own environment (the notebooks run under 3.12)
test-py313:
	@VENV=.venv313 PYTHON=python3.13 bash scripts/bootstrap.sh
	.venv313/bin/python -m pytest -q -m "not slow and not r" --ignore=tests/test_notebooks.py

# the peer benchmarks, one after the other (each writes its section of benchmarks/RESULTS.md)
bench: setup
	for f in benchmarks/bench_*.py; do PYTHONPATH=. $(PY) $$f || exit 1; done

notebooks: setup
	$(PY) notebooks/_build.py

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf runs site .pytest_cache
