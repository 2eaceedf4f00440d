"""What taking a desktop out of the broker meets in the Leostream sandbox: a pool a policy still offers cannot be
deleted (409 CONFLICT); once its assignment is gone it can, and is gone for good (404). Checked against the
vendor's document by the ``leostream`` fixture."""

from __future__ import annotations


def test_a_pool_still_assigned_is_kept_and_deleted_once_its_assignment_is_gone(leostream):
    leostream.login()
    api, http = leostream.api, leostream.http
    pool_id = leostream.add_pool("vdi-VDI-1", {"restrict_by": "A", "attributes": [
        {"vm_table_field": "name", "condition_type": "eq", "text_to_match": "vdi-vdi-1"}]})
    policy_id = http.post(f"{api}/policies", json={"name": "vdi-user-alice"}).json()["stored_data"]["id"]
    assignment_id = http.post(f"{api}/policies/{policy_id}/pool-assignments",
                              json={"pool_id": pool_id}).json()["stored_data"]["id"]

    refused = http.delete(f"{api}/pools/{pool_id}")
    assert refused.status_code == 409 and refused.json()["error_status"] == "CONFLICT"
    assert http.get(f"{api}/pools/{pool_id}").status_code == 200

    assert http.delete(f"{api}/policies/{policy_id}/pool-assignments/{assignment_id}").status_code == 204
    assert http.get(f"{api}/policies/{policy_id}/pool-assignments").json() == []
    assert http.delete(f"{api}/pools/{pool_id}").status_code == 204
    assert http.get(f"{api}/pools/{pool_id}").status_code == 404
    assert http.delete(f"{api}/pools/{pool_id}").status_code == 404
    assert http.get(f"{api}/policies/{policy_id}").status_code == 200  # the policy stays
