# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml package.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	npm install --no-audit --no-fund --silent
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m liuhen.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/protocol.py
	$(BIN)/python bench/recorder.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) node_modules
