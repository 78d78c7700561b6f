# The README's commands. Each installs what it needs: uv (with pip, if missing) and .venv from uv.lock.
PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
VENV := .venv
DIST ?= dist
export AIRFLOW_HOME := $(CURDIR)/.airflow
export UV_PYTHON_DOWNLOADS := never

.PHONY: uv venv venv-runtime test test-e2e test-matrix lint format bench demo docs dist clean

# uv, installed with pip when missing (as the user where the system Python is externally managed).
uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv

# Two stamps, as the demo needs only the runtime dependencies: the dev sync (a superset) marks
# both; the runtime sync keeps what it does not need (--inexact), so a later `make test` still
# finds the dev group installed, or, without its stamp, installs it.
$(VENV)/.synced-dev: uv.lock pyproject.toml | uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@ $(VENV)/.synced-runtime

$(VENV)/.synced-runtime: uv.lock pyproject.toml | uv
	$(UV) sync --frozen --no-dev --inexact --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced-dev

venv-runtime: $(VENV)/.synced-runtime

lint: venv
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .
	$(UV) run --frozen --no-sync mypy

format: venv
	$(UV) run --frozen --no-sync ruff format .
	$(UV) run --frozen --no-sync ruff check --fix .

test: lint
	$(UV) run --frozen --no-sync pytest -m "not e2e"

# Real Airflow processes (scheduler, dag-processor, triggerer, API server) and the built wheel.
test-e2e: venv
	$(UV) run --frozen --no-sync pytest -m e2e

# The documentation site in site/ (strict: any warning fails). No stamp: `uv run` installs the docs
# group on demand and inexactly, so the dev and runtime installs and their stamps stay as they were,
# and a later exact dev sync that drops the group is undone by the next `make docs`.
docs: uv
	$(UV) run --frozen --only-group docs --python $(PYTHON) mkdocs build --strict --site-dir site

dist: venv
	rm -rf $(DIST)
	$(UV) build --quiet --out-dir $(DIST)
	$(UV) run --frozen --no-sync twine check --strict $(DIST)/*

# Each (Python, Airflow) cell in its own .venv-matrix/ venv: see .ci/matrix. MATRIX=ci: CI's cell.
test-matrix: uv
	UV="$(UV)" .ci/matrix $(MATRIX)

bench: venv
	$(UV) run --frozen --no-sync python -m benchmarks

demo: venv-runtime
	$(UV) run --frozen --no-sync python -m dags_examples.demo

clean:
	rm -rf $(VENV) .venv-matrix .airflow demo-output dist site
