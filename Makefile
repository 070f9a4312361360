# deployer-console: the commands a new user runs on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-pg bench lint screenshots engine clean

$(BIN)/deployer-console: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/deployer-console
	bash scripts/docker-engine
	$(BIN)/deployer-console base-image
	$(BIN)/deployer-console demo

test: $(BIN)/deployer-console
	bash scripts/docker-engine
	$(BIN)/deployer-console base-image
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The whole suite again against a real PostgreSQL server (scripts/test-postgres starts one and prints its URL).
test-pg: $(BIN)/deployer-console
	bash scripts/docker-engine
	DEPLOYER_TEST_DB="$$(bash scripts/test-postgres url)" $(BIN)/pytest -q -p no:cacheprovider -m "not sqlite_only" $(PYTEST_ARGS)

bench: $(BIN)/deployer-console
	bash scripts/docker-engine
	$(BIN)/deployer-console base-image
	$(BIN)/python bench/run_all.py

lint: $(BIN)/deployer-console
	$(BIN)/ruff check .
	$(BIN)/lint-imports

screenshots: $(BIN)/deployer-console
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info
