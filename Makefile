# `make run` and `make test` set everything up on a fresh machine (a .venv here), then do their job.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[tensorflow,jax,notebooks,dev,torch]"
	touch $(STAMP)

run: setup  ## the main job
	$(PY) -m mvlib run

test: setup  ## unit tests + notebooks (quick mode)
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs artifacts
