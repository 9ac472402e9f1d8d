# `make test`: create .venv/, install crashwatch with training and test extras at the tested versions, run
# the tests. On this project's CPU machines pip takes torch 2.13.0 from the CPU wheel on disk; on a GPU
# machine with internet the same command brings the CUDA build of the same version.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-train

.PHONY: test install clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[cpu,train,test]"
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
