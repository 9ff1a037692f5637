"""The server's audit log on a real server process: each security-relevant act is recorded with its
actor and target and read back by an administrator through ``GET /api/audit``."""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess
from vantage6nb.common.crypto import fingerprint
from vantage6nb.common.rest import collect_pages

pytestmark = pytest.mark.integration

ROOT_PW = "audit-root-password-7Q"
ALICE_PW = "alice-audit-password-7Q"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("audit")
    with ServerProcess(folder, {"root_password": ROOT_PW}) as srv:
        yield srv


@pytest.fixture(scope="module")
def root(server: ServerProcess) -> str:
    return server.login("root", ROOT_PW)


def _key() -> tuple[str, str]:
    raw = os.urandom(32)
    return base64.b64encode(raw).decode(), fingerprint(raw)


def _events(server: ServerProcess, token: str, **params: Any) -> list[dict[str, Any]]:
    return collect_pages(lambda q: server.ok("GET", "/api/audit", token, params=q), params)


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _one(events: list[dict[str, Any]], action: str, target: str) -> dict[str, Any]:
    found = [e for e in events if e["action"] == action and e["target"] == target]
    assert len(found) == 1, f"{action} on {target}: {found} in {events}"
    return found[0]


def test_each_audited_act_is_recorded_with_actor_and_target(server: ServerProcess, root: str):
    root_id = next(
        u["id"] for u in server.ok("GET", "/api/user", root)["data"] if u["username"] == "root"
    )
    key1, fp1 = _key()
    org = server.ok("POST", "/api/organization", root, json={"name": "acts-a", "public_key": key1})
    collab = server.ok(
        "POST",
        "/api/collaboration",
        root,
        json={"name": "acts-c", "organization_ids": [org["id"]], "encrypted": False},
    )
    node = server.ok(
        "POST",
        "/api/node",
        root,
        json={"organization_id": org["id"], "collaboration_id": collab["id"]},
    )
    key2, fp2 = _key()
    server.ok("PATCH", f"/api/organization/{org['id']}", root, json={"public_key": key2})
    server.ok("PATCH", f"/api/collaboration/{collab['id']}", root, json={"encrypted": True})
    alice = server.ok(
        "POST",
        "/api/user",
        root,
        json={"username": "acts-alice", "password": ALICE_PW, "organization_id": org["id"]},
    )
    alice_token = server.login("acts-alice", ALICE_PW)
    task = server.ok(
        "POST",
        "/api/task",
        alice_token,
        json={
            "collaboration_id": collab["id"],
            "organizations": [{"id": org["id"], "input": "sealed"}],
            "image": "img:1",
            "method": "m",
        },
    )
    server.ok("DELETE", f"/api/task/{task['id']}", alice_token)
    server.ok("DELETE", f"/api/node/{node['id']}", root)
    server.ok("DELETE", f"/api/collaboration/{collab['id']}", root)
    server.ok("DELETE", f"/api/user/{alice['id']}", root)
    server.ok("DELETE", f"/api/organization/{org['id']}", root)

    events = _events(server, root)
    by_root = {"actor_type": "user", "actor_id": root_id}
    expected = [
        ("organization_created", f"organization {org['id']}", by_root),
        ("collaboration_created", f"collaboration {collab['id']}", by_root),
        ("node_created", f"node {node['id']}", by_root),
        ("key_replaced", f"organization {org['id']}", by_root),
        ("encryption_changed", f"collaboration {collab['id']}", by_root),
        (
            "task_deleted",
            f"task {task['id']}",
            {"actor_type": "user", "actor_id": alice["id"], "actor_org_id": org["id"]},
        ),
        ("node_deleted", f"node {node['id']}", by_root),
        ("collaboration_deleted", f"collaboration {collab['id']}", by_root),
        ("organization_deleted", f"organization {org['id']}", by_root),
    ]
    for action, target, actor in expected:
        event = _one(events, action, target)
        assert {k: event[k] for k in actor} == actor, event
        assert event["outcome"] == "ok" and event["address"] == "127.0.0.1", event
        assert event["time"].endswith("Z")

    assert _one(events, "key_replaced", f"organization {org['id']}")["detail"] == {
        "name": "acts-a",
        "old": fp1,
        "new": fp2,
    }
    assert (
        _one(events, "encryption_changed", f"collaboration {collab['id']}")["detail"]["encrypted"]
        is True
    )
    created = _one(events, "node_created", f"node {node['id']}")["detail"]
    assert created["organization_id"] == org["id"] and "api_key" not in created
    assert node["api_key"] not in str(events)  # no secret in the log
    # the order of the acts, oldest first
    ids = [_one(events, a, t)["id"] for a, t, _ in expected]
    assert ids == sorted(ids)


def test_first_key_is_not_a_replacement(server: ServerProcess, root: str):
    org = server.ok("POST", "/api/organization", root, json={"name": "first-key"})
    key, _ = _key()
    server.ok("PATCH", f"/api/organization/{org['id']}", root, json={"public_key": key})
    replaced = _events(server, root, action="key_replaced")
    assert all(e["target"] != f"organization {org['id']}" for e in replaced)


def test_only_administrators_read_the_audit_log(server: ServerProcess, root: str):
    org = server.ok("POST", "/api/organization", root, json={"name": "readers"})
    server.ok(
        "POST",
        "/api/user",
        root,
        json={"username": "reader-bob", "password": ALICE_PW, "organization_id": org["id"]},
    )
    bob = server.login("reader-bob", ALICE_PW)
    r = server.get("/api/audit", bob)
    assert r.status_code == 403 and "administrator" in r.json()["msg"]
    r = server.get("/api/audit")
    assert r.status_code == 401 and r.json()["msg"]


def test_filters_and_pages(server: ServerProcess, root: str):
    for i in range(3):
        server.ok("POST", "/api/organization", root, json={"name": f"paged-{i}"})
    every = _events(server, root, action="organization_created")
    assert len(every) >= 3 and {e["action"] for e in every} == {"organization_created"}
    assert [e["id"] for e in every] == sorted(e["id"] for e in every)  # oldest first

    page = server.ok(
        "GET",
        "/api/audit",
        root,
        params={"action": "organization_created", "per_page": 2, "page": 2},
    )
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, len(every))
    assert [e["id"] for e in page["data"]] == [e["id"] for e in every[2:4]]

    last = every[-1]["time"]
    since = _events(server, root, action="organization_created", since=last)
    assert since and all(_time(e["time"]) >= _time(last) for e in since)
    assert _events(server, root, since="2999-01-01T00:00:00Z") == []
    assert _events(server, root, action="no_such_action") == []

    for bad in ("yesterday", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        r = server.get("/api/audit", root, params={"since": bad})
        assert r.status_code == 400 and "since" in r.json()["errors"], r.text
    r = server.get("/api/audit", root, params={"per_page": 0})
    assert r.status_code == 400 and "per_page" in r.json()["errors"]
