# VDI Studios: `make run` starts the local stack, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: run stop status clean test lock venv

venv: $(STAMP)

# (Re)install whenever the lock or pyproject.toml is newer than the last successful install: the locked
# dependencies, then this repository's distribution (vdi, webhook_bridge, the Airflow provider), editable.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "make: $(PYTHON) is not Python 3.11: set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV) || { echo "make: could not create $(VENV) with $(PYTHON)" >&2; rm -rf $(VENV); exit 1; }
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

# pytest's exit 5 means no test ran: that is a failure here.
test: $(STAMP)
	@$(VPY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

# Regenerate the full lock from requirements.txt (pins every transitive package).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
