# Messenger API: every task of the project is a target here.  `make` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := plugins/messenger_chats plugins/messenger_auth plugins/messenger_search plugins/messenger_throttle \
	plugins/messenger_events plugins/messenger_web
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# generated documents describe exactly the six plugins of this repository
ALL_APPS := env -i PATH="$(PATH)" \
	MESSENGER_APPS=messenger_auth,messenger_chats,messenger_events,messenger_search,messenger_throttle,messenger_web

.DEFAULT_GOAL := help
.PHONY: help venv system-deps run run-dev run-prod migrate lint test tests-html-coverage-report openapi screenshot bench bench-fanout clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-28s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' $(addprefix -e ,$(PLUGINS))
	touch $@

venv: $(STAMP) ## create .venv with the core, the six plugins (editable) and the dev tools

system-deps: ## install the Debian packages the tests use (nginx, docker-compose, chromium) when missing
	@deploy/system-deps

run: venv ## serve on :8080 with PostgreSQL only (memory cache, embedded search worker); the web client at /
	$(BIN)/messenger-api

run-dev: venv ## API + consumer from the venv against local PostgreSQL, Redis, RabbitMQ (deploy/.env.dev)
	set -a; . deploy/.env.dev; set +a; \
	trap 'kill 0' EXIT; $(BIN)/messenger-consumer & $(BIN)/messenger-api

run-prod: ## the full stack with docker-compose (needs a Docker engine)
	docker-compose --env-file deploy/.env.prod up --build

migrate: venv ## apply pending migrations (make migrate DOWN=plugin[:version] rolls back)
	$(BIN)/messenger-api migrate $(if $(DOWN),--down $(DOWN))

lint: venv ## pylint and flake8
	$(BIN)/pylint --rcfile=.pylintrc messenger_core $(dir $(wildcard plugins/*/messenger_*/__init__.py)) bench tools
	$(BIN)/pylint --rcfile=.pylintrc --disable=missing-function-docstring,redefined-outer-name,wrong-import-order tests
	$(BIN)/flake8 messenger_core plugins tests bench tools

test: venv system-deps ## the whole test suite against real PostgreSQL, Redis, RabbitMQ
	$(BIN)/pytest $(PYTEST_ARGS)

tests-html-coverage-report: venv system-deps ## tests with an HTML coverage report in htmlcov/
	$(BIN)/pytest --cov=messenger_core $(foreach p,$(PLUGINS),--cov=$(notdir $(p))) --cov-report=html $(PYTEST_ARGS)
	@echo "open htmlcov/index.html"

openapi: venv ## regenerate swagger.yml and the README's settings table from the code
	$(ALL_APPS) $(BIN)/messenger-api openapi > swagger.yml
	$(ALL_APPS) $(BIN)/messenger-api settings | $(BIN)/python tools/sync_readme.py

screenshot: venv system-deps ## the README's picture of the web client (docs/web-client.png), taken by its browser test
	$(BIN)/pytest -q -p no:cacheprovider tests/test_web_client.py -k search_finds --web-screenshot docs/web-client.png

bench: venv ## run the benchmark suite (bounded, loopback only; installs wrk when missing); see bench/README.md
	@deploy/system-deps wrk
	$(BIN)/python -m bench.run

bench-fanout: venv ## real-time delivery to 500..5,000 held streams and long-polls (issue 14); see bench/README.md
	$(BIN)/python -m bench.fanout

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache htmlcov .coverage
