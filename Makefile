# One-command set-up: every target installs what it needs, idempotently (a second run skips what is done).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lotus-installed
FMNIST := scripts/fetch_fashion_mnist.sh

.PHONY: help install data demo test test-slow lint bench-quick clean

help:
	@echo "make demo       set up, then train -> forget 10% -> LoTUS -> evaluate -> report on Fashion-MNIST"
	@echo "make test       set up, then run the default test suite (< 10 min on 2 cores)"
	@echo "make test-slow  the long tests (benchmark grid, browser check of the HTML report)"
	@echo "make lint       ruff"

# torch first, from the CPU build on local disk: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

data:
	@bash $(FMNIST)

demo: install data
	$(BIN)/lotus-unlearn demo --overwrite

test: install data
	$(BIN)/python -m pytest -q -n 2

test-slow: install data
	bash scripts/install_chromium.sh
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .ruff_cache
