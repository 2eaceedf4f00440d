"""Run ``vdi`` in-process with given settings and capture what it prints."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vdi.cli import main

# The sandboxes, moto and a migrated database, working (tests/plugins/vdi/test_check.py).
from tests.plugins.vdi.test_check import services_env  # noqa: F401


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def vdi(capsys):
    """``vdi(env, *argv)``: the exit code and what the command printed, with ``env`` as its whole environment."""

    def run(env: dict[str, str], *argv: str) -> Outcome:
        code = main(list(argv), environ=env)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
