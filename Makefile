# Plantline — the two commands: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Release binaries for the running stack; `PROFILE=dev make up` for a quicker debug build.
PROFILE ?= release
export PROFILE
# CI runs the nextest profile that never stops at the first failure.
NEXTEST_PROFILE := $(if $(filter true,$(CI)),ci,default)

.PHONY: help run up down status test faults fault-scenarios lint fmt services clean-test-dbs bench simulate soak dashboard browser-deps node-red-deps static-checks compose-env openapi

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: ## bring the whole system up on http://127.0.0.1:8080, foreground, Ctrl-C stops it
	@deploy/local/stack.sh run

up: ## like run, but detached
	@deploy/local/stack.sh up

down: ## stop everything `make up`/`make run`/`make test` started
	@deploy/local/stack.sh down

status: ## what is running
	@deploy/local/stack.sh status

services: ## make sure PostgreSQL, Redis, Mosquitto and InfluxDB answer on loopback
	@deploy/local/backing.sh ensure

# Third-party clients for the tests (PyJWT, schemathesis, ...): tests/interop/requirements.txt.
PYTHON_VENV := .plantline/venv
PYTHON_READY := $(PYTHON_VENV)/.requirements-installed
$(PYTHON_READY): tests/interop/requirements.txt
	@command -v python3 >/dev/null || (apt-get update -qq && apt-get install -y -qq python3 python3-venv)
	@test -x $(PYTHON_VENV)/bin/python || python3 -m venv $(PYTHON_VENV) || (apt-get install -y -qq python3-venv && python3 -m venv $(PYTHON_VENV))
	@$(PYTHON_VENV)/bin/pip install -q -r tests/interop/requirements.txt
	@touch $@

dashboard: ## build the dashboard query-api serves (npm ci, uPlot vendored into its dist/)
	@deploy/local/dashboard.sh

browser-deps: ## Chromium and playwright-core for the dashboard's browser test
	@deploy/local/browser.sh

node-red-deps: ## Node-RED and node-red-contrib-influxdb for the documented flow's test
	@deploy/local/node_red.sh

test: services clean-test-dbs $(PYTHON_READY) dashboard browser-deps node-red-deps static-checks ## run every test against the real services, then the fault scenarios
	@export PLANTLINE_TEST_PYTHON=$(CURDIR)/$(PYTHON_VENV)/bin/python; \
	status=0; cargo build --workspace --bins --quiet && \
	  cargo nextest run --workspace --profile $(NEXTEST_PROFILE) -E 'not binary(faults)' || status=$$?; \
	if [ $$status = 0 ] || [ "$(CI)" = "true" ]; then $(MAKE) --no-print-directory fault-scenarios || status=$$?; fi; \
	if [ "$(CI)" = "true" ]; then deploy/local/backing.sh stop; fi; exit $$status

faults: services clean-test-dbs dashboard ## the fault scenarios (stopped, slow, refusing and silent dependencies, a damaged spool, a full disk, SIGTERM), with a pass/fail summary
	@cargo build --workspace --bins --quiet
	@$(MAKE) --no-print-directory fault-scenarios

# Each scenario has its own backing services, so three run at once; their summaries are
# printed together at the end.
fault-scenarios:
	@rm -rf target/test-output/faults; status=0; \
	cargo nextest run -p plantline-e2e --test faults --profile $(NEXTEST_PROFILE) --test-threads 3 || status=$$?; \
	printf '\n==> fault scenarios (%s s outages)\n\n' "$${PLANTLINE_FAULT_SECS:-30}"; \
	ls target/test-output/faults/*.txt 2>/dev/null | sort -V | xargs -r cat; \
	ls target/test-output/faults/*.txt >/dev/null 2>&1 || echo "no summaries written"; exit $$status

simulate: up ## send live telemetry for the demo machines (RATE readings/s, MQTT=1 publishes over MQTT, SPARKPLUG=1 as Sparkplug B, Ctrl-C stops)
	cargo build --profile $(PROFILE) --quiet -p plantline-simulator
	target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/plantline-sim --rate $(or $(RATE),20) $(if $(OVERHEAT),--overheat $(OVERHEAT)) $(if $(or $(MQTT),$(SPARKPLUG)),--mqtt tcp://127.0.0.1:1884) $(if $(SPARKPLUG),--sparkplug)

bench: up ## measure against same-run baselines, write bench/report.md + plots (ONLY=mqtt runs one section)
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || apt-get install -y -qq fonts-dejavu-core >/dev/null
	cargo build --profile $(PROFILE) --quiet -p plantline-bench
	target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/plantline-bench --base-url http://127.0.0.1:8080 --demo-env .plantline/demo.env $(if $(ONLY),--only $(ONLY))

soak: up ## steady HTTP + MQTT load for MINUTES (default 10): memory of every service over time, errors, loss
	cargo build --profile $(PROFILE) --quiet -p plantline-bench
	target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/plantline-bench --base-url http://127.0.0.1:8080 --demo-env .plantline/demo.env soak $(or $(MINUTES),10)

lint: static-checks ## formatting, clippy (warnings are errors) and the static checks
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

static-checks: ## Dockerfile, compose, Kubernetes, workflows, OpenAPI and AsyncAPI validated without Docker or a cluster
	@deploy/lint/check.sh

openapi: ## regenerate proto-docs/openapi.json from the handlers (a test fails while it is stale)
	PLANTLINE_UPDATE_OPENAPI=1 cargo nextest run -p plantline-e2e openapi::the_committed_merged_document_is_the_generated_one

compose-env: ## generate deploy/compose/.env and the token keys for `docker compose` (kept out of git)
	@deploy/compose/init-env.sh

fmt: ## format the code
	cargo fmt --all

clean-test-dbs: ## drop databases, Influx databases and Redis keys left behind by interrupted test runs
	@curl -fsS -XPOST http://127.0.0.1:8086/query --data-urlencode 'q=SHOW DATABASES' \
	  | grep -o '"plantline_test_[a-z0-9_]*"' | tr -d '"' \
	  | while read -r db; do curl -fsS -o /dev/null -XPOST http://127.0.0.1:8086/query --data-urlencode "q=DROP DATABASE \"$$db\""; done || true
	@redis-cli -h 127.0.0.1 --scan --pattern 'plantline_test:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null || true
	@awk '$$1 == "plantline-test-disk" {print $$2}' /proc/mounts | xargs -r -n 1 umount -l 2>/dev/null || true
	@rm -rf /tmp/plantline-test-spool-* /tmp/plantline-test-broker-* /tmp/plantline-test-keys-* /tmp/plantline-test-nginx-* /tmp/plantline-fault-logs-*
	@for dir in /tmp/plantline-test-postgres-* /tmp/plantline-test-redis-* /tmp/plantline-test-mosquitto-* /tmp/plantline-test-influxdb-*; do \
	  [ -d "$$dir" ] || continue; \
	  for pid in "$$dir"/run/*.pid; do [ -s "$$pid" ] && kill -KILL "$$(cat "$$pid")" 2>/dev/null; done; \
	  rm -rf "$$dir"; \
	done; true
	@psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
	  "SELECT 'DROP DATABASE IF EXISTS \"' || datname || '\" WITH (FORCE);' FROM pg_database WHERE datname LIKE 'plantline_test_%'" \
	  | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null
