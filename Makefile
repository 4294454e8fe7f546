# kgrec: two commands do all set-up on a fresh machine.
#   make demo   - the main job end to end on the embedded store (no server needed)
#   make test   - the whole test suite, starting the real Neo4j server
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup neo4j demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

neo4j: ## fetch the Neo4j 5.26 jars from Maven Central (once)
	bash scripts/neo4j/server.sh build

demo: setup
	$(VENV)/bin/kgrec demo

test: setup neo4j
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check kg gnn fusion kgrec tests benchmarks
	$(VENV)/bin/mypy kg gnn fusion kgrec

clean:
	rm -rf .kgrec .pytest_cache
