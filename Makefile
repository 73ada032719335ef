# Two entry points a fresh machine needs: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here, before the project, because this pin is a local CPU build; the project's
# own range stays permissive (see DEVELOPERS.md / README).
TORCH_PIN ?= torch==2.13.0
export BLACKBOX_MODELS ?= $(abspath ../shared/models)

# Distillation (pysaliency, which pins numpy<2) lives in an environment of its own, so the core
# installs and is tested with numpy 2.
DISTILL_VENV := .venv-distill
DISTILL_BIN := $(DISTILL_VENV)/bin
# The tests that need pysaliency; in .venv they skip, saying so.
DISTILL_TESTS := tests/test_distill.py tests/test_distill_deepgaze.py tests/test_datasets.py

.PHONY: setup setup-distill run test test-core test-distill test-fast lint bench dashboard clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(DISTILL_BIN)/.installed: pyproject.toml
	test -x $(DISTILL_BIN)/python || $(PYTHON) -m venv $(DISTILL_VENV)
	$(DISTILL_BIN)/python -m pip install -q --upgrade pip
	$(DISTILL_BIN)/python -m pip install -q $(TORCH_PIN)
	$(DISTILL_BIN)/python -m pip install -q -e '.[test,distill]'
	touch $@

setup: $(BIN)/.installed

# python -m blackbox.distill and dataset=cat2000_pysaliency: run them with .venv-distill/bin/python.
setup-distill: $(DISTILL_BIN)/.installed

# Exit 3 (some inputs skipped, each named in the summary and errors.jsonl) is a finished run, not a make error.
run: setup
	$(BIN)/python -m blackbox $(ARGS) || [ $$? -eq 3 ]

# The whole suite: the core in .venv (numpy 2), then the pysaliency tests in .venv-distill.
test: test-core test-distill

test-core: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-distill: setup-distill
	OMP_NUM_THREADS=2 $(DISTILL_BIN)/python -m pytest -q $(DISTILL_TESTS) $(PYTEST_ARGS)

# The tests not marked slow (tests/conftest.py), in .venv. CI runs `make test`.
test-fast: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

# The latest run under runs/ in optuna-dashboard on 127.0.0.1:8080 (RUN=runs/<date>/<time> for another).
dashboard: setup
	$(BIN)/python -m blackbox.dashboard $(if $(RUN),run=$(RUN)) $(ARGS)

bench: setup
	$(BIN)/python -m benchmarks.target_latency --targets classic twitter surrogate vips_attention vips_entropy smartcrop faces $(ARGS)

clean:
	rm -rf $(VENV) $(DISTILL_VENV) .pytest_cache .ruff_cache
