# Every target sets up what it needs; each is quick once .venv exists.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHONS ?= 3.10 3.11 3.12 3.13
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck check bench test-pythons clean

# The venv is rebuilt when the project's metadata changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]' --group dev
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet --group bench
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/runtime-bridge doctor

test: $(VENV)/.installed
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks $(BENCH_ARGS)

# The suite on every supported Python, each in a venv of its own (.venv-3.X).
test-pythons:
	@set -e; for v in $(PYTHONS); do \
	  interp=$$(tools/find-python $$v); \
	  echo "== Python $$v ($$interp)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$interp VENV=.venv-$$v; \
	done

clean:
	rm -rf .venv .venv-3.* .pytest_cache .mypy_cache .ruff_cache
