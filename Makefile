# `make test` and `make demo` work on a fresh machine: they create .venv and install what is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# 2 cores: one torch intra-op thread per process unless the caller says otherwise.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install test test-slow lint format demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e .[dev]
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; fi; \
	exit $$rc

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: $(STAMP)
	$(PY) experiments/demo.py --out runs/demo

# The documented way to regenerate the committed results/benchmarks (metarl bench defaults to runs/bench).
bench: $(STAMP)
	$(VENV)/bin/metarl bench --out results/benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache

# Mutation testing of the core modules (docs/mutation.md), one module at a time in scratch copies
# under /tmp; not part of `make test` (hours on 2 cores). `make mutation MODULES="returns policies"`
# checks only those modules; the report covers every module with results in results/mutation/raw.
MODULES ?=
.PHONY: mutation
mutation: $(STAMP)
	test -x $(VENV)/bin/mutmut || $(PY) -m pip install mutmut==3.8.1
	$(PY) tools/mutation.py run $(MODULES)
	$(PY) tools/mutation.py report
