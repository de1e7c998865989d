# Quick start: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.h5live-installed

.PHONY: install system-deps demo test test-fast test-peers lint typecheck pytest bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# System packages the suite needs: redis-server for dranspose's distributed mode
# (tests/test_dranspose_ingester.py starts its own on a free loopback port).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing redis-server (apt-get)"; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

demo: install
	$(BIN)/h5live demo

lint: install
	$(BIN)/ruff check src tests tutorials benchmarks peers
	$(BIN)/ruff format --check src tests tutorials benchmarks peers

typecheck: install
	$(BIN)/mypy

pytest: install system-deps
	$(BIN)/pytest --durations=15

test: lint typecheck test-peers pytest

# A quick local loop: everything but the tests that run real writer processes (marker `live`).
test-fast: install
	$(BIN)/pytest -m "not live" -q

# The owners' own test suites against h5live's drop-ins: swmr_tools 0.9's tests and hdmf's
# GenericDataChunkIterator tests (sdists fetched with pip into .peers-cache/; see peers/).
test-peers: install
	$(BIN)/python peers/run_peers.py

# Full benchmark runs: they need the bench extra (matplotlib) and update benchmarks/RESULTS.md.
bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python benchmarks/bench_follow.py
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_iterator.py

# The documentation, docs/_build/html/index.html: installs the docs extra (Sphinx, MyST,
# sphinx-gallery, the theme, Jupyter's kernel) and executes every tutorial into the gallery.
DOCS_STAMP := $(VENV)/.h5live-docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build dist docs/_build docs/tutorials docs/sg_execution_times.rst .pytest_cache .mypy_cache .ruff_cache .hypothesis .peers-cache
