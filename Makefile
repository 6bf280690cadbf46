# Two set-up commands: `make demo` and `make test`. Both create .venv on first use and are
# quick afterwards (stamp files record what is installed).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The dependency lock both images build from (pip constraints; regenerate with `make lock`).
LOCK := images/constraints.txt

.PHONY: demo test lint compile bench clean lock

$(VENV)/.core: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is the CPU build on local disk; anything else downloads gigabytes.
	$(PIP) install torch==2.13.0
	$(PIP) install -c $(LOCK) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -c $(LOCK) -e '.[dev,features,modelregistry,serving]'
	touch $@

demo: $(VENV)/.core
	$(PY) pipelines/run_local.py

test: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .

compile: $(VENV)/.core
	$(PY) pipelines/compile.py

lock: $(VENV)/.core
	$(PY) images/lock.py

clean:
	rm -rf build local_outputs
