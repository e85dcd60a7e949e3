# `make run` and `make test` set everything up on a fresh machine (a .venv here), then do their job.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip would byte-compile all ~20,000 installed modules (~80 s of a 2-core VM) while a test run imports ~4,400:
# install with --no-compile and let Python cache each module the first time it is imported, even where the
# shell sets PYTHONDONTWRITEBYTECODE (else every process would compile TensorFlow's modules again, ~15 s).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup run test lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e ".[tensorflow,jax,notebooks,dev,torch]"
	touch $(STAMP)

run: setup  ## the main job
	$(PY) -m mvlib run

test: setup  ## unit tests + notebooks (quick mode)
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs artifacts
