"""Versioned, idempotent migrations of the app schema.

Each ``migrations/NNNN_name.sql`` runs once, in order, inside one transaction together with its row in
``vdi_schema_version``. An advisory lock makes concurrent callers (bridge, DAG, ``make run``) safe.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vdi.store.db import connect

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary constant shared by every process that migrates this schema.
_ADVISORY_LOCK_KEY = 0x5D1_5C4E


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, ordered by version; a misnamed or duplicate file is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def migrate(url: str | None = None, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every pending migration; return the versions applied now (empty when up to date)."""
    applied_now: list[int] = []
    with connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vdi_schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM vdi_schema_version")}
            for migration in available_migrations(directory):
                if migration.version in done:
                    continue
                conn.execute(migration.path.read_text())
                conn.execute(
                    "INSERT INTO vdi_schema_version (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="app database URL (default: $VDI_DATABASE_URL)")
    args = parser.parse_args(argv)
    applied = migrate(args.url)
    print(f"app schema: applied {applied}" if applied else "app schema: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
