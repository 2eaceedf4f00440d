"""webhook_bridge.app: what the factory wires, and how durable each kind of write is."""


def test_recorded_deliveries_wait_for_the_wal_flush_and_dispatcher_writes_do_not(app):
    bridge = app.extensions["webhook_bridge"]
    with bridge.pool.connection() as conn:  # the dispatcher's and health checks' connections
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    assert bridge.recorder._connection().execute("SHOW synchronous_commit").fetchone()[0] == "on"
