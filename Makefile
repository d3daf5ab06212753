# Two entry points for newcomers (see README): `make demo` and `make test`. Both create ./.venv on first use.
# `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH ?=
ARGS ?=

.PHONY: help install demo test test-fast lint bench clean

$(BIN)/m2s-nnunet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	touch $@

install: $(BIN)/m2s-nnunet

help:
	@echo "make demo                 generate data, plan, train, predict and score on the CPU (a few minutes)"
	@echo "make test                 ruff + the whole test suite (test-fast: without the slow nnU-Net runs)"
	@echo "make lint                 ruff only"
	@echo "make bench BENCH=NAME [ARGS='...']"
	@echo "                          run bench/NAME.py with ARGS (results: bench/RESULTS.md), e.g."
	@echo "                          make bench BENCH=bench_network ARGS='--device cpu --sizes 128 --lossnet'"
	@echo "                          make bench BENCH=profile_step ARGS=--help   (each script's own options)"
	@echo "                          NAME: $(sort $(basename $(notdir $(filter-out bench/benchlib.py bench/steplib.py,$(wildcard bench/*.py)))))"
	@echo "make install              create $(VENV) with the package (editable) and the test tools"
	@echo "make clean                remove m2s_work and the tool caches"

demo: install
	$(BIN)/m2s-nnunet demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

# The benchmark scripts live in bench/ (not in the installed package): they run from a source checkout.
bench: install
	@if [ -z "$(BENCH)" ] || [ ! -f "bench/$(BENCH).py" ] || [ "$(BENCH)" = benchlib ] || [ "$(BENCH)" = steplib ]; then \
		echo "usage: make bench BENCH=NAME [ARGS='...'], NAME one of:" \
			"$(sort $(basename $(notdir $(filter-out bench/benchlib.py bench/steplib.py,$(wildcard bench/*.py)))))" >&2; exit 2; fi
	$(BIN)/python bench/$(BENCH).py $(ARGS)

clean:
	rm -rf m2s_work .pytest_cache .ruff_cache
