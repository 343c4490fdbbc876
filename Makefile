# idp — set-up, serve and test entry points.
#
#   make serve   venv + package, `idp init`, then serve on http://127.0.0.1:8000
#   make test    venv + dev extras, server binaries, pytest in both profiles
#   make lint    ruff check + ruff format --check + mypy (idp/)
#   make bench   token endpoint: idp (granian, gunicorn) vs node-oidc-provider vs a ceiling app (bench/README.md)
#   make clean   remove the venv and build/test leftovers

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=

# Stamps: the venv is (re)installed when pyproject.toml changes.
DEV_STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed

.PHONY: venv .venv serve test lint bench clean

# `make .venv` / `make venv`: the virtualenv with the dev extras.
venv .venv: $(DEV_STAMP)

# Create the virtualenv itself. A fresh Debian has python3 but often not the
# venv module (package python3-venv); install it when root, else say so.
$(BIN)/python:
	@if ! $(PYTHON) -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "make: installing python3-venv with apt-get"; \
	        DEBIAN_FRONTEND=noninteractive apt-get -q update </dev/null && \
	        DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends python3-venv </dev/null && \
	        $(PYTHON) -m venv $(VENV); \
	    else \
	        echo "make: '$(PYTHON) -m venv' failed; install the python3-venv package" >&2; exit 1; \
	    fi; \
	fi
	$(BIN)/python -m pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

serve: $(RUN_STAMP)
	$(BIN)/idp init
	$(BIN)/idp serve --host $(HOST) --port $(PORT)

# Both profiles always run, side by side: much of the suite waits on live servers,
# sleeps and argon2, so two runs share the 2 cores well (about 9 minutes instead of 16).
# Each run has its own pytest temp folder, so neither deletes the other's servers.
# The embedded run's output follows the production run's. TEST_SERIAL=1 runs them one
# after the other. The target fails if either failed.
test: $(DEV_STAMP)
	tests/support/ensure-servers
	@status=0; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	if [ -n "$(TEST_SERIAL)" ]; then \
		echo "== pytest --profile embedded"; \
		$(BIN)/pytest --profile embedded --basetemp="$$tmp/embedded" $(PYTEST_ARGS) || status=1; \
	else \
		$(BIN)/pytest --profile embedded --basetemp="$$tmp/embedded" $(PYTEST_ARGS) \
			>"$$tmp/embedded.log" 2>&1 & embedded=$$!; \
	fi; \
	echo "== pytest --profile production"; \
	$(BIN)/pytest --profile production --basetemp="$$tmp/production" $(PYTEST_ARGS) || status=1; \
	if [ -z "$(TEST_SERIAL)" ]; then \
		wait $$embedded || status=1; \
		echo "== pytest --profile embedded"; cat "$$tmp/embedded.log"; \
	fi; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see the runs above)" >&2; fi; \
	exit $$status

lint: $(DEV_STAMP)
	$(BIN)/ruff check idp tests bench
	$(BIN)/ruff format --check idp tests bench
	$(BIN)/mypy

# Speed is measured here, never in tests (bench/README.md): the token endpoint of idp
# (PostgreSQL + Redis; on granian, and on gunicorn as idp-gunicorn) against
# node-oidc-provider and a no-storage ceiling, with wrk, in 3 interleaved rounds of
# ES256 + client_secret_basic at 32 connections (about 10 minutes); e.g.
# BENCH_ARGS="--quick" (one round) or "--full --record". The other benchmarks run directly:
# $(BIN)/python bench/users_get.py, $(BIN)/python bench/password_grant.py.
bench: $(RUN_STAMP)
	tests/support/ensure-servers
	bench/ensure-tools
	$(BIN)/python bench/token_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
