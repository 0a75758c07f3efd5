# One command runs the product (`make run`), one passes its tests (`make test`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench soak mutate screens demo install install-dev worker beat \
	clean messages update-messages client-ts

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) || { echo "Could not create $(VENV): on Debian run 'apt-get install python3-venv'."; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

# Installing compiles the translations too (below): every process that serves needs them.
install: $(VENV)/.installed messages
install-dev: $(VENV)/.installed-dev messages

# The translations (locale/<language>/LC_MESSAGES/django.po), compiled by gettext's msgfmt;
# `make update-messages` adds what the code and templates say since (then translate it: the
# suite fails on any message a catalog lacks, tests/test_translations.py).
MO := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/django.po))
# Without gettext (and not root to install it) the product still runs, in English only, and
# the suite fails until the catalogs are compiled.
%.mo: %.po
	@command -v msgfmt >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq gettext >/dev/null; } || true
	@if command -v msgfmt >/dev/null; then msgfmt --check --output-file=$@ $<; \
	else echo "msgfmt is missing (apt-get install gettext): $@ not compiled, English only"; fi
messages: $(MO)
update-messages: install
	$(PY) manage.py makemessages $(foreach l,$(notdir $(wildcard locale/*)),-l $(l)) \
		-e html,email,py --no-location --ignore=.venv --ignore=bench --ignore=tests \
		--ignore='*/tests/*'

run: export DEBUG ?= true
run: export PORT := $(PORT)
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_dev_superuser
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install-dev client-ts
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install-dev
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m bench

# Mutation testing of the code that guards evidence and money (bench/mutate): slow, not in CI;
# MUTATE_ARGS=outbox runs one module. Writes bench/results/mutation.json.
mutate: install-dev
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m bench.mutate $(MUTATE_ARGS)

# The production topology on this machine under load and faults (bench/soak); SOAK_ARGS=--short
# is the CI run.
soak: install-dev
	$(PY) -m bench.soak $(SOAK_ARGS)

# Pictures of the product in a real browser (the walk-through test, its screenshots kept): the
# invoice PDF, the client's download page, the staff dashboard and the outbox preview.
screens: install-dev
	SCREENS_DIR=$(CURDIR)/bench/results/screens $(VENV)/bin/pytest -q -p no:cacheprovider \
		tests/browser/test_walkthrough.py

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) -m demo

# The TypeScript client typed from the API schema (clients/ts): the schema dumped (no database
# needed), the client generated, type-checked under --strict and built; tests/
# test_typescript_client.py then walks the SPA's flows with it against the running app.
CLIENT_TS := clients/ts
$(CLIENT_TS)/node_modules/.installed: $(CLIENT_TS)/package-lock.json
	cd $(CLIENT_TS) && npm ci --no-audit --no-fund
	@touch $@
client-ts: install-dev $(CLIENT_TS)/node_modules/.installed
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py spectacular --format openapi-json \
		--file $(CLIENT_TS)/openapi.json
	cd $(CLIENT_TS) && npm run generate && npm run build  # tsc --strict: type errors fail

worker: install
	$(VENV)/bin/celery -A invoicegen worker --loglevel=INFO

beat: install
	$(VENV)/bin/celery -A invoicegen beat --loglevel=INFO

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
