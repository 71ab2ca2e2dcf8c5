# The two commands of the README, and a few more. Each one prepares the machine first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench wheel clean

install:
	@bash scripts/bootstrap.sh

## Run the main job (demo) end to end locally: local Spark, local development KEK.
demo: install
	$(BIN)/envelope-encryption run demo --target local

## Run the whole test suite.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks notebooks

## Every throughput contender side by side, 1 M rows; writes benchmarks/results/<date>.md
## and .json (sizes: make bench BENCH_ARGS="--rows 1000000,4000000,16000000 --repeat 3").
BENCH_ARGS ?= --rows 1000000 --repeat 3
bench: install
	$(BIN)/python benchmarks/bench_columns.py $(BENCH_ARGS)

wheel: install
	$(BIN)/uv build --wheel --clear

## Forget local runs: warehouse, metastore, landing files and the development KEK.
clean:
	rm -rf .envelope dist build
