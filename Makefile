# VDI Studios: `make run` starts the local stack, `make test` runs the whole suite.
SHELL := /bin/bash
# Airflow 3.3 runs on Python 3.10 to 3.13 (Debian 13 ships 3.13); requirements.lock resolves for each.
PYTHON_VERSIONS := 3.13 3.12 3.11 3.10
# Prints the interpreter's version; fails unless it is one of PYTHON_VERSIONS.
PYTHON_PROBE := import sys; v = "%d.%d" % sys.version_info[:2]; print(v); sys.exit(v not in "$(PYTHON_VERSIONS)".split())
# The first supported of python3, python3.13 ... python3.10 (or PYTHON=); looked for only when a venv is created.
PYTHON ?= $(shell for p in python3 $(addprefix python,$(PYTHON_VERSIONS)); do \
  $$p -c '$(PYTHON_PROBE)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
VPY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: run stop status clean test test-slow lock venv

venv: $(STAMP)

# (Re)install whenever the lock or pyproject.toml is newer than the last successful install: the locked
# dependencies, then this repository's distribution (vdi, webhook_bridge, the Airflow provider), editable.
$(STAMP): requirements.lock pyproject.toml
	@if test -x $(VPY); then \
	  $(VPY) -c '$(PYTHON_PROBE)' >/dev/null || { echo "make: $(VENV) runs Python $$($(VPY) -c '$(PYTHON_PROBE)'), not one of $(PYTHON_VERSIONS): remove $(VENV) and run make again" >&2; exit 1; }; \
	else \
	  test -n "$(PYTHON)" || { echo "make: no supported Python found (python3, python3.13 ... python3.10): install Python 3.10 to 3.13 (or set PYTHON=/path/to/python3)" >&2; exit 1; }; \
	  command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.10 to 3.13 (or set PYTHON=/path/to/python3)" >&2; exit 1; }; \
	  version=$$($(PYTHON) -c '$(PYTHON_PROBE)' 2>/dev/null) || { echo "make: $(PYTHON) is Python $${version:-(unknown)}, not one of $(PYTHON_VERSIONS): set PYTHON=/path/to/python3" >&2; exit 1; }; \
	  echo "[vdi] creating $(VENV) with $(PYTHON) (Python $$version)"; \
	  $(PYTHON) -m venv $(VENV) || { echo "make: could not create $(VENV) with $(PYTHON)" >&2; rm -rf $(VENV); exit 1; }; \
	fi
	@$(VPY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) >/dev/null || { echo "make: could not install uv into $(VENV): check the network to PyPI" >&2; exit 1; }
	@echo "[vdi] installing the locked dependencies into $(VENV)"
	@$(VENV)/bin/uv pip install -q --python $(VPY) -r requirements.lock || { echo "make: installing requirements.lock failed (see above): fix it and run make again" >&2; rm -f $(STAMP); exit 1; }
	@$(VENV)/bin/uv pip install -q --python $(VPY) --no-deps -e . || { echo "make: installing this repository (pyproject.toml) into $(VENV) failed (see above)" >&2; rm -f $(STAMP); exit 1; }
	@touch $(STAMP)

run: $(STAMP)
	@$(VPY) -m sandbox.stack run

stop:
	@if test -x $(VPY); then $(VPY) -m sandbox.stack stop; else echo "[vdi] nothing was running"; fi

status: $(STAMP)
	@$(VPY) -m sandbox.stack status

clean:
	@if test -x $(VPY); then $(VPY) -m sandbox.stack clean; else rm -rf .local; fi

# pytest's exit 5 means no test ran: that is a failure here. `make test` leaves out the tests marked slow (each
# starts a stack of its own and takes minutes: Celery, the fault suite, the burst smoke run); `make test-slow` runs
# only those. CI (.ci/run) runs both.
PYTEST_RUN = $(VPY) -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
  if [ $$rc -eq 5 ]; then echo "make $@: no tests ran" >&2; exit 1; fi; exit $$rc

test: $(STAMP)
	@$(call PYTEST_RUN,-m "not slow")

test-slow: $(STAMP)
	@$(call PYTEST_RUN,-m slow)

# Regenerate the full lock from requirements.txt (pins every transitive package): one universal lock for every
# supported Python, forked by markers only where a package needs it; the pins already in the lock are kept.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements.txt --universal --python-version $(lastword $(PYTHON_VERSIONS)) --no-python-downloads -o requirements.lock
