# One obvious place for setup and the two everyday commands (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup system-deps repro test bench ui clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed  ## fresh virtualenv with the pinned dependencies and sepflow itself

# Debian/Ubuntu, as root: apt-get only when initdb is missing (tests find it as they do here).
system-deps:  ## the PostgreSQL server the tracking-server tests start (skipped without it)
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "PostgreSQL server already installed"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; \
	fi

repro: setup  ## run the whole pipeline on the embedded default (the synthetic market)
	dvc repro

test: setup  ## the test suite, slow tests included, on both cores
	python -m pytest -n 2 --dist worksteal

bench: setup  ## the benchmarks recorded in BENCHMARKS.md
	python benchmarks/bench_sep.py --rows 10000000
	python benchmarks/bench_features.py --rows 10000000

ui: setup  ## the MLflow UI on the project's tracking database
	mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --port 5000

clean:  ## remove the virtualenv (data and MLflow runs stay)
	rm -rf $(VENV)
