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

# the second supported Python, in its own environment: one fast test file per subsystem (imports,
# formula, spec, catalogue, classical, REML, likelihoods, GLM, GLMM, sampler backends, data door,
# run folders, filters, no-eval, CLI), about 2 minutes; the whole suite runs under 3.12
PY313_TESTS = tests/test_imports.py tests/test_formula.py tests/test_spec.py tests/test_catalogue.py \
	tests/test_credibility_reference.py tests/test_lmm_reference.py tests/test_likelihood.py tests/test_glm.py \
	tests/test_glmm.py tests/test_sampling_backends.py tests/test_portfolio.py tests/test_runfolder.py \
	tests/test_filters.py tests/test_no_eval.py tests/test_cli_errors.py
test-py313:
	@VENV=.venv313 PYTHON=python3.13 bash scripts/bootstrap.sh
	.venv313/bin/python -m pytest -q -m "not slow and not r" $(PY313_TESTS)

# the peer benchmarks, one after the other (each writes its section of benchmarks/RESULTS.md)
bench: setup
	for f in benchmarks/bench_*.py; do PYTHONPATH=. $(PY) $$f || exit 1; done

notebooks: setup
	$(PY) notebooks/_build.py

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf runs site .pytest_cache
