"""Roles over HTTP on both databases: every protected route against every kind of key, /whoami,
and the admin key endpoints."""

import pytest
from sqlalchemy import update

from index.auth import GRANTS, create_key
from index.db import ApiKey

PNG_FILE = {"file": ("q.png", b"\x89PNG\r\n\x1a\n")}
# (method, path, request keyword arguments, the role it needs). The catalog is empty, so the
# allowed calls end in a 4xx of their own (empty catalog, not found, no previous head...).
ROUTES = [
    ("post", "/index", {"files": [("files", ("a.jpg", b"x"))], "data": {"concept": "c"}}, "ingest"),
    ("delete", "/sources/999", {}, "admin"),
    ("delete", "/concepts/nobody", {}, "admin"),
    ("get", "/takedowns/no-such", {}, "admin"),
    ("put", "/spaces/BAD", {}, "admin"),
    ("post", "/spaces/style/rollback", {}, "admin"),
    ("post", "/train", {}, "admin"),
    ("get", "/queries", {}, "admin"),
    ("get", "/queries/stats", {}, "admin"),
    ("delete", "/queries/999", {}, "admin"),
    ("get", "/audit", {}, "admin"),
    ("get", "/keys", {}, "admin"),
    ("post", "/keys", {"json": {"name": "made in the matrix", "role": "ingest"}}, "admin"),
    ("delete", "/keys/999", {}, "admin"),
    ("put", "/keys/999/role", {"json": {"role": "admin"}}, "admin"),
    ("post", "/cases", {"files": PNG_FILE}, "reviewer"),
    ("post", "/attribute?case=true", {"files": PNG_FILE}, "reviewer"),
    ("get", "/cases", {}, "reviewer"),
    ("get", "/cases/export?format=csv", {}, "reviewer"),
    ("get", "/cases/999", {}, "reviewer"),
    ("get", "/cases/999/image", {}, "reviewer"),
    ("get", "/cases/999/report", {}, "reviewer"),
    ("post", "/cases/999/decision", {"json": {"decision": "escalate"}}, "reviewer"),
    ("post", "/cases/999/rescore", {}, "reviewer"),
    ("get", "/jobs/no-such-job", {}, None),  # any role
]


@pytest.fixture
def keyed(start_api):
    """An app without rate limits (the matrix makes many calls) and one key per role, plus a key
    with no role (as a row could have one)."""
    api = start_api(write_rate_per_minute=0, auth_failures_per_minute=0)
    sessions = api.app.state.catalog.sessions
    keys = {role: create_key(sessions, f"{role} key", role)[1] for role in ("admin", "reviewer", "ingest")}
    row, keys["none"] = create_key(sessions, "roleless", "ingest")
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(role=None))
    return api, keys


def test_every_route_checks_the_role(keyed):
    api, keys = keyed
    for method, path, kwargs, needed in ROUTES:
        call = getattr(api.client, "request")
        for headers in ({}, {"X-API-Key": "attrib_wrong"}):
            response = call(method.upper(), path, headers=headers, **kwargs)
            assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized"), (path, headers)
        response = call(method.upper(), path, headers={"X-API-Key": keys["none"]}, **kwargs)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "no_role"), path
        for role in ("admin", "reviewer", "ingest"):
            response = call(method.upper(), path, headers={"X-API-Key": keys[role]}, **kwargs)
            if needed is None or needed in GRANTS[role]:
                assert response.status_code not in (401, 403, 500), (path, role, response.text)
            else:
                body = response.json()["error"]
                assert (response.status_code, body["code"]) == (403, "forbidden_role"), (path, role, response.text)
                assert repr(needed) in body["message"]


def test_open_reads_stay_open_and_whoami_names_the_key(keyed, start_api):
    api, keys = keyed
    assert api.client.get("/concepts").status_code == 200
    assert api.client.get("/sources/1").status_code == 404
    assert api.client.post("/attribute", files=PNG_FILE).json()["error"]["code"] == "corrupt_image"
    for role in ("admin", "reviewer", "ingest"):
        me = api.client.get("/whoami", headers={"X-API-Key": keys[role]}).json()
        assert me["role"] == role and me["name"] == f"{role} key" and isinstance(me["key_id"], int)
    assert api.client.get("/whoami", headers={"X-API-Key": keys["none"]}).json()["role"] is None
    assert api.client.get("/whoami").status_code == 401

    strict = start_api(require_key_for_reads=True)
    sessions = strict.app.state.catalog.sessions
    row, roleless = create_key(sessions, "roleless", "reviewer")
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(role=None))
    response = strict.client.get("/concepts", headers={"X-API-Key": roleless})
    assert (response.status_code, response.json()["error"]["code"]) == (403, "no_role")
    ingest_key = create_key(sessions, "ingest", "ingest")[1]
    assert strict.client.get("/concepts", headers={"X-API-Key": ingest_key}).status_code == 200


def test_admins_manage_keys_over_http(keyed):
    api, keys = keyed
    admin = {"X-API-Key": keys["admin"]}
    response = api.client.post("/keys", json={"name": "night reviewer", "role": "reviewer"}, headers=admin)
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["role"] == "reviewer" and made["key"].startswith(made["prefix"]) and made["revoked_at"] is None
    new = {"X-API-Key": made["key"]}
    assert api.client.get("/whoami", headers=new).json() == {"key_id": made["id"], "name": "night reviewer",
                                                             "role": "reviewer"}
    listed = api.client.get("/keys", headers=admin).json()
    assert [k["name"] for k in listed][-1] == "night reviewer" and all("key" not in k for k in listed)
    assert all("key_hash" not in k for k in listed)
    changed = api.client.put(f"/keys/{made['id']}/role", json={"role": "ingest"}, headers=admin).json()
    assert changed["role"] == "ingest" and api.client.get("/cases", headers=new).status_code == 403
    revoked = api.client.delete(f"/keys/{made['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api.client.get("/whoami", headers=new).status_code == 401
    assert api.client.delete(f"/keys/{made['id']}", headers=admin).status_code == 200  # again: no change

    for body in ({"name": "x", "role": "root"}, {"name": "", "role": "admin"}, {"name": "a\x00b", "role": "admin"},
                 {"name": "x" * 256, "role": "admin"}, {"name": "x"}, {"name": "x", "role": "admin", "extra": 1}, []):
        response = api.client.post("/keys", json=body, headers=admin)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request"), body
    response = api.client.post("/keys", json={"name": "cli", "role": "admin"}, headers=admin)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "reserved_name")
    response = api.client.post("/keys", content=b"{not json", headers=admin | {"content-type": "application/json"})
    assert response.status_code == 422
    for path in ("/keys/0", f"/keys/{2**31}", "/keys/99999999999999999999", "/keys/abc"):
        assert api.client.delete(path, headers=admin).status_code == 422, path
    response = api.client.delete("/keys/4242", headers=admin)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "key_not_found")

    actions = [(e["action"], e["key_name"]) for e in api.client.get("/audit?target_type=key", headers=admin).json()["items"]]
    assert actions[:3] == [("key.revoke", "admin key"), ("key.role", "admin key"), ("key.create", "admin key")]
    assert ("key.create", "cli") in actions
