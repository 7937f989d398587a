# The README's commands. `make demo` starts Labelwise on a fresh machine; `make test` runs
# lint and the whole suite on SQLite, then again on PostgreSQL when one is reachable.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/labelwise
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo serve test test-sqlite test-postgres lint bench clean

# torch is installed first and pinned to the local CPU wheel: left to the resolver, the
# loose `torch>=2.4` in pyproject.toml would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The web app, the learner and (SIMULATE=N, default 2; 0 = none) simulated annotators
# who label the demo corpus from its gold labels at a human pace.
SIMULATE ?= 2
demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	$(BIN)/python manage.py rundemo --addr $(HOST):$(PORT) --simulate $(SIMULATE)

serve: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy learner/ml
	$(BIN)/python manage.py makemigrations --check --dry-run

test: lint test-sqlite test-postgres

test-sqlite: install
	$(BIN)/python -m pytest

# The same suite against PostgreSQL, less the pure-Python learner tests (no database).
# Without a server it skips with a message, unless LABELWISE_REQUIRE_POSTGRES=1 (CI).
test-postgres: install
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(POSTGRES_URL)'.rsplit('/', 1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null; then \
		DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest --ignore=tests/learner/ml; \
	elif [ "$$LABELWISE_REQUIRE_POSTGRES" = "1" ]; then \
		echo "PostgreSQL at $(POSTGRES_URL) is not reachable and LABELWISE_REQUIRE_POSTGRES=1"; exit 1; \
	else \
		echo "SKIPPED: PostgreSQL tests (no server at $(POSTGRES_URL)). Start one, or set POSTGRES_URL=postgres://USER@HOST:PORT/DB, to run them."; \
	fi

bench: install
	$(BIN)/python bench/import.py
	$(BIN)/python bench/next_item.py
	$(BIN)/python bench/refresh.py
	$(BIN)/python bench/score.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
