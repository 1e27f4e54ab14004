# Every target sets itself up: a fresh clone needs only Python 3.11+ and network access to PyPI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_DIR ?= $(or $(TMPDIR),/tmp)/kiwoom-recorder-demo

.PHONY: install compile test check lint demo bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# An editable install leaves our own modules uncompiled, and where PYTHONDONTWRITEBYTECODE is
# set every command compiles them again (0.1 s of each ingest's start); pip compiles them when
# it installs a wheel. Only changed files are compiled again.
compile: $(STAMP)
	@$(BIN)/python -m compileall -q recorder queries > /dev/null

install: $(STAMP) compile

# Two workers: much of the suite waits on subprocesses and sockets (see tests/conftest.py).
test: $(STAMP) compile
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check recorder queries tests benchmarks soak
	$(BIN)/mypy recorder queries soak

check: lint test

# A short capture from the embedded venue (no Kiwoom account needed), then SQL over what was recorded.
demo: $(STAMP) compile
	rm -rf $(DEMO_DIR)
	$(BIN)/recorder capture --sim --duration 15s --data-dir $(DEMO_DIR)
	$(BIN)/recorder query --data-dir $(DEMO_DIR) \
	  "SELECT symbol, venue, count(*) AS trades, sum(volume) AS volume, min(price) AS low, max(price) AS high, \
	          round(sum(price * volume) / sum(volume)) AS vwap FROM trades GROUP BY ALL ORDER BY symbol, venue"
	$(BIN)/recorder query --data-dir $(DEMO_DIR) \
	  "SELECT 'orderbook' AS tbl, count(*) AS n_rows FROM orderbook UNION ALL SELECT 'gaps', count(*) FROM gaps \
	   UNION ALL SELECT 'rejects', count(*) FROM rejects"

bench: $(STAMP) compile
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_replay.py
	$(BIN)/python benchmarks/bench_queries.py
	$(BIN)/python benchmarks/bench_live.py
	$(BIN)/python benchmarks/bench_relay.py
	$(BIN)/python benchmarks/bench_storage.py

# Fault-injection runs of the real CLI against the embedded venue; each scenario prints one line
# of figures (sent, recorded, missing, duplicated, gaps, rejects, peak RSS). Shortened versions
# of every scenario run in `make test`.
soak: $(STAMP)
	$(BIN)/python -m soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
