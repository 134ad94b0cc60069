# Every target sets itself up from a machine with only python3 and make: the first run makes
# .tools/ (uv) and .venv/ (the project with its db extra and dev tools).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# make migrate's database when GRANITE_ASSETS_DATABASE_URL is not set.
DEFAULT_DATABASE_URL := sqlite:///granite_assets.db
PYTEST_ARGS ?=
# The test targets run pytest-xdist with PYTEST_WORKERS workers (0: none, all in one process), each
# test sent to whichever worker is free. Three per core: most tests wait on a server or a child
# process (measured on 2 cores, 1,310 tests: 4 workers 5m56s, 6 workers 5m15s, 8 workers 6m06s).
PYTEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(3 * (os.cpu_count() or 1))')
PYTEST_XDIST := -n $(PYTEST_WORKERS)
# The database servers the tests use (see tests/conftest.py); unreachable ones are skipped
# unless GRANITE_ASSETS_TEST_REQUIRE names them, as CI does.
export GRANITE_ASSETS_TEST_POSTGRESQL_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
export GRANITE_ASSETS_TEST_MYSQL_URL ?= mysql+pymysql://root@127.0.0.1:3306/

.PHONY: help
help: ## List the targets and what each does
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: the tests start hundreds of Python processes (replicas, the command line), and
# where PYTHONDONTWRITEBYTECODE is set (or .venv is read-only) each would compile SQLAlchemy and Alembic afresh.
$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV) sync --quiet --compile-bytecode --extra db --group dev
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with the db extra and every dev tool

# The URL reaches granite-assets through its own variable, GRANITE_ASSETS_DATABASE_URL, expanded by
# the shell: it never appears in the echoed recipe or in a process's arguments, so its password
# stays off the terminal and out of the process list. DATABASE_URL, which many application shells
# export, is deliberately not read: it would retarget this command to the application's database.
.PHONY: migrate
migrate: $(VENV)/.installed ## Upgrade GRANITE_ASSETS_DATABASE_URL (default: ./granite_assets.db) to head
	$(if $(filter command line,$(origin DATABASE_URL)),$(error make migrate reads GRANITE_ASSETS_DATABASE_URL \
	  from the environment, not DATABASE_URL: export GRANITE_ASSETS_DATABASE_URL=... and run make migrate))
	GRANITE_ASSETS_DATABASE_URL="$${GRANITE_ASSETS_DATABASE_URL:-$(DEFAULT_DATABASE_URL)}" \
	  $(VENV)/bin/granite-assets db upgrade

.PHONY: test
test: $(VENV)/.installed ## Run the whole test suite on every core (servers it cannot reach are skipped, or fail under CI)
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: lint
lint: $(VENV)/.installed ## Check style: ruff lint and ruff format --check (changes nothing)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

.PHONY: format
format: $(VENV)/.installed ## Apply ruff's safe fixes, then format the code
	$(VENV)/bin/ruff check --fix
	$(VENV)/bin/ruff format

.PHONY: typecheck
typecheck: $(VENV)/.installed ## Run mypy (strict) over src (revision files included), scripts, tests, benchmarks
	$(VENV)/bin/mypy

.PHONY: migrate-create
migrate-create: $(VENV)/.installed ## Autogenerate a revision from models.py: MSG="add asset table" [EMPTY=1]
	$(PY) scripts/migrate_create.py --message "$${MSG-}" $(if $(EMPTY),--empty)

.PHONY: migrate-manifest
migrate-manifest: $(VENV)/.installed ## Regenerate alembic/revisions.json from the revision files
	$(PY) scripts/write_manifest.py

.PHONY: migrate-check
migrate-check: $(VENV)/.installed ## Fail when models, revisions and revisions.json disagree, on several heads, or when squawk flags a revision
	$(PY) scripts/migrate_check.py

.PHONY: check-wheel
check-wheel: $(VENV)/.installed ## Build sdist and wheel, check the wheel, install it and migrate SQLite; keep both in dist/
	$(PY) scripts/check_wheel.py

.PHONY: test-matrix
test-matrix: $(VENV)/.installed ## Run the suite on Python 3.11, 3.12 and 3.13 (.venv-py3.X; PYTEST_ARGS passed on)
	$(PY) scripts/run_matrix.py --python 3.11 --python 3.12 --python 3.13 -- $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: test-lowest
test-lowest: $(VENV)/.installed ## Run the database-facing tests with the lowest declared alembic and SQLAlchemy (.venv-lowest; see scripts/run_matrix.py)
	$(PY) scripts/run_matrix.py --lowest -- $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: docs
docs: $(VENV)/.installed ## Build the HTML docs into docs/_build/html and run their examples (warnings fail)
	$(VENV)/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build -W --keep-going -n -b doctest docs docs/_build/doctest
	@echo "The docs are built: open $(CURDIR)/docs/_build/html/index.html"

# playwright (the browser group, 160 MB) is added to .venv only here, so make test never needs it.
.PHONY: docs-check
docs-check: docs ## Render the built docs in headless Chromium at 390 and 1280 px; fail on an overflowing code block, a broken name, a missing stylesheet
	$(UV) run --quiet --extra db --group dev --group browser python scripts/check_docs_layout.py docs/_build/html

.PHONY: bench
bench: $(VENV)/.installed ## Measure the no-op path, full upgrades, imports, the CLI, host waits (prints ratios; BENCH_ARGS=--quick)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
