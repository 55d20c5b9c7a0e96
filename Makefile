# Two commands do everything on a fresh Debian machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup postgres browser lint bench db-stop clean

run: setup  ## start the worker on DATABASE_URL, or on the embedded local cluster
	$(BIN)/python -m worker

test: setup browser  ## the whole suite, against real PostgreSQL servers the tests start
	$(BIN)/python -m pytest

setup: $(STAMP) postgres

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

postgres:
	@scripts/ensure-postgres

browser:  ## Debian's Chromium and ChromeDriver, for tests/browser/ only (`run` needs none)
	@scripts/ensure-chromium

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup  ## throughput.py (worker, COPY, execute_values, dlt; ~8 min), then load.py
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/load.py

db-stop: setup  ## stop the embedded cluster
	$(BIN)/python -m worker.database stop

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
