# Turnout: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test tools lint typecheck unit conformance standalone wheel-test bench bench-tools clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/mesh demo

lint: setup
	$(BIN)/ruff format --check turnout tests bench
	$(BIN)/ruff check turnout tests bench

typecheck: setup
	$(BIN)/mypy turnout

unit: setup
	$(BIN)/pytest

test: tools lint typecheck unit standalone wheel-test

# Gateway API conformance on the wire (tests/conformance): real `mesh proxy` processes in front
# of echo backends, one report line per upstream test. `unit` runs the same suite as pytest items.
conformance: setup
	$(BIN)/python -m tests.conformance

# The suite stands alone: with no upstream reference data (../shared) everything collects,
# and the tests that read it skip with their reason instead of failing.
NO_SHARED := $(CURDIR)/build/no-shared
SHARED_USERS = $$(grep -rlE --include='*.py' 'REFERENCE|GATEWAY_API|SHARED|require_reference' tests)

standalone: setup
	TURNOUT_SHARED=$(NO_SHARED) $(BIN)/pytest -q -p no:cacheprovider --collect-only >/dev/null
	TURNOUT_SHARED=$(NO_SHARED) $(BIN)/pytest -q -p no:cacheprovider $(SHARED_USERS)

# What `pip install .` gives: the wheel, installed into a fresh venv (not editable), with
# the commands run from outside the clone (tests/wheel).
WHEEL_DIR := build/wheel
WHEEL_VENV := build/wheel-venv

wheel-test: setup
	rm -rf build/lib build/bdist* $(WHEEL_DIR) $(WHEEL_VENV)
	$(BIN)/pip wheel -q --disable-pip-version-check --no-deps . -w $(WHEEL_DIR)
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --disable-pip-version-check $(WHEEL_DIR)/turnout-*.whl
	TURNOUT_WHEEL_VENV=$(CURDIR)/$(WHEEL_VENV) $(BIN)/pytest -q -p no:cacheprovider tests/wheel

# Debian's prometheus for tests/flagger (Flagger's PromQL against a real Prometheus),
# iptables for tests/cluster/capture (`mesh proxy-init` in network namespaces), chromium and
# chromium-driver for tests/dashboard (the dashboard in a headless browser, Selenium).
# Machines run as root; `apt-get update` only when the install fails (fresh machine, empty lists).
tools:
	command -v prometheus >/dev/null 2>&1 || \
	  ($(APT_INSTALL) prometheus || (apt-get update && $(APT_INSTALL) prometheus))
	command -v iptables-restore >/dev/null 2>&1 || test -x /usr/sbin/iptables-restore || \
	  ($(APT_INSTALL) iptables || (apt-get update && $(APT_INSTALL) iptables))
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  ($(APT_INSTALL) chromium chromium-driver || \
	   (apt-get update && $(APT_INSTALL) chromium chromium-driver))

# wrk and nginx for bench/proxy.py (Debian packages; machines run as root). `apt-get update`
# only when the install fails, e.g. on a fresh machine with empty package lists.
BENCH_TOOLS := wrk nginx
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

bench-tools:
	@missing=""; for t in $(BENCH_TOOLS); do \
	  command -v $$t >/dev/null 2>&1 || test -x /usr/sbin/$$t || missing="$$missing $$t"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(APT_INSTALL) $$missing || { apt-get update && $(APT_INSTALL) $$missing; }; \
	fi

bench: setup bench-tools
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
