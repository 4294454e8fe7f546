# kgrec: two commands do all set-up on a fresh machine.
#   make demo   - the main job end to end on the embedded store (no server needed)
#   make test   - the whole test suite, starting the real Neo4j server
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup neo4j browser demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

neo4j: ## fetch the Neo4j 5.26 jars from Maven Central, dump their class-data archive (once)
	bash scripts/neo4j/server.sh build

browser: ## Debian's Chromium, which renders the run report in the tests (once; needs root)
	@command -v chromium >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

demo: setup ## `kgrec run data/ml100k.toml`: report in .kgrec/demo/report/report.html
	$(VENV)/bin/kgrec demo

test: setup neo4j browser
	$(PY) -m pytest -q

# The fast tier: no server, no notebooks, no Spark, no long end-to-end runs (about a minute).
FAST := not neo4j and not notebook and not spark and not slow
test-fast: setup
	$(PY) -m pytest -q -m "$(FAST)"

lint: setup
	$(VENV)/bin/ruff check kg gnn fusion kgrec tests benchmarks
	$(VENV)/bin/mypy kg gnn fusion kgrec

clean:
	rm -rf .kgrec .pytest_cache
