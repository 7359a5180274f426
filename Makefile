# chatsite: `make run` starts the app, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
BENCH ?= full

.PHONY: run test check faults install migrate static lint format bench screenshots messages clean

$(BIN)/.installed: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

static: install
	$(BIN)/python manage.py collectstatic --noinput -v 0

run: migrate static
	PORT=$(PORT) $(BIN)/python manage.py serve

test: install
	CELERY_QUEUE=chatsite-test $(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite alone (also part of `make test`). It is the production configuration's:
# set DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://... and REDIS_URL=redis://...
# (on the embedded default it skips). The fault table goes to <basetemp>/fault-table.md.
faults: install
	CELERY_QUEUE=chatsite-test $(BIN)/python -m pytest -m faults tests/faults $(PYTEST_ARGS)

# Starts its own stack (PostgreSQL+Redis when they answer on loopback, else the embedded
# default); `make bench` writes docs/benchmarks.md; `make bench BENCH=smoke` is a quick check
# that writes to a temporary file.
bench: install
	$(BIN)/python -m bench --mode $(BENCH)

# docs/screenshots/, made again from the running app in Chromium (bench/screenshots.py).
screenshots: install
	$(BIN)/python -m bench.screenshots

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What CI checks before the suite (also the pre-commit hooks): lint, and no model change
# without its migration.
check: lint
	$(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

messages: install
	$(BIN)/python manage.py makemessages -l zh_Hans --ignore=.venv --ignore=var
	$(BIN)/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) var
