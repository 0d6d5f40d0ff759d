# amcp — `make run` runs the main job (paper trading on the bundled sample), `make test` the tests.
# Both create or refresh .venv first; the second call is fast because nothing is reinstalled
# unless pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/paper.yaml

.PHONY: run test test-fast backtest bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@# torch first, from its CPU wheel: nothing later may ask for a CUDA build.
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m pipelines.trade --config $(CONFIG)

backtest: $(STAMP)
	$(PY) -m pipelines.backtest --config configs/backtest.yaml

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not ray"

bench: $(STAMP)
	@set -e; for f in benchmarks/[!_]*.py; do echo "# $$f" >&2; $(PY) $$f; done

clean-venv:
	rm -rf $(VENV)
