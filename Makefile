# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean env test-faults

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

env: $(STAMP)

# `make run SIMULATE=2`: also simulate 2 hours of a district's warnings (speed 60: 2 real minutes) in the background
run: $(STAMP)
	$(BIN)/quanzu run $(if $(SIMULATE),--simulate $(SIMULATE))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy services shared tests

test: lint typecheck
	$(BIN)/pytest

# The fault suite's full run (about ten minutes); it rewrites the fault suite's section of docs/RELIABILITY.md.
# `make test` runs the short form (QUANZU_FAULTS=off skips it). QUANZU_FAULTS_SEED=N repeats a run's fault moments, warnings and answers.
test-faults: $(STAMP)
	QUANZU_FAULTS=full $(BIN)/pytest tests/faults -s

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) .quanzu .mypy_cache .pytest_cache .ruff_cache
