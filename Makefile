# Two entry points a fresh machine needs: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here, before the project, because this pin is a local CPU build; the project's
# own range stays permissive (see DEVELOPERS.md / README).
TORCH_PIN ?= torch==2.13.0
export BLACKBOX_MODELS ?= $(abspath ../shared/models)

.PHONY: setup run test test-fast lint bench dashboard clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# Exit 3 (some inputs skipped, each named in the summary and errors.jsonl) is a finished run, not a make error.
run: setup
	$(BIN)/python -m blackbox $(ARGS) || [ $$? -eq 3 ]

test: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The tests not marked slow (tests/conftest.py): about a quarter of the time. CI runs `make test`.
test-fast: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

# The latest run under runs/ in optuna-dashboard on 127.0.0.1:8080 (RUN=runs/<date>/<time> for another).
dashboard: setup
	$(BIN)/python -m blackbox.dashboard $(RUN) $(ARGS)

bench: setup
	$(BIN)/python -m benchmarks.target_latency --targets classic twitter surrogate vips_attention vips_entropy smartcrop faces $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
