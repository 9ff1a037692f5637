"""Organizations, collaborations, users and nodes: CRUD, permissions across organizations, pagination, filters."""

from __future__ import annotations

import base64

import pytest

from tests.server.conftest import Network


def test_admin_sees_everything_users_see_their_collaborations(server_net: Network):
    c = server_net.client
    all_orgs = c.get("/api/organization", headers=server_net.root).json
    assert all_orgs["total"] == 4  # root + a, b, c
    alice = c.get("/api/organization", headers=server_net.users["alice"]).json
    assert {o["name"] for o in alice["data"]} == {"a", "b"}
    bob = c.get("/api/organization", headers=server_net.users["bob"]).json
    assert {o["name"] for o in bob["data"]} == {"a", "b", "c"}
    assert (
        c.get(
            f"/api/organization/{server_net.orgs['c']}", headers=server_net.users["alice"]
        ).status_code
        == 403
    )
    cols = c.get("/api/collaboration", headers=server_net.users["alice"]).json["data"]
    assert [x["name"] for x in cols] == ["ab"]
    assert (
        c.get(
            f"/api/collaboration/{server_net.collabs['bc']}", headers=server_net.users["alice"]
        ).status_code
        == 403
    )
    nodes = c.get("/api/node", headers=server_net.users["alice"]).json["data"]
    assert {n["collaboration_id"] for n in nodes} == {server_net.collabs["ab"]}
    users = c.get("/api/user", headers=server_net.users["alice"]).json["data"]
    assert [u["username"] for u in users] == ["alice"]
    assert (
        c.get(
            f"/api/user/{server_net.user_ids['bob']}", headers=server_net.users["alice"]
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/organization", {"name": "x"}),
        ("post", "/api/collaboration", {"name": "x", "organization_ids": []}),
        ("post", "/api/user", {"username": "x", "password": "12345678", "organization_id": 1}),
        ("post", "/api/node", {"organization_id": 1, "collaboration_id": 1}),
        ("delete", "/api/organization/1", None),
        ("delete", "/api/collaboration/1", None),
        ("patch", "/api/collaboration/1", {"name": "y"}),
        ("post", "/api/collaboration/1/organization", {"id": 1}),
        ("patch", "/api/node/1", {"name": "y"}),
        ("delete", "/api/node/1", None),
        ("delete", "/api/user/1", None),
    ],
)
def test_admin_only_endpoints_forbidden_for_users(server_net: Network, method, path, body):
    r = getattr(server_net.client, method)(path, json=body, headers=server_net.users["alice"])
    assert r.status_code == 403
    assert r.json["code"] == "forbidden"


def test_organization_crud_and_filters(server_net: Network):
    c, root = server_net.client, server_net.root
    r = c.patch(
        f"/api/organization/{server_net.orgs['a']}", json={"domain": "a.example"}, headers=root
    )
    assert r.status_code == 200 and r.json["domain"] == "a.example"
    r = c.get("/api/organization", query_string={"name": "b"}, headers=root)
    assert [o["id"] for o in r.json["data"]] == [server_net.orgs["b"]]
    r = c.get(
        "/api/organization",
        query_string={"collaboration_id": server_net.collabs["bc"]},
        headers=root,
    )
    assert {o["name"] for o in r.json["data"]} == {"b", "c"}
    assert c.post("/api/organization", json={"name": "a"}, headers=root).status_code == 409
    # a has users and nodes: deleting it conflicts, it does not crash
    assert c.delete(f"/api/organization/{server_net.orgs['a']}", headers=root).status_code == 409
    r = c.post("/api/organization", json={"name": "empty"}, headers=root)
    assert c.delete(f"/api/organization/{r.json['id']}", headers=root).status_code == 200
    assert c.get(f"/api/organization/{r.json['id']}", headers=root).status_code == 404


def test_pagination(server_net: Network):
    c, root = server_net.client, server_net.root
    for i in range(7):
        c.post("/api/organization", json={"name": f"extra{i}"}, headers=root)
    r = c.get("/api/organization", query_string={"per_page": 5, "page": 2}, headers=root)
    assert r.json["total"] == 11 and r.json["page"] == 2 and r.json["per_page"] == 5
    assert len(r.json["data"]) == 5
    r3 = c.get("/api/organization", query_string={"per_page": 5, "page": 3}, headers=root)
    assert len(r3.json["data"]) == 1
    far = c.get("/api/organization", query_string={"per_page": 5, "page": 9}, headers=root)
    assert far.json["data"] == [] and far.json["total"] == 11
    ids = [o["id"] for o in r.json["data"]] + [o["id"] for o in r3.json["data"]]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"page": "x"}, {"per_page": 501}, {"per_page": -1}]
)
def test_bad_pagination(server_net: Network, params):
    r = server_net.client.get("/api/organization", query_string=params, headers=server_net.root)
    assert r.status_code == 400 and r.json["errors"]


@pytest.mark.parametrize(
    "resource,body",
    [
        ("organization", {"name": "Gone"}),
        ("collaboration", {"name": "Gone", "organization_ids": []}),
    ],
)
def test_deleted_ids_are_not_reused(client, root, resource, body):
    # a notebook holding an old id must not reach a new object
    first = client.post(f"/api/{resource}", json=body, headers=root)
    assert first.status_code == 201, first.json
    old = first.json["id"]
    assert client.delete(f"/api/{resource}/{old}", headers=root).status_code in (200, 204)
    again = client.post(f"/api/{resource}", json={**body, "name": "New"}, headers=root)
    assert again.json["id"] > old
    assert client.get(f"/api/{resource}/{old}", headers=root).status_code == 404


def test_collaboration_members(server_net: Network):
    c, root = server_net.client, server_net.root
    cid = server_net.collabs["ab"]
    r = c.post(
        f"/api/collaboration/{cid}/organization", json={"id": server_net.orgs["c"]}, headers=root
    )
    assert r.status_code == 201 and server_net.orgs["c"] in r.json["organization_ids"]
    assert (
        c.post(
            f"/api/collaboration/{cid}/organization",
            json={"id": server_net.orgs["c"]},
            headers=root,
        ).status_code
        == 409
    )
    r = c.delete(
        f"/api/collaboration/{cid}/organization", json={"id": server_net.orgs["c"]}, headers=root
    )
    assert r.status_code == 200 and server_net.orgs["c"] not in r.json["organization_ids"]
    r = c.get(
        "/api/collaboration", query_string={"organization_id": server_net.orgs["c"]}, headers=root
    )
    assert [x["name"] for x in r.json["data"]] == ["bc"]
    r = c.post("/api/collaboration", json={"name": "z", "organization_ids": [99999]}, headers=root)
    assert r.status_code == 404


def test_nodes(server_net: Network):
    c, root = server_net.client, server_net.root
    # one node per organization per collaboration
    r = c.post(
        "/api/node",
        json={
            "organization_id": server_net.orgs["a"],
            "collaboration_id": server_net.collabs["ab"],
        },
        headers=root,
    )
    assert r.status_code == 409
    # not a member
    r = c.post(
        "/api/node",
        json={
            "organization_id": server_net.orgs["c"],
            "collaboration_id": server_net.collabs["ab"],
        },
        headers=root,
    )
    assert r.status_code == 400 and "organization_id" in r.json["errors"]
    node = c.get(
        f"/api/node/{server_net.nodes['a@ab']['id']}", headers=server_net.users["alice"]
    ).json
    assert node["status"] == "offline" and node["last_seen"] is None and "api_key" not in node
    r = c.get("/api/node", query_string={"organization_id": server_net.orgs["b"]}, headers=root)
    assert {n["collaboration_id"] for n in r.json["data"]} == {
        server_net.collabs["ab"],
        server_net.collabs["bc"],
    }
    r = c.get("/api/node", query_string={"status": "online"}, headers=root)
    assert r.json["total"] == 0
    assert (
        c.patch(f"/api/node/{node['id']}", json={"name": "renamed"}, headers=root).json["name"]
        == "renamed"
    )
    assert c.delete(f"/api/node/{node['id']}", headers=root).status_code == 200
    assert (
        c.post("/api/token/node", json={"api_key": server_net.nodes["a@ab"]["api_key"]}).status_code
        == 401
    )


def test_users(server_net: Network):
    c, root = server_net.client, server_net.root
    r = c.post(
        "/api/user",
        json={"username": "dave", "password": "short", "organization_id": server_net.orgs["a"]},
        headers=root,
    )
    assert r.status_code == 400 and "password" in r.json["errors"]
    r = c.post(
        "/api/user",
        json={
            "username": "alice",
            "password": "a-long-unusual-passphrase",
            "organization_id": server_net.orgs["a"],
        },
        headers=root,
    )
    assert r.status_code == 409
    me = server_net.user_ids["alice"]
    assert (
        c.patch(
            f"/api/user/{me}", json={"email": "a@x.org"}, headers=server_net.users["alice"]
        ).json["email"]
        == "a@x.org"
    )
    assert (
        c.patch(
            f"/api/user/{me}", json={"is_admin": True}, headers=server_net.users["alice"]
        ).status_code
        == 403
    )
    assert (
        c.patch(
            f"/api/user/{me}",
            json={"password": "a-new-unusual-passphrase", "current_password": "alice-password"},
            headers=server_net.users["alice"],
        ).status_code
        == 200
    )
    server_net.login("alice", "a-new-unusual-passphrase")
    server_net.users["alice"] = server_net.login("alice", "a-new-unusual-passphrase")
    # admins can do more
    assert (
        c.patch(f"/api/user/{me}", json={"is_admin": True}, headers=root).json["is_admin"] is True
    )
    assert c.delete("/api/user/1", headers=root).status_code == 409  # not yourself


def test_an_administrator_cannot_remove_their_own_admin_rights(server_net: Network) -> None:
    me = server_net.client.get("/api/user/me", headers=server_net.root).json
    r = server_net.client.patch(
        f"/api/user/{me['id']}", json={"is_admin": False}, headers=server_net.root
    )
    assert r.status_code == 409, r.json
    assert "another administrator" in r.json["msg"]
    assert server_net.client.get("/api/user/me", headers=server_net.root).json["is_admin"] is True
    # another administrator may still do it, and re-granting oneself is harmless
    r = server_net.client.patch(
        f"/api/user/{me['id']}", json={"is_admin": True}, headers=server_net.root
    )
    assert r.status_code == 200, r.json
    alice = server_net.user_ids["alice"]
    r = server_net.client.patch(
        f"/api/user/{alice}", json={"is_admin": True}, headers=server_net.root
    )
    assert r.status_code == 200
    r = server_net.client.patch(
        f"/api/user/{alice}", json={"is_admin": False}, headers=server_net.root
    )
    assert r.status_code == 200 and r.json["is_admin"] is False


def _key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def test_public_key_rules(server_net: Network, caplog):
    c = server_net.client
    oid = server_net.orgs["a"]
    # a member sets the key while unset
    r = c.patch(
        f"/api/organization/{oid}", json={"public_key": _key(1)}, headers=server_net.users["alice"]
    )
    assert r.status_code == 200 and r.json["key_fingerprint"].startswith("SHA256:")
    first = r.json["key_fingerprint"]
    # other organizations cannot
    assert (
        c.patch(
            f"/api/organization/{oid}",
            json={"public_key": _key(2)},
            headers=server_net.users["bob"],
        ).status_code
        == 403
    )
    # replacing: not by a user of that org, not by a node without replace_key
    r = c.patch(
        f"/api/organization/{oid}", json={"public_key": _key(2)}, headers=server_net.users["alice"]
    )
    assert r.status_code == 409 and r.json["code"] == "key_mismatch"
    node = server_net.nodes["a@ab"]["headers"]
    r = c.patch(f"/api/organization/{oid}", json={"public_key": _key(2)}, headers=node)
    assert r.status_code == 409
    with caplog.at_level("WARNING", logger="server_app.audit"):
        r = c.patch(
            f"/api/organization/{oid}",
            json={"public_key": _key(2), "replace_key": True},
            headers=node,
        )
    assert r.status_code == 200 and r.json["key_fingerprint"] != first
    assert any("REPLACED" in rec.getMessage() for rec in caplog.records)
    # the admin may replace
    assert (
        c.patch(
            f"/api/organization/{oid}", json={"public_key": _key(3)}, headers=server_net.root
        ).status_code
        == 200
    )
    # not base64
    r = c.patch(f"/api/organization/{oid}", json={"public_key": "%%%"}, headers=server_net.root)
    assert r.status_code == 400 and "public_key" in r.json["errors"]
    # a node sees its collaboration's keys
    orgs = c.get("/api/organization", headers=node).json["data"]
    assert {o["id"] for o in orgs} == {server_net.orgs["a"], server_net.orgs["b"]}
