# Two commands: `make run` (service on SQLite + local Ray) and `make test` (whole suite).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install bench clean

$(BIN)/flowsweep: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[server,test]'
	touch $(BIN)/flowsweep

install: $(BIN)/flowsweep

run: install
	$(BIN)/flowsweep serve

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/core_throughput.py
	$(BIN)/python bench/e2e_throughput.py

clean:
	rm -rf $(VENV) flowsweep.db*
