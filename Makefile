# Two commands matter: `make demo` and `make test`. Both bootstrap a pinned uv
# into .tools/ (only python3 >= 3.11 is needed on the machine) and install the
# locked environment into .venv/ from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
export LITELLM_LOCAL_MODEL_COST_MAP := True
BIN := .venv/bin

.PHONY: demo test lint typecheck pytest bench sync clean

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "penguiflow-agents needs Python >= 3.11, found " + sys.version'
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $@

sync: .venv/.synced

demo: sync
	$(BIN)/penguiflow-agents demo

lint: sync
	$(BIN)/ruff check penguiflow_agents tests examples benchmarks
	$(BIN)/ruff format --check penguiflow_agents tests examples benchmarks

typecheck: sync
	$(BIN)/mypy

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), each test file in one of them
# (module fixtures such as a shared MCP server stay one per file). 0 runs it in this process.
PYTEST_WORKERS ?= 2
pytest: sync
	$(BIN)/pytest -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: lint typecheck pytest

# Each script once; service URLs from PENGUIFLOW_BENCH_POSTGRES / PENGUIFLOW_BENCH_REDIS
# (see benchmarks/README.md). BENCH_PYTHON runs them (default: the project's Python).
BENCH_PYTHON ?= $(BIN)/python
bench: sync
	@for f in benchmarks/[!_]*.py; do echo "== $$f"; $(BENCH_PYTHON) $$f || exit 1; done

clean:
	rm -rf .venv .tools .penguiflow .pytest_cache .mypy_cache .ruff_cache
