# amcp — `make run` runs the main job (paper trading on the bundled sample), `make test` the tests.
# Both create or refresh .venv first; the second call is fast because nothing is reinstalled
# unless pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/paper.yaml

.PHONY: run test test-fast backtest ingest bench clean-venv cluster-up cluster-submit cluster-down

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

ingest: $(STAMP)
	$(PY) -m pipelines.ingest --config configs/ingest.yaml

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not ray"

bench: $(STAMP)
	@set -e; for f in benchmarks/[!_]*.py; do echo "# $$f" >&2; $(PY) $$f; done

# A local Ray cluster, then the main job submitted to it. The venv goes first on PATH so the
# job's `python` is the venv's; Ray's head port (6380) stays clear of Redis (6379); Ray 2.60
# enables token auth, so the job client is told to use the token `ray start` wrote.
RAY_ENV := PATH=$(abspath $(VENV))/bin:$$PATH RAY_AUTH_MODE=token

cluster-up: $(STAMP)
	$(RAY_ENV) ray start --head --port=6380 --dashboard-host=127.0.0.1

cluster-submit: $(STAMP)
	$(RAY_ENV) ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.trade --config $(CONFIG) --output-dir $(abspath runs)

cluster-down:
	$(RAY_ENV) ray stop

clean-venv:
	rm -rf $(VENV)
