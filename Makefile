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

# JOBS pytest-xdist workers (one torch thread each; 2 halve the suite's time on 2 cores, 3 were
# slower); tests/conftest.py groups the work: the Ray tests on one worker first, every other
# module whole on one worker. JOBS=0: one process, both threads.
JOBS ?= 2
XDIST := $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadgroup --no-loadscope-reorder)
test: $(BIN)/amc
	$(BIN)/python -m pytest $(XDIST)

# the in-process subset (no Ray, no subprocess CLI runs): a few minutes
test-fast: $(BIN)/amc
	$(BIN)/python -m pytest $(XDIST) -m 'not slow and not ray and not cli'

lint: $(BIN)/amc
	$(BIN)/ruff check .

clean:
	rm -rf runs/demo .pytest_cache
