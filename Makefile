# Two commands for users: `make bench` and `make test`. Both bootstrap .venv from nothing.
# The torch/torchvision pins are deliberate: those CUDA wheels lie on the build machines' disk,
# other versions download gigabytes or fail to import together (see README "Set-up").
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrap-v1
# ffcv's build dependencies, and chromium for the history page's browser test
SYS_PKGS := pkg-config libopencv-dev libturbojpeg0-dev chromium
DATA_DIR ?= $(firstword $(wildcard ../shared/data) $(wildcard data))
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The wheel index torch comes from (pip's default when empty). The pinned wheels are built for
# CUDA 13 (driver R580 or newer); on an older driver bench stops and names the fix, e.g.
#   make clean && make bench TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# (add TORCH_PINS="torch==X torchvision==Y" when that index has no wheel of the pinned pair).
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))

.PHONY: all bench test test-all test-twin twin bench-ci bench-baseline lint clean sysdeps venv
all: test

venv: $(STAMP)

# System packages ffcv needs to build, and chromium (tests/test_history_page.py loads the history
# page in it). Installed when missing and we are root on Debian/Ubuntu; otherwise print the
# command and go on (ffcv and the browser test are then skipped with a clear reason).
sysdeps:
	@missing=""; for p in $(SYS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing system packages for ffcv and the browser test:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	  || echo "WARNING: apt-get failed; ffcv or the browser test will be unavailable"; \
	else echo "ffcv and the browser test need system packages; run: sudo apt-get install -y$$missing"; fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-cache-dir $(TORCH_INDEX) $(TORCH_PINS)
	$(PY) -m pip install -q --no-cache-dir $(TORCH_PINS) -e '.[dev]'
	@$(PY) -m pip install -q --no-cache-dir $(TORCH_PINS) -e '.[ffcv]' \
	  || echo "WARNING: ffcv failed to build; --loader ffcv and its tests will be skipped"
	@touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/bench suite default $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)
	$(PY) -m pytest -q tests

# slow checks on the real data (set BENCH_DATA_DIR or keep ../shared/data)
test-all: $(STAMP)
	BENCH_REAL_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q -m "slow or not slow" tests

# The GPU box's twin: its Python stack (3.12, torch 2.11.0+cu130, no ffcv, no plotly, bench not
# installed) on this CPU, to catch version drift before a GPU window is spent on it. Neither
# `make test` nor .ci/run uses it (the wheels are ~5 GB); docs/development.md describes it.
TWIN ?= .twin
TWIN_PKGS := torch==2.11.0 torchvision==0.26.0 pandas matplotlib numba nvidia-ml-py pytest \
  pytest-benchmark scipy tqdm timm

twin:
	PYENV_VERSION=3.12.1 python3.12 -m venv $(TWIN) && $(TWIN)/bin/pip install -q $(TWIN_PKGS)

test-twin:
	@if [ ! -x $(TWIN)/bin/python ]; then \
	  echo "no twin at $(TWIN)/bin/python; build it (~5 GB, minutes) with: make twin TWIN=$(TWIN)" >&2; \
	  echo "  which runs: PYENV_VERSION=3.12.1 python3.12 -m venv $(TWIN) && $(TWIN)/bin/pip install -q $(TWIN_PKGS)" >&2; \
	  exit 1; fi
	PYTHONPATH=. $(TWIN)/bin/python -m pytest -q tests

bench-ci: $(STAMP)
	$(VENV)/bin/bench ci $(if $(DATA_DIR),--data-dir $(DATA_DIR))

bench-baseline: $(STAMP)
	$(VENV)/bin/bench ci --calibrate $(if $(DATA_DIR),--data-dir $(DATA_DIR))

lint: $(STAMP)
	$(VENV)/bin/ruff check bench kernels tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
