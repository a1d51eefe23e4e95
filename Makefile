# Shoal's entry points. `make test` is the one command CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SOURCES := shoal tests benchmarks scripts $(wildcard examples)

.PHONY: test lint typecheck pytest proto proto-check config-docs config-check bench chat clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $@

## test: lint, type-check, check generated code and run the whole pytest suite
test: $(VENV)/.installed lint typecheck proto-check config-check pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

typecheck: $(VENV)/.installed
	$(PY) -m mypy --strict shoal

pytest: $(VENV)/.installed
	$(PY) -m pytest

## proto: regenerate shoal/_proto from proto/*.proto
proto: $(VENV)/.installed
	$(PY) scripts/gen_proto.py

## proto-check: fail if the committed generated code is stale
proto-check: $(VENV)/.installed
	$(PY) scripts/gen_proto.py --check

## config-docs: regenerate docs/configuration.md from the settings objects
config-docs: $(VENV)/.installed
	$(PY) scripts/gen_config_docs.py

## config-check: fail if docs/configuration.md is stale
config-check: $(VENV)/.installed
	$(PY) scripts/gen_config_docs.py --check

bench: $(VENV)/.installed
	$(PY) benchmarks/local.py

## chat: the chat cluster, three nodes on 127.0.0.1 sharing one SQLite journal (Ctrl-C stops it);
## options as CHAT_ARGS, e.g. make chat CHAT_ARGS="--journal cassandra --contact-points h:9042"
chat: $(VENV)/.installed
	$(PY) -m examples.chat $(CHAT_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
