# The two commands of the README: `make up` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_WORKERS ?= 3

.PHONY: up test lint unit integration e2e docs deps lock docker test-tools bench bench-previews bench-rollback bench-replicas bench-langgraph bench-burst bench-scale clean

## make up: install what is missing and start the whole platform in the foreground.
up: deps docker
	$(BIN)/slipway up

## make test: install what is missing, then lint, type-check and run every tier of tests.
## The tiers run one after the other, e2e last: its platforms apply the network policy to
## the whole machine while they run, which the integration tier's bare containers must not meet.
## (.NOTPARALLEL keeps that order under `make -j` too.)
## What the Docker tiers fetch (base images, LangGraph wheels) is made in the background
## meanwhile by lint and the unit tier, which need none of it (tests/support/prefetch.py).
test: deps docker test-tools
	@$(BIN)/python -m tests.support.prefetch > .prefetch.log 2>&1 & prefetch=$$!; \
	trap 'kill $$prefetch 2>/dev/null' EXIT; \
	$(MAKE) --no-print-directory lint unit || exit $$?; \
	wait $$prefetch; cat .prefetch.log; \
	$(MAKE) --no-print-directory integration e2e

.NOTPARALLEL:

## make lint: style, types, and the import contract (the layers of scripts/check_layers.py).
lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_layers.py

## make unit / integration / e2e: one tier (unit: no Docker; integration: real Docker,
## Postgres, Valkey and Caddy, no platform; e2e: `slipway up` as a user starts it).
## The unit tier runs on every core (pytest-xdist): its tests share no file, port or database
## (each has its own tmp_path, 127.0.0.1 ports the kernel picks, a SQLite copy of its own).
## Integration and e2e run on TEST_WORKERS workers (3: more than this 2-core machine's cores,
## as their tests mostly wait on the engine, builds and timers; the cores were 25-80 % busy
## over 30 s windows of e2e on three), a module per worker at a time, longest first; the
## modules that must not meet (Docker networks made while another tests what a container cannot
## reach; BuildKit's cache pruned while another needs it) share one worker, one after the other
## (tests/support/scheduling.py and each tier's conftest.py).
unit: deps
	$(BIN)/pytest tests/unit -n auto

integration: deps docker test-tools
	$(BIN)/pytest tests/integration -n $(TEST_WORKERS) --dist loadfile

e2e: deps docker test-tools
	$(BIN)/pytest tests/e2e -n $(TEST_WORKERS) --dist loadfile

## make docs: write the reference pages generated from code (docs/configuration.md from
## app/kernel/settings.py, docs/slipway.schema.json from manifests/config.py); tests/unit/test_docs.py
## fails when they are out of date.
docs: deps
	$(BIN)/python -m scripts.reference

bench: deps docker test-tools
	$(BIN)/python -m bench.push_to_live

bench-previews: deps docker test-tools
	$(BIN)/python -m bench.previews

bench-rollback: deps docker test-tools
	$(BIN)/python -m bench.rollback

bench-replicas: deps docker test-tools
	$(BIN)/python -m bench.replicas

bench-langgraph: deps docker test-tools
	$(BIN)/python -m bench.langgraph

bench-burst: deps docker test-tools
	$(BIN)/python -m bench.webhook_burst --rounds 3

## make bench-scale: 1 and 100 idle deployments (quick: python -m bench.scale --levels 1,10).
bench-scale: deps docker test-tools
	$(BIN)/python -m bench.scale

## make deps: the venv, with exactly the versions and files requirements.lock pins (hashes
## checked). --no-deps: the lock is the whole resolved set, and pip 23.2 refuses a dependency
## named with extras in hash mode (pypa/pip#9644); `pip check` then confirms nothing is missing.
## setuptools, the build backend of `-e .`, comes from the lock too (--no-build-isolation).
deps: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	@scripts/ensure-python.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	$(BIN)/python scripts/lock.py --check
	@touch $@

## make lock: after a dependency changed in pyproject.toml, pin it (with its hashes) into
## requirements.lock; the pins already there are kept. Then `make deps` installs it.
## To move pins: $(BIN)/python scripts/lock.py --upgrade-package NAME (or --upgrade for all);
## add --verify to resolve the lock for CPython 3.11-3.13 on x86_64 and aarch64 (~5 min).
lock:
	@scripts/ensure-python.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/lock.py

docker:
	@scripts/ensure-docker.sh

test-tools:
	@scripts/ensure-test-tools.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
