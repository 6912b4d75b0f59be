# Two commands: `make run` (service on SQLite + local Ray) and `make test` (whole suite);
# `make lint` checks style and types (ruff, mypy; the same hooks run from .pre-commit-config.yaml).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install bench clean lint typecheck

$(BIN)/flowsweep: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[server]'
	touch $(BIN)/flowsweep

# the test and lint tools on top (pytest, Playwright, schemathesis, ruff, mypy)
$(VENV)/.dev-installed: $(BIN)/flowsweep
	$(BIN)/pip install -q -e '.[server,test,dev]'
	touch $@

install: $(BIN)/flowsweep

run: install
	$(BIN)/flowsweep serve

# numba compiles its kernels once into __pycache__ here, before Ray's workers all want them at once
test: $(VENV)/.dev-installed
	$(BIN)/python -c "import flowsweep.core as c; c.warm_up()"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff lint + format check over the repository, then mypy (strict on core and workers).
lint: $(VENV)/.dev-installed
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(MAKE) typecheck

# mypy cannot read pyproject's package-dir: build/typecheck/flowsweep links the folders as the wheel
# lays them out (flowsweep/core -> core, ...), and mypy checks the package `flowsweep` there.
typecheck: $(VENV)/.dev-installed
	rm -rf build/typecheck/flowsweep && mkdir -p build/typecheck/flowsweep
	for f in flowsweep/*.py; do ln -s "$(CURDIR)/$$f" build/typecheck/flowsweep/; done
	for d in core workers service migrations; do ln -s "$(CURDIR)/$$d" build/typecheck/flowsweep/$$d; done
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p flowsweep

bench: install
	$(BIN)/python bench/core_throughput.py
	$(BIN)/python bench/e2e_throughput.py

clean:
	rm -rf $(VENV) build flowsweep.db*
