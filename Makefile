# medchain — `make demo` runs the main job, `make test` runs every test.
# Both create .venv and install everything the project needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit clean deps bench-suite chaos fuzz

demo: $(STAMP)
	$(BIN)/medchain demo $(if $(KEEP),--keep,) $(DEMO_ARGS)

test: $(STAMP)
	@sh scripts/browser-deps.sh
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The long runs behind BENCHMARKS.md (tens of minutes each; not part of `make test`).
bench-suite: $(STAMP)
	$(BIN)/python -m benchmarks.suite --out bench-results
	$(BIN)/python -m benchmarks.report bench-results

chaos: $(STAMP)
	$(BIN)/python -m tests.e2e.chaos.run --runs 5 --seconds 120 --out bench-results/chaos.json

fuzz: $(STAMP)
	$(BIN)/pip install -q 'atheris>=2.3,<3'
	$(BIN)/python -m tests.fuzz.atheris_run --runs 100000 --out bench-results/fuzz.json

deps:
	@sh scripts/check-deps.sh

$(STAMP): pyproject.toml scripts/check-deps.sh
	@sh scripts/check-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "medchain needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
