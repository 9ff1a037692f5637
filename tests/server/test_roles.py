"""Roles and rules against the real app: the default roles' powers, grants refused beyond what one
holds, a role change that takes effect at once, and the migration from ``is_admin``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from werkzeug.security import generate_password_hash

from server_app import create_app, migrations
from server_app.db import make_engine
from tests.server.conftest import Network
from tests.support import bearer


def _role_id(n: Network, name: str) -> int:
    r = n.client.get("/api/role", query_string={"name": name}, headers=n.root)
    assert r.status_code == 200, r.json
    return r.json["data"][0]["id"]


def _rule_id(n: Network, name: str) -> int:
    res, op, scope = name.split(":")
    r = n.client.get(
        "/api/rule",
        query_string={"resource": res, "operation": op, "scope": scope},
        headers=n.root,
    )
    return r.json["data"][0]["id"]


def _user(n: Network, name: str, org: str, role: str | None = None) -> dict[str, str]:
    body: dict[str, Any] = {
        "username": name,
        "password": f"{name}-password-1",
        "organization_id": n.orgs[org],
    }
    if role is not None:
        body["roles"] = [_role_id(n, role)]
    r = n.client.post("/api/user", json=body, headers=n.root)
    assert r.status_code == 201, r.json
    n.user_ids[name] = r.json["id"]
    n.users[name] = n.login(name, f"{name}-password-1")
    return n.users[name]


def _new_user(n: Network, who: str, org: str, name: str) -> Any:
    return n.client.post(
        "/api/user",
        json={
            "username": name,
            "password": "a long new passphrase",
            "organization_id": n.orgs[org],
        },
        headers=n.users[who],
    )


def test_rule_table_and_default_roles_are_listed(server_net: Network):
    rules = server_net.client.get(
        "/api/rule", query_string={"per_page": 500}, headers=server_net.root
    )
    assert rules.status_code == 200
    names = {r["name"] for r in rules.json["data"]}
    assert {"task:kill:collaboration", "user:revoke:global", "audit:view:global"} <= names
    roles = server_net.client.get("/api/role", headers=server_net.users["alice"]).json["data"]
    assert {r["name"] for r in roles} >= {
        "root",
        "collaboration admin",
        "organization admin",
        "researcher",
        "viewer",
    }
    me = server_net.client.get("/api/user/me", headers=server_net.users["alice"]).json
    assert me["roles"] == [_role_id(server_net, "researcher")] and me["is_admin"] is False


def test_root_does_everything(server_net: Network):
    r = server_net.client.get("/api/audit", headers=server_net.root)
    assert r.status_code == 200
    root_role = server_net.client.get("/api/user/me", headers=server_net.root).json["roles"]
    assert root_role == [_role_id(server_net, "root")]


def test_organization_admin_manages_own_organization_only(server_net: Network):
    _user(server_net, "adam", "a", role="organization admin")
    assert _new_user(server_net, "adam", "a", "a-new").status_code == 201
    r = _new_user(server_net, "adam", "b", "b-new")
    assert r.status_code == 403
    assert "user:create at scope collaboration" in r.json["msg"] and "ask" in r.json["msg"]
    bob = server_net.user_ids["bob"]
    assert (
        server_net.client.delete(f"/api/user/{bob}", headers=server_net.users["adam"]).status_code
        == 403
    )
    alice = server_net.user_ids["alice"]
    r = server_net.client.patch(
        f"/api/user/{alice}", json={"email": "a@a.example"}, headers=server_net.users["adam"]
    )
    assert r.status_code == 200
    # but not the root administrator's powers
    assert server_net.client.get("/api/audit", headers=server_net.users["adam"]).status_code == 403
    r = server_net.client.post(
        "/api/organization", json={"name": "z"}, headers=server_net.users["adam"]
    )
    assert r.status_code == 403 and r.json["errors"]["rule"] == "organization:create:global"


def test_researcher_cannot_create_users(server_net: Network):
    r = _new_user(server_net, "alice", "a", "by-alice")
    assert r.status_code == 403
    assert "user:create" in r.json["msg"] and "organization admin" in r.json["msg"]
    server_net.task("alice", "ab", ["a", "b"])  # but creates tasks


def test_viewer_cannot_create_or_kill_tasks(server_net: Network):
    _user(server_net, "vera", "a", role="viewer")
    task = server_net.task("alice", "ab", ["a"])
    body = {
        "collaboration_id": server_net.collabs["ab"],
        "organizations": [{"id": server_net.orgs["a"], "input": "{}"}],
        "image": "img:1",
        "method": "m",
    }
    c, vera = server_net.client, server_net.users["vera"]
    r = c.post("/api/task", json=body, headers=vera)
    assert r.status_code == 403 and r.json["errors"]["rule"] == "task:create:collaboration"
    assert c.get(f"/api/task/{task['id']}", headers=vera).status_code == 200
    assert c.post(f"/api/task/{task['id']}/kill", headers=vera).status_code == 403


def test_nobody_grants_a_rule_they_do_not_hold(server_net: Network):
    adam = _user(server_net, "adam", "a", role="organization admin")
    c = server_net.client
    alice = server_net.user_ids["alice"]
    # a role with a rule adam lacks
    r = c.post(
        "/api/role",
        json={"name": "sneaky", "rules": [_rule_id(server_net, "audit:view:global")]},
        headers=adam,
    )
    assert r.status_code == 403 and r.json["errors"]["rules"] == ["audit:view:global"]
    # the root role itself
    r = c.post(f"/api/user/{alice}/role/{_role_id(server_net, 'root')}", headers=adam)
    assert r.status_code == 403 and "do not hold" in r.json["msg"]
    # an extra rule
    r = c.post(f"/api/user/{alice}/rule/{_rule_id(server_net, 'user:create:global')}", headers=adam)
    assert r.status_code == 403
    # is_admin (root) through PATCH
    r = c.patch(f"/api/user/{alice}", json={"is_admin": True}, headers=adam)
    assert r.status_code == 403
    # what adam holds, he may grant: an own role with a rule of his, given to alice
    r = c.post(
        "/api/role",
        json={"name": "a-nodes", "rules": [_rule_id(server_net, "node:edit:organization")]},
        headers=adam,
    )
    assert r.status_code == 201 and r.json["organization_id"] == server_net.orgs["a"]
    r2 = c.post(f"/api/user/{alice}/role/{r.json['id']}", headers=adam)
    assert r2.status_code == 201 and r.json["id"] in r2.json["roles"]
    events = c.get("/api/audit", query_string={"action": "role_assigned"}, headers=server_net.root)
    assert [e["target"] for e in events.json["data"]] == [f"user {alice}"]


def test_a_role_change_takes_effect_within_a_second(server_net: Network):
    c = server_net.client
    adam = _user(server_net, "adam", "a", role="organization admin")
    uid = server_net.user_ids["adam"]
    assert _new_user(server_net, "adam", "a", "first").status_code == 201
    r = c.delete(
        f"/api/user/{uid}/role/{_role_id(server_net, 'organization admin')}",
        headers=server_net.root,
    )
    assert r.status_code == 200 and r.json["is_admin"] is False
    r = c.post(
        "/api/user",
        json={
            "username": "second",
            "password": "a long new passphrase",
            "organization_id": server_net.orgs["a"],
        },
        headers=adam,
    )
    assert r.status_code == 401  # the very next request: the old token is gone
    fresh = server_net.login("adam", "adam-password-1")
    assert c.post("/api/user", json={"username": "third"}, headers=fresh).status_code == 403
    # a role's rules changing reaches its holders at once too
    own = c.post(
        "/api/role",
        json={
            "name": "a-users",
            "rules": [_rule_id(server_net, "user:create:organization")],
            "organization": server_net.orgs["a"],
        },
        headers=server_net.root,
    ).json
    assert c.post(f"/api/user/{uid}/role/{own['id']}", headers=server_net.root).status_code == 201
    token = server_net.login("adam", "adam-password-1")
    body = {
        "password": "a long new passphrase",
        "organization_id": server_net.orgs["a"],
        "roles": [],
    }
    assert (
        c.post("/api/user", json={**body, "username": "fourth"}, headers=token).status_code == 201
    )
    # (without "roles" the new account would be a researcher: rules adam does not hold)
    r = c.post("/api/user", json={**body, "username": "fifth", "roles": None}, headers=token)
    assert r.status_code == 403 and "do not hold" in r.json["msg"]
    r = c.patch(f"/api/role/{own['id']}", json={"rules": []}, headers=server_net.root)
    assert r.status_code == 200
    assert c.get("/api/user/me", headers=token).status_code == 401
    # default roles do not change
    r = c.patch(
        f"/api/role/{_role_id(server_net, 'viewer')}", json={"rules": []}, headers=server_net.root
    )
    assert r.status_code == 409


def test_bad_role_requests_are_4xx(server_net: Network):
    c, root = server_net.client, server_net.root
    alice = server_net.user_ids["alice"]
    for method, path, body in (
        ("post", "/api/role", {"name": "x", "rules": ["a"]}),
        ("post", "/api/role", {"name": "x", "rules": [10**9]}),
        ("post", "/api/role", {"name": "", "rules": []}),
        ("post", "/api/role", {"name": "root", "rules": []}),
        ("post", f"/api/user/{alice}/role/999999", None),
        ("delete", f"/api/user/{alice}/rule/1", None),
        ("delete", "/api/role/999999", None),
        (
            "post",
            "/api/user",
            {
                "username": "r",
                "password": "a long passphrase 1",
                "organization_id": 1,
                "roles": ["x"],
            },
        ),
    ):
        r = getattr(c, method)(path, json=body, headers=root)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.json)


def test_migration_turns_is_admin_into_roles(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'server.sqlite'}"
    engine = make_engine(url)
    with engine.connect() as conn:
        command.upgrade(migrations.alembic_config(conn), "0002")
        conn.commit()
    org = sa.table("organization", sa.column("id"), sa.column("name"), sa.column("require_totp"))
    user = sa.table(
        "user",
        *(
            sa.column(c)
            for c in (
                "id",
                "username",
                "username_key",
                "password_hash",
                "organization_id",
                "is_admin",
                "session_version",
                "failed_logins",
            )
        ),
    )
    pw = generate_password_hash("old-password-123", method="scrypt:16384:8:1")
    with engine.begin() as conn:
        conn.execute(
            org.insert(),
            [
                {"id": 1, "name": "root", "require_totp": False},
                {"id": 2, "name": "Leiden", "require_totp": False},
            ],
        )
        conn.execute(
            user.insert(),
            [
                {
                    "id": i,
                    "username": n,
                    "username_key": n,
                    "password_hash": pw,
                    "organization_id": o,
                    "is_admin": a,
                    "session_version": 0,
                    "failed_logins": 0,
                }
                for i, n, o, a in (
                    (1, "root", 1, True),
                    (2, "alice", 2, True),
                    (3, "bob", 2, False),
                )
            ],
        )
    engine.dispose()
    app = create_app({"data_dir": str(tmp_path / "data"), "database_url": url, "root_password": ""})
    c = app.test_client()

    def login(name: str) -> dict[str, str]:
        r = c.post("/api/token/user", json={"username": name, "password": "old-password-123"})
        assert r.status_code == 200, r.json
        return bearer(r.json["access_token"])

    root, alice, bob = login("root"), login("alice"), login("bob")
    roles = {r["id"]: r["name"] for r in c.get("/api/role", headers=root).json["data"]}
    held = {
        n: [roles[i] for i in c.get(f"/api/user/{u}", headers=root).json["roles"]]
        for n, u in (("root", 1), ("alice", 2), ("bob", 3))
    }
    # is_admin was a global power: alice keeps it (root), bob is a researcher
    assert held == {"root": ["root"], "alice": ["root"], "bob": ["researcher"]}
    r = c.post("/api/organization", json={"name": "after-migration"}, headers=alice)
    assert r.status_code == 201, r.json
    users = {u["username"]: u["is_admin"] for u in c.get("/api/user", headers=root).json["data"]}
    assert users == {"root": True, "alice": True, "bob": False}
    # alice still manages her organization's users; bob still sees them and edits himself
    r = c.post(
        "/api/user",
        json={"username": "carl", "password": "a long new passphrase", "organization_id": 2},
        headers=alice,
    )
    assert r.status_code == 201
    assert c.patch("/api/user/3", json={"email": "b@l.example"}, headers=bob).status_code == 200
    assert len(c.get("/api/user", headers=bob).json["data"]) == 3
    assert c.get("/api/audit", headers=root).status_code == 200


def test_user_listing_shows_roles_and_extra_rules(server_net: Network):
    viewer = _role_id(server_net, "viewer")
    uid = server_net.user_ids["bob"]
    rule = _rule_id(server_net, "task:view:own")
    c, root = server_net.client, server_net.root
    assert c.post(f"/api/user/{uid}/role/{viewer}", headers=root).status_code == 201
    assert c.post(f"/api/user/{uid}/rule/{rule}", headers=root).status_code == 201
    listed = c.get("/api/user", query_string={"username": "bob"}, headers=root).json["data"]
    assert listed[0]["roles"] == sorted([_role_id(server_net, "researcher"), viewer])
    assert listed[0]["rules"] == [rule]
