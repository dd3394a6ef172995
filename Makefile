# Quick start:  make run   (set up .venv, train SAC on Pendulum-v1 for a short budget)
#               make test  (set up .venv, run the tests)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where no NVIDIA GPU exists, install the CPU build of torch first: a bare `torch` requirement
# pulls a multi-GB CUDA build. TORCH_INDEX can name a wheel index, e.g.
# https://download.pytorch.org/whl/cpu on machines whose default index serves CUDA builds.
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=
RUN_ARGS ?= --steps 40000

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "spintui needs Python >= 3.10"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(BIN)/python -c 'import torch' 2>/dev/null; then \
		$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_CPU)"; fi
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/spintui train sac --env Pendulum-v1 $(RUN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'

clean:
	rm -rf $(VENV) build *.egg-info
