# mlpfctl developer and user entry points. Everything is idempotent.
#   make demo   - the main job: set up, generate the embedded dataset, tune/train on it, show the result
#   make test   - set up, then ruff + mypy (strict) + pytest (the whole suite)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= physics,onnx,postgres,bench,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile 2>/dev/null | md5sum | cut -c1-12)

.PHONY: venv test lint typecheck pytest demo bench clean services

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@# Without an NVIDIA/AMD GPU install torch==2.13.0 before the project, so that the project's
	@# range never pulls a multi-GB CUDA build. Where that CPU build comes from (a wheel directory,
	@# PyTorch's CPU index) is pip's configuration (pip.conf / PIP_EXTRA_INDEX_URL), not this file.
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! command -v rocm-smi >/dev/null 2>&1; then \
	  $(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

services: venv
	@bash scripts/test-services.sh

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test: services lint typecheck pytest

demo: venv
	@bash scripts/demo.sh

bench: venv
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
