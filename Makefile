# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench install dev clean chromium webshell

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

# Stamps: an installed environment is not reinstalled unless pyproject.toml changed.
# The demo's Tango and EPICS devices need the tango and epics extras (docs/control-systems.md).
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install -e '.[tango,epics]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev,workflows,tango,epics]'
	touch $@ $(VENV)/.stamp-base

install: $(VENV)/.stamp-base
dev: $(VENV)/.stamp-dev

# The browser client's npm packages (xterm.js, uPlot), copied into the Python package.
webshell: $(VENV)/.stamp-base
	$(MAKE) -C webshell

demo: $(VENV)/.stamp-base webshell
	$(BIN)/blissng demo

# Chromium for the browser tests comes from Debian's package; Playwright drives it.
chromium:
	@if [ -n "$$BLISSNG_SKIP_BROWSER" ]; then echo "BLISSNG_SKIP_BROWSER set: browser tests opted out"; \
	elif command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: run 'sudo apt-get install -y chromium' (or set BLISSNG_SKIP_BROWSER=1)"; exit 1; \
	fi

test: $(VENV)/.stamp-dev webshell chromium
	$(BIN)/pytest -n auto --dist loadfile

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src
	$(BIN)/mypy

# Every script of benchmarks/ (not the _*.py helpers); tests/test_benchmarks.py runs each one
# at tiny sizes in `make test`, so none rots between two runs of this.
bench: $(VENV)/.stamp-dev
	@set -e; for script in benchmarks/[!_]*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
