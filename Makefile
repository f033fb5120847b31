# The two commands of README.md: `make run` (the main job) and `make test`.
# Each creates the virtual environment and installs what it needs: `run` only what
# running needs (the library, the runtime and the gateway), `test` the test tools too.

VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
RUN_STAMP  := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp

.PHONY: install install-test redis-server chromium run test lint bench

$(RUN_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[api]'
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(PYTHON) -m pip install --quiet -e '.[dev,openai,api]'
	touch $(TEST_STAMP)

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

# The runtime and its tests start their own redis-server; install it if missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is needed: sudo apt-get install -y redis-server (Debian/Ubuntu)," \
	         "or brew install redis (macOS)"; exit 1; \
	  fi; }

# The browser tests drive Debian's chromium with Playwright (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is needed for tests/browser: sudo apt-get install -y chromium (Debian)," \
	         "or put a chromium or chromium-browser binary on the PATH"; exit 1; \
	  fi; }

run: $(RUN_STAMP) redis-server
	$(VENV)/bin/fence stack --demo

test: $(TEST_STAMP) redis-server chromium
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(TEST_STAMP) redis-server
	$(PYTHON) bench/memory_growth.py
