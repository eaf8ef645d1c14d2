# Two commands do all the setup on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean mutate

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned (a local CPU wheel), then the package with its test extras.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lexactum demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks mutation Space.py Ground.py

bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_simulate.py
	$(PY) benchmarks/bench_predict.py speed

# Mutation check of the core modules (cosmic-ray; not part of `make test` or CI; about 15 minutes on 2 cores).
# `make mutate MODULE=evaluation/metrics.py` for one module, SAMPLE=0 for all its mutants. See docs/testing.md.
MODULE ?=
SAMPLE ?=
$(VENV)/.mutation-installed: $(STAMP)
	$(PIP) install -q -e '.[mutation]'
	touch $@

mutate: $(VENV)/.mutation-installed
	PYTHONPATH=$(CURDIR)/src nice -n 19 $(PY) mutation/run.py $(if $(SAMPLE),--sample $(SAMPLE)) $(MODULE)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
