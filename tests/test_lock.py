"""requirements.lock: one lock for every Python the Makefile accepts, resolved here for each without its
interpreter (uv's ``--python-version``), and exactly what ``make lock`` makes from requirements.txt.

Both ask PyPI (through uv's cache) for the packages' metadata.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"
MAKEFILE = REPO_ROOT / "Makefile"
PYTHON_VERSIONS = re.search(r"^PYTHON_VERSIONS := (.+)$", MAKEFILE.read_text(), re.M).group(1).split()
# The platform the stack and CI run on (and the official Airflow image's).
PLATFORM = "x86_64-manylinux_2_28"


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        pytest.fail("uv is not installed: `make venv` installs it into .venv")
    return found


def pins(text: str, python: str | None = None) -> dict[str, str]:
    """name -> version of a requirements file's pins; with ``python``, only those whose markers hold there."""
    environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    found = {}
    for line in text.splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement = Requirement(line)
        if python and requirement.marker and not Marker(str(requirement.marker)).evaluate(environment):
            continue
        found[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    return found


def test_the_makefile_supports_python_3_10_to_3_13():
    assert PYTHON_VERSIONS == ["3.13", "3.12", "3.11", "3.10"]


@pytest.mark.parametrize("python", PYTHON_VERSIONS)
def test_the_lock_alone_resolves_on_every_supported_python(python, tmp_path):
    """Resolving the lock's pins with their dependencies adds nothing and drops nothing: every package that
    Python needs is pinned, and each pin has a distribution for it."""
    resolved = tmp_path / "resolved.txt"
    result = subprocess.run(
        [uv(), "pip", "compile", str(LOCK), "--python-version", python, "--python-platform", PLATFORM,
         "--no-header", "--no-annotate", "--no-python-downloads", "--quiet", "-o", str(resolved)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"requirements.lock does not resolve on Python {python}:\n{result.stderr}"
    assert pins(resolved.read_text()) == pins(LOCK.read_text(), python)


def test_the_lock_is_what_make_lock_makes_from_requirements_txt(tmp_path):
    header = re.search(r"^#    (uv pip compile .+)$", LOCK.read_text(), re.M).group(1)
    dry_run = subprocess.run(["make", "--no-print-directory", "-n", "lock"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60)
    recipe = next(line for line in dry_run.stdout.splitlines() if " pip compile " in line)
    assert recipe.split("/bin/", 1)[1] == header, "the lock's header is not the command `make lock` runs"
    # The same command, writing a copy: uv keeps the pins it finds in the output file, as `make lock` does.
    relocked = tmp_path / "requirements.lock"
    relocked.write_text(LOCK.read_text())
    command = header.split()[1:-1] + [str(relocked)]
    result = subprocess.run([uv(), *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert relocked.read_text().splitlines()[2:] == LOCK.read_text().splitlines()[2:], (
        "requirements.lock is stale: run `make lock`")
