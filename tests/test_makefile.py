"""The Makefile's own checks, before anything is installed or started."""

import subprocess

from tests.conftest import REPO_ROOT


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_missing_python_is_named_with_what_to_do(tmp_path):
    result = make("venv", "PYTHON=no-such-python3.11", f"VENV={tmp_path}/venv")
    assert result.returncode != 0
    assert "no-such-python3.11 not found: install Python 3.11" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_python_that_is_not_3_11_is_refused(tmp_path):
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\nexit 1\n")  # answers the version probe like a Python 3.12 would: not 3.11
    fake.chmod(0o755)
    result = make("venv", f"PYTHON={fake}", f"VENV={tmp_path}/venv")
    assert result.returncode != 0
    assert "is not Python 3.11" in result.stderr
    assert not (tmp_path / "venv").exists()
