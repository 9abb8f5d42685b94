# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
# One virtual environment per interpreter: `make test PYTHON=python3.12` builds
# .venv-python3.12 and leaves the default .venv alone (override with VENV=...).
ifeq ($(PYTHON),python3.11)
VENV   ?= .venv
else
VENV   ?= .venv-$(notdir $(PYTHON))
endif
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# `make test` runs the default suite (under 10 minutes on 2 cores); CI adds the
# slow tests with `make test PYTEST_ARGS=`.
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test bench clean

# pyenv's python3.12 / python3.13 shims run only when their version is
# selected: select every installed version for this one command (no effect
# without pyenv or when PYENV_VERSION is already set).
PYENV_SELECT := $(if $(PYENV_VERSION),,$(shell pyenv versions --bare 2>/dev/null | paste -sd: - | sed 's/^./PYENV_VERSION=&/'))

$(PY):
	$(PYENV_SELECT) $(PYTHON) -m venv $(VENV)
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
	$(PY) bench/integration_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
