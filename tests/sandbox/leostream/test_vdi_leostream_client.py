"""Our own Leostream client (``vdi.leostream``, ``vdi.broker``) against the sandbox: every request it sends and every
answer it gets is checked against the vendor's OpenAPI document."""

from __future__ import annotations

from tests.sandbox.leostream.conftest import API_PASSWORD
from tests.sandbox.leostream.conftest import API_USER as BROKER_USER
from tests.conftest import wait_until


def test_broker_registration_steps_send_what_the_leostream_document_allows(leostream):
    from vdi.broker import amazon_center, desktop_in_pool, ensure_assignment, ensure_policy, ensure_pool
    from vdi.leostream import LeostreamClient

    leostream.launch("vdi-VDI-9")
    leostream.login()
    leostream.add_center()
    client = LeostreamClient(leostream.url, BROKER_USER, API_PASSWORD)
    leostream.spec.watch(client.session)
    with client:
        policy_id = ensure_policy(client, "vdi-user-alice", "Desktops of alice")
        assert ensure_policy(client, "vdi-user-alice", "again") == policy_id
        pool_id = ensure_pool(client, "vdi-VDI-9", "vdi-VDI-9", "VDI Studios VDI-9")
        assert ensure_pool(client, "vdi-VDI-9", "vdi-VDI-9", "again") == pool_id
        assignment_id = ensure_assignment(client, policy_id, pool_id, 1)
        assert ensure_assignment(client, policy_id, pool_id, 1) == assignment_id
        assert client.create_user({"user_login": "alice", "name": "Alice", "is_local": 0,
                                   "auth_server": "Studio directory", "policy_name": "vdi-user-alice"}) is True
        assert client.create_user({"user_login": "alice", "name": "Alice", "is_local": 0,
                                   "auth_server": "Studio directory", "policy_name": "vdi-user-alice"}) is False
        client.scan_center(int(amazon_center(client)["id"]))
        vm = wait_until(lambda: desktop_in_pool(client, pool_id, "vdi-VDI-9"), message="the desktop in its pool")
        assert vm["user_id"] == 0
    leostream.spec.assert_clean()
