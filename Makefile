# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP_FLAGS := --disable-pip-version-check --no-input --quiet

.PHONY: demo check test unit integration test-deps sandbox-deps claude-code test-fault bench install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) sandbox-deps
	$(BIN)/hq demo

# Lint, format, types and the import floors (docs/architecture.md): what CI runs before the tests.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Every tier: tests/unit, tests/integration and the quick runs of tests/fault (pyproject.toml's testpaths).
test: $(STAMP) test-deps sandbox-deps claude-code
	$(BIN)/pytest -q

# The fast tier alone: pure logic, no PostgreSQL and no subprocess (tests/unit/conftest.py fails a test that
# tries), in well under 30 s on any machine with the venv.
unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Against the real embedded PostgreSQL, git, bubblewrap and the fakes; what it needs from the system as for `test`.
integration: $(STAMP) test-deps sandbox-deps claude-code
	$(BIN)/pytest -q tests/integration

# What some tests need from the system: a PostgreSQL server and PgBouncer, as operators run them.
# Installed when this is root on Debian; otherwise those tests are skipped and say what to install.
test-deps:
	@if ! command -v pgbouncer >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing pgbouncer and postgresql for the external-database tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      pgbouncer postgresql) >/dev/null || echo "could not install them: those tests will be skipped"; \
	  else \
	    echo "pgbouncer or a PostgreSQL server is missing: the external-database tests will be skipped"; \
	  fi; \
	fi

# Project commands run in a bubblewrap sandbox (projects/sandbox.py; HQ_SANDBOX=none runs them unconfined).
# Installed when this is root on Debian; otherwise say what is missing (the sandbox tests then skip).
sandbox-deps:
	@if ! command -v bwrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing bubblewrap for the project-command sandbox"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      bubblewrap) >/dev/null || echo "could not install bubblewrap: install it, or set HQ_SANDBOX=none"; \
	  else \
	    echo "bwrap is missing: install bubblewrap (apt-get install bubblewrap), or set HQ_SANDBOX=none"; \
	  fi; \
	fi

# The Claude Code CLI, for roles with `runtime: claude-code` and its tests: pinned, under tools/ (git-ignored),
# never a global install. Needs npm (Node.js 20); without it those tests are skipped and say why.
CLAUDE_CODE_VERSION := 2.1.197
CLAUDE_CODE := tools/claude-code/node_modules/.bin/claude
claude-code:
	@if [ -x $(CLAUDE_CODE) ] && $(CLAUDE_CODE) --version 2>/dev/null | grep -q '^$(CLAUDE_CODE_VERSION) '; then :; \
	elif command -v npm >/dev/null; then \
	  echo "installing Claude Code $(CLAUDE_CODE_VERSION) under tools/claude-code"; \
	  mkdir -p tools/claude-code && npm install --prefix tools/claude-code --no-save --no-package-lock --no-audit \
	    --no-fund --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) >/dev/null \
	    || echo "could not install Claude Code: its tests will be skipped"; \
	else \
	  echo "npm is missing: the Claude Code tests will be skipped (install Node.js 20 and npm)"; \
	fi

test-fault: $(STAMP)
	$(BIN)/pytest -q -m 'slow or not slow' tests/fault

bench: $(STAMP)
	$(BIN)/python -m bench.all

clean:
	rm -rf $(VENV) var build tools *.egg-info
