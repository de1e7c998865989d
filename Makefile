# Quick start: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.h5live-installed

.PHONY: install demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/h5live demo

lint: install
	$(BIN)/ruff check src tests tutorials benchmarks
	$(BIN)/ruff format --check src tests tutorials benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

# Full benchmark runs: they need the bench extra (matplotlib) and update benchmarks/RESULTS.md.
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python benchmarks/bench_follow.py
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_iterator.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
