# One obvious place for setup and the two everyday commands (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: help setup lock system-deps repro test bench ui clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed  ## fresh virtualenv with every package pinned (requirements.lock) and sepflow itself

# requirements.txt holds the direct pins; the lock adds every transitive package at the version
# those pins resolved to. Rerun after editing requirements.txt (tests/test_packaging.py checks they agree).
lock:  ## re-resolve requirements.txt in a scratch virtualenv and write requirements.lock
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -r requirements.txt
	{ echo "# Every package of the environment, pinned: what \`make setup\` installs, so two installs months apart"; \
	  echo "# get the same packages. Generated from requirements.txt (the direct pins) by \`make lock\`; do not edit."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable --all | grep -v '^pip==\|^setuptools==\|^wheel=='; \
	} > requirements.lock
	rm -rf .venv-lock

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
	python benchmarks/bench_features_ragged.py --tickers 7000 --years 32 --layouts bucketed padded
	python benchmarks/bench_imports.py --repeat 3

ui: setup  ## the MLflow UI on the project's tracking database
	mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --port 5000

clean:  ## remove the virtualenv (data and MLflow runs stay)
	rm -rf $(VENV)
