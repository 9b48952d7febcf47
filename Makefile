# tfgpu-provision: one entry point for setup, tests, lint, demo and benchmarks.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Debian packages the project needs: debootstrap builds the sandbox lab's root filesystem;
# chromium renders the HTML report in its test; shellcheck checks tests/gpu/device_check.sh;
# gnupg signs the fake NVIDIA apt repository fixture; apt-cacher-ng is the controller's apt cache.
SYSTEM_PACKAGES := debootstrap chromium shellcheck gnupg apt-cacher-ng
PYTEST_ARGS ?=

.PHONY: help setup system-deps lint test test-unit test-full demo bench lock clean ee

help:
	@echo "make demo       set up, then provision and verify a 2-node sandbox lab (the main job), with its report"
	@echo "make test       set up, lint, run the default test tier (what CI runs)"
	@echo "make test-full  the default tier plus the slow tests"
	@echo "make lint       ruff, mypy, yamllint, ansible-lint"
	@echo "make bench      performance benchmarks (ratios measured in one run)"

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing - run: sudo apt-get install$$missing" >&2; exit 2; fi; \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,lint]'
	@touch $@

setup: system-deps $(BIN)/.installed

lint: $(BIN)/.installed
	ruff check tfgpu_provision tests roles playbooks molecule
	ruff format --check tfgpu_provision tests roles playbooks molecule
	mypy
	yamllint -s .
	ansible-lint --offline --profile production -q

# pytest exit code 5 means "no tests collected": not a failure of the suite.
define run_pytest
	rc=0; pytest --durations=30 $(1) $(PYTEST_ARGS) || rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc
endef

test: setup lint
	$(call run_pytest,-m "not slow")

test-unit: $(BIN)/.installed
	$(call run_pytest,tests/unit)

test-full: setup lint
	$(call run_pytest,)

# The main job on the built-in sandbox: 2 Debian nodes with 2 simulated devices each,
# provisioned fully (driver from Debian non-free, CUDA/cuDNN wheels, TensorFlow's latest
# release in a venv), verified, and reported. `tfgpu-provision sandbox down` removes the lab.
demo: setup
	tfgpu-provision matrix --tensorflow latest
	tfgpu-provision sandbox up --hosts 2 --simulate-gpus 2
	tfgpu-provision plan --inventory sandbox
	tfgpu-provision --inventory sandbox

bench: setup
	@ls tests/perf/bench_*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	@rc=0; for b in tests/perf/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || rc=1; done; exit $$rc

# Build context for an AWX/AAP execution environment (see docs/awx.md).
ee: $(BIN)/.installed
	rm -rf dist context && $(BIN)/python -m pip wheel -q --no-deps -w dist .
	ansible-builder create -f execution-environment.yml -c context

# Re-pin constraints.txt from the current venv (run after changing pyproject.toml).
lock: $(BIN)/.installed
	$(BIN)/python -m pip freeze --exclude-editable --exclude tfgpu-provision | sort > constraints.txt

clean:
	rm -rf $(VENV) .tfgpu .pytest_cache .mypy_cache .ruff_cache
