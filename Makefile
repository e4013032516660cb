# Two commands do everything on a fresh machine: `make run` and `make test`; `make serve` shows the live dashboard.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch first, pinned: the CPU wheel served locally, so pip never pulls a CUDA build.
TORCH  := torch==2.13.0

.PHONY: run test serve load install dev docs wheel-check bench bench-quick bench-tune skill clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,ray,docs]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/coincast run --data btc-usd

test: $(VENV)/.dev
	$(PY) -m pytest

# The documentation site into site/ (strict: a broken link or reference fails); `mkdocs serve` to browse it.
docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Build the sdist and wheel, install the wheel into a clean venv and run coincast outside the source tree (~1-2 min).
wheel-check: $(VENV)/.dev
	PYTHON=$(PY) PYTHON3=$(PYTHON) bash .ci/wheel_check.sh

# The live demo with its API and dashboard at http://127.0.0.1:8000 (Ctrl-C stops).
serve: $(VENV)/.installed
	$(VENV)/bin/coincast serve --demo

# Requests/s and latency of serve's latest-forecast and history routes while a retrain runs
# (30 s each; the first run fills runs/load with 1,050 simulated days, a few minutes).
load: $(VENV)/.dev
	$(PY) benchmarks/load.py --seconds 30

# Speed benchmark vs the Keras original (installs TensorFlow into benchmarks/.venv-keras).
bench: $(VENV)/.installed
	bash benchmarks/run_bench.sh

bench-quick: $(VENV)/.installed
	bash benchmarks/run_bench.sh --quick

# Walk-forward skill of the default, default+ta and tutorial presets on all six bundled daily coins, then the
# risk forecasts (the network's distribution head and the four baselines) on the same days (2026-12-02, 2 cores:
# 28 min on an AVX-512-BF16 AMD EPYC, 73 min on an Intel Xeon with AMX).
skill: $(VENV)/.installed
	$(VENV)/bin/coincast evaluate --jobs 2 --out runs/skill
	$(PY) benchmarks/skill.py runs/skill
	$(PY) benchmarks/risk_baselines.py  # with the bundled hourly series: the intraday models and the served one

# A 40-trial `coincast tune` on btc-usd (tune end 2024-12-31, 91-day trials) and its test after the tune end (~80 min on 2 cores).
bench-tune: $(VENV)/.installed
	$(PY) benchmarks/tune.py --runs runs/bench

clean:
	rm -rf $(VENV) runs
