"""The Makefile's own checks, before anything is installed or started: which Python it builds the venv with."""

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT

MAKE = shutil.which("make")


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ) if path is None else {**os.environ, "PATH": path}
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def fake_python(directory: Path, name: str, version: str, supported: bool) -> Path:
    """A stand-in interpreter: answers the Makefile's version probe; anything else (``-m venv``) fails."""
    directory.mkdir(exist_ok=True)
    fake = directory / name
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then echo {version}; exit {0 if supported else 1}; fi\nexit 1\n')
    fake.chmod(0o755)
    return fake


def path_with_only(directory: Path) -> str:
    """A PATH holding ``directory`` and ``rm`` only: none of this machine's Pythons."""
    directory.mkdir(exist_ok=True)
    (directory / "rm").symlink_to(shutil.which("rm"))
    return str(directory)


def test_missing_python_is_named_with_what_to_do(tmp_path):
    result = make("venv", "PYTHON=no-such-python3", f"VENV={tmp_path}/venv")
    assert result.returncode != 0
    assert "no-such-python3 not found: install Python 3.10 to 3.13" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_python_outside_3_10_to_3_13_is_refused_with_its_version(tmp_path):
    fake = fake_python(tmp_path, "python3", "3.9", supported=False)
    result = make("venv", f"PYTHON={fake}", f"VENV={tmp_path}/venv")
    assert result.returncode != 0
    assert f"{fake} is Python 3.9, not one of 3.13 3.12 3.11 3.10" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_without_PYTHON_the_first_supported_python_on_the_path_builds_the_venv(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3", "3.9", supported=False)
    fake_python(bin_dir, "python3.12", "3.12", supported=True)
    fake_python(bin_dir, "python3.10", "3.10", supported=True)
    result = make("venv", f"VENV={tmp_path}/venv", path=path_with_only(bin_dir))
    assert "creating" in result.stdout and "with python3.12 (Python 3.12)" in result.stdout
    # The stand-in cannot make a venv: the Makefile says so and leaves nothing behind.
    assert result.returncode != 0
    assert "could not create" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_without_any_supported_python_make_names_the_versions_it_needs(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3", "3.14", supported=False)
    result = make("venv", f"VENV={tmp_path}/venv", path=path_with_only(bin_dir))
    assert result.returncode != 0
    assert "no supported Python found" in result.stderr and "install Python 3.10 to 3.13" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_make_test_leaves_out_the_slow_tests_and_make_test_slow_runs_only_them():
    fast = make("test", "PYTEST_ARGS=--collect-only -q -p no:cacheprovider tests/faults tests/test_makefile.py")
    slow = make("test-slow", "PYTEST_ARGS=--collect-only -q -p no:cacheprovider tests/faults tests/test_makefile.py")
    assert fast.returncode == 0 and slow.returncode == 0, fast.stderr + slow.stderr
    assert "tests/test_makefile.py::" in fast.stdout and "tests/faults/" not in fast.stdout
    assert "tests/faults/" in slow.stdout and "tests/test_makefile.py::" not in slow.stdout


def test_a_make_test_run_in_which_no_test_ran_fails_and_says_so():
    result = make("test-slow", "PYTEST_ARGS=--collect-only -q -p no:cacheprovider tests/test_makefile.py")
    assert result.returncode != 0
    assert "make test-slow: no tests ran" in result.stderr
