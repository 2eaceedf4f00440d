"""webhook_bridge.app: what the factory wires, and how durable each kind of write is."""


def test_recorded_deliveries_wait_for_the_wal_flush(app):
    bridge = app.extensions["webhook_bridge"]
    assert bridge.recorder._connection().execute("SHOW synchronous_commit").fetchone()[0] == "on"
