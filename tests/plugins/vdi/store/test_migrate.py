import psycopg
import pytest

from vdi.states import DeliveryStatus, RequestState
from vdi.store.migrate import available_migrations, migrate


def test_migrate_applies_every_migration_once_then_nothing(empty_database_url):
    versions = [m.version for m in available_migrations()]
    assert migrate(empty_database_url) == versions
    assert migrate(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        recorded = [row[0] for row in conn.execute("SELECT version FROM vdi_schema_version ORDER BY version")]
    assert recorded == versions


def test_concurrent_migrations_apply_each_version_once(empty_database_url):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(empty_database_url), range(4)))
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in available_migrations()]


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "1_first.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_name.sql"):
        available_migrations(tmp_path)


def test_failed_migration_leaves_schema_unchanged(empty_database_url, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t_ok (id int)")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE t_broken (id int); SELECT no_such_column FROM t_ok")
    with pytest.raises(psycopg.errors.UndefinedColumn):
        migrate(empty_database_url, tmp_path)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('t_ok'), to_regclass('vdi_schema_version')").fetchone() == (None, None)


def _check_values(conn, table: str, column: str) -> set[str]:
    definition = conn.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
        " WHERE t.relname = %s AND c.contype = 'c' AND pg_get_constraintdef(c.oid) LIKE %s",
        (table, f"%{column}%"),
    ).fetchone()[0]
    import re

    return set(re.findall(r"'([a-z_]+)'::text", definition))


def test_state_check_constraints_match_the_enums(app_database_url):
    with psycopg.connect(app_database_url) as conn:
        assert _check_values(conn, "desktop_requests", "state") == {s.value for s in RequestState}
        assert _check_values(conn, "deliveries", "status") == {s.value for s in DeliveryStatus}


def test_request_events_refuse_update_and_delete(app_database_url):
    with psycopg.connect(app_database_url, autocommit=True) as conn:
        request_id = conn.execute(
            "INSERT INTO desktop_requests (request_id, issue_key, project_key, state)"
            " VALUES (gen_random_uuid(), 'VDI-1', 'VDI', 'received') RETURNING request_id"
        ).fetchone()[0]
        conn.execute("INSERT INTO request_events (request_id, step, outcome) VALUES (%s, 'persist', 'ok')",
                     (request_id,))
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE request_events SET outcome = 'changed'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM request_events")
        assert conn.execute("SELECT outcome FROM request_events").fetchall() == [("ok",)]
