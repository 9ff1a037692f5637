"""Tokens you can take back, against a real server process: demotion, password change, refresh
rotation and reuse, logout, deletion, admin revocation, and container tokens of finished runs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.integration

ROOT_PW = "sessions-root-passphrase"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("sessions")
    with ServerProcess(folder, {"root_password": ROOT_PW}) as srv:
        yield srv


@pytest.fixture(scope="module")
def root(server: ServerProcess) -> str:
    return server.login("root", ROOT_PW)


@pytest.fixture(scope="module")
def org(server: ServerProcess, root: str) -> int:
    return int(server.ok("POST", "/api/organization", root, json={"name": "sessions-org"})["id"])


def _password(name: str) -> str:
    return f"{name} takes the long way home"


def _user(server: ServerProcess, root: str, org: int, **extra: Any) -> tuple[int, str, str]:
    """A new user: (id, username, password)."""
    name = f"user{next(_names)}"
    body = {"username": name, "password": _password(name), "organization_id": org, **extra}
    return int(server.ok("POST", "/api/user", root, json=body)["id"]), name, _password(name)


def _login(server: ServerProcess, name: str, password: str) -> dict[str, Any]:
    return server.ok("POST", "/api/token/user", json={"username": name, "password": password})


def _refused(r: Any) -> None:
    """A 401 whose message says to log in again."""
    assert r.status_code == 401, r.text
    assert "log in again" in r.json()["msg"].lower(), r.json()


def _audited(server: ServerProcess, root: str, action: str, target: str) -> list[dict[str, Any]]:
    rows = server.ok("GET", "/api/audit", root, params={"action": action, "per_page": 500})["data"]
    return [e for e in rows if e["target"] == target]


def test_demoted_admin_loses_admin_rights_at_once(server, root, org):
    uid, name, pw = _user(server, root, org, is_admin=True)
    token = _login(server, name, pw)["access_token"]
    assert server.get("/api/user", token).status_code == 200
    server.ok("PATCH", f"/api/user/{uid}", root, json={"is_admin": False})
    # the token held before the demotion can no longer create an administrator
    r = server.request(
        "POST",
        "/api/user",
        token,
        json={
            "username": f"made-by-{name}",
            "password": "a fresh admin passphrase",
            "organization_id": org,
            "is_admin": True,
        },
    )
    _refused(r)
    assert server.ok("GET", "/api/user", root, params={"username": f"made-by-{name}"})["data"] == []
    assert _audited(server, root, "admin_changed", f"user {uid}")
    # a new login carries the new rights
    fresh = _login(server, name, pw)["access_token"]
    assert server.request("POST", "/api/user", fresh, json={}).status_code == 403


def test_password_change_ends_every_session(server, root, org):
    uid, name, pw = _user(server, root, org)
    first, second = _login(server, name, pw), _login(server, name, pw)
    new_pw = "an entirely new passphrase"
    out = server.ok(
        "PATCH",
        f"/api/user/{uid}",
        first["access_token"],
        json={"password": new_pw, "current_password": pw},
    )
    for session in (first, second):
        _refused(server.get("/api/user/me", session["access_token"]))
        _refused(
            server.request(
                "POST", "/api/token/refresh", json={"refresh_token": session["refresh_token"]}
            )
        )
    # the answer carries a new session for the caller
    assert server.get("/api/user/me", out["access_token"]).status_code == 200
    assert (
        server.request(
            "POST", "/api/token/user", json={"username": name, "password": pw}
        ).status_code
        == 401
    )
    assert _login(server, name, new_pw)["user"]["id"] == uid
    assert _audited(server, root, "password_changed", f"user {uid}")


def test_admin_sets_password_without_current_and_ends_sessions(server, root, org):
    uid, name, pw = _user(server, root, org)
    token = _login(server, name, pw)["access_token"]
    server.ok("PATCH", f"/api/user/{uid}", root, json={"password": "set by the administrator"})
    _refused(server.get("/api/user/me", token))
    _login(server, name, "set by the administrator")


def test_own_password_change_needs_the_current_one(server, root, org):
    uid, name, pw = _user(server, root, org)
    token = _login(server, name, pw)["access_token"]
    r = server.request("PATCH", f"/api/user/{uid}", token, json={"password": "my new passphrase"})
    assert r.status_code == 400, r.text
    assert "current_password" in r.json()["errors"] and "current_password" in r.json()["msg"]
    r = server.request(
        "PATCH",
        f"/api/user/{uid}",
        token,
        json={"password": "my new passphrase", "current_password": "not my password"},
    )
    assert r.status_code == 403 and r.json()["errors"] == {"current_password": "wrong"}
    # nothing changed: the old password and the token still work
    assert server.get("/api/user/me", token).status_code == 200
    _login(server, name, pw)


def test_refresh_rotates_and_reuse_ends_the_family(server, root, org):
    uid, name, pw = _user(server, root, org)
    login = _login(server, name, pw)
    other = _login(server, name, pw)  # another session of the same user
    rotated = server.ok(
        "POST", "/api/token/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert rotated["refresh_token"] != login["refresh_token"]
    assert server.get("/api/user/me", rotated["access_token"]).status_code == 200
    # the used refresh token again: refused, and every token of that session dies
    r = server.request("POST", "/api/token/refresh", json={"refresh_token": login["refresh_token"]})
    _refused(r)
    assert "used before" in r.json()["msg"]
    _refused(
        server.request(
            "POST", "/api/token/refresh", json={"refresh_token": rotated["refresh_token"]}
        )
    )
    _refused(server.get("/api/user/me", rotated["access_token"]))
    _refused(server.get("/api/user/me", login["access_token"]))
    # the other session is untouched
    assert server.get("/api/user/me", other["access_token"]).status_code == 200
    assert _audited(server, root, "token_reuse", f"user {uid}")


def _socket_refused(server: ServerProcess, token: str) -> bool:
    sio = socketio.Client()
    try:
        sio.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
    except socketio.exceptions.ConnectionError:
        return True
    sio.disconnect()
    return False


def test_logout_ends_the_session_and_all_ends_every_one(server, root, org):
    uid, name, pw = _user(server, root, org)
    first, second = _login(server, name, pw), _login(server, name, pw)
    assert not _socket_refused(server, first["access_token"])
    r = server.ok("POST", "/api/token/revoke", first["access_token"])
    assert "log in again" in r["msg"]
    _refused(server.get("/api/task", first["access_token"]))
    _refused(
        server.request("POST", "/api/token/refresh", json={"refresh_token": first["refresh_token"]})
    )
    assert _socket_refused(server, first["access_token"])
    assert server.get("/api/task", second["access_token"]).status_code == 200
    server.ok("POST", "/api/token/revoke", second["access_token"], json={"all": True})
    _refused(server.get("/api/task", second["access_token"]))
    assert len(_audited(server, root, "logout", f"user {uid}")) == 2


def test_deleted_users_token_fails(server, root, org):
    uid, name, pw = _user(server, root, org)
    login = _login(server, name, pw)
    assert server.get("/api/task", login["access_token"]).status_code == 200
    server.ok("DELETE", f"/api/user/{uid}", root)
    _refused(server.get("/api/task", login["access_token"]))
    _refused(
        server.request("POST", "/api/token/refresh", json={"refresh_token": login["refresh_token"]})
    )
    assert _socket_refused(server, login["access_token"])


def test_admin_revokes_a_users_sessions(server, root, org):
    uid, name, pw = _user(server, root, org)
    victim_id, victim, victim_pw = _user(server, root, org)
    token = _login(server, victim, victim_pw)["access_token"]
    mine = _login(server, name, pw)["access_token"]
    assert server.request("POST", f"/api/user/{victim_id}/revoke", mine).status_code == 403
    server.ok("POST", f"/api/user/{victim_id}/revoke", root)
    _refused(server.get("/api/task", token))
    assert server.get("/api/task", mine).status_code == 200
    assert _audited(server, root, "sessions_revoked", f"user {victim_id}")
    assert server.request("POST", "/api/user/999999/revoke", root).status_code == 404


def test_container_token_dies_with_its_run(server, root, org, tmp_path: Path):
    collab = server.ok(
        "POST", "/api/collaboration", root, json={"name": "sessions-c", "organization_ids": [org]}
    )
    node = server.ok(
        "POST", "/api/node", root, json={"organization_id": org, "collaboration_id": collab["id"]}
    )
    node_token = server.ok("POST", "/api/token/node", json={"api_key": node["api_key"]})[
        "access_token"
    ]
    task = server.ok(
        "POST",
        "/api/task",
        root,
        json={
            "collaboration_id": collab["id"],
            "organizations": [{"id": org, "input": "{}"}],
            "image": "img:1",
            "method": "m",
        },
    )
    run_id = task["runs"][0]["id"]
    container = server.ok("POST", "/api/token/container", node_token, json={"run_id": run_id})[
        "container_token"
    ]
    subtask = {"organizations": [{"id": org, "input": "{}"}], "method": "part"}
    assert server.get(f"/api/task/{task['id']}", container).status_code == 200
    assert server.request("POST", "/api/task", container, json=subtask).status_code == 201
    server.ok(
        "PATCH", f"/api/run/{run_id}", node_token, json={"status": "completed", "result": "{}"}
    )
    # within the session cache's second, the token stops working for every request
    wait_for(
        lambda: server.get(f"/api/task/{task['id']}", container).status_code == 401,
        30,
        "the container token of a finished run to be refused",
    )
    r = server.get("/api/result", container, params={"task_id": task["id"]})
    assert r.status_code == 401 and "finished" in r.json()["msg"]
    assert server.request("POST", "/api/task", container, json=subtask).status_code == 401
    # node tokens keep working as before
    assert server.get(f"/api/task/{task['id']}", node_token).status_code == 200


def test_revocation_closes_the_users_open_socket(server, root, org):
    uid, name, pw = _user(server, root, org)
    token = _login(server, name, pw)["access_token"]
    sio = socketio.Client()
    sio.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
    try:
        assert sio.connected
        server.ok("POST", f"/api/user/{uid}/revoke", root)
        wait_for(lambda: not sio.connected, timeout=15, what="the revoked user's socket to close")
    finally:
        sio.disconnect()
