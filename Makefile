# The two commands of README.md: `make run` (the main job) and `make test`.
# Each creates the virtual environment and installs what it needs.

VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install redis-server run test lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev,openai,api]'
	touch $(STAMP)

install: $(STAMP)

# The runtime and its tests start their own redis-server; install it if missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq redis-server; \
	  else \
	    echo "redis-server is needed: sudo apt-get install -y redis-server (Debian/Ubuntu)," \
	         "or brew install redis (macOS)"; exit 1; \
	  fi; }

run: install redis-server
	$(VENV)/bin/fence stack --demo

test: install redis-server
	$(VENV)/bin/ruff check .
	$(PYTHON) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install redis-server
	$(PYTHON) bench/memory_growth.py
