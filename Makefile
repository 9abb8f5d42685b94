# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# `make test` runs the default suite (under 10 minutes on 2 cores); CI adds the
# slow tests with `make test PYTEST_ARGS=`.
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the project metadata changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pss-bench demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/pq_speed.py
	$(PY) bench/context_error_speed.py
	$(PY) bench/synth_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
