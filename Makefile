PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint clean

$(BIN)/amc: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/amc

demo: $(BIN)/amc
	$(BIN)/amc demo

# two pytest-xdist workers (one torch thread each); tests/conftest.py groups the units: the
# Ray tests on one worker, each other module whole
JOBS ?= 2
test: $(BIN)/amc
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup --no-loadscope-reorder

# the in-process subset (no Ray, no subprocess CLI runs): a few minutes
test-fast: $(BIN)/amc
	$(BIN)/python -m pytest -m 'not slow and not ray and not cli'

lint: $(BIN)/amc
	$(BIN)/ruff check .

clean:
	rm -rf runs/demo .pytest_cache
