# Turnout: `make demo` and `make test` set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test tools lint typecheck unit bench bench-tools clean

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

test: tools lint typecheck unit

# Debian's prometheus for tests/flagger (Flagger's PromQL against a real Prometheus). Machines
# run as root; `apt-get update` only when the install fails (fresh machine, empty lists).
tools:
	command -v prometheus >/dev/null 2>&1 || \
	  ($(APT_INSTALL) prometheus || (apt-get update && $(APT_INSTALL) prometheus))

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
