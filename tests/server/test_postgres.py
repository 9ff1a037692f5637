"""The server on PostgreSQL: a real server process over HTTP, restarts, bad input, and the in-process suites."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from server_app import create_app
from tests.server.conftest import ROOT_PASSWORD

# The in-process suites, collected here a second time with `app` on PostgreSQL (fixture below).
from tests.server.test_auth import (  # noqa: F401
    test_node_token_and_container_token,
    test_refresh_of_deleted_user,
    test_root_login_and_me,
)
from tests.server.test_errors import *  # noqa: F403
from tests.server.test_resources import *  # noqa: F403
from tests.server.test_tasks import *  # noqa: F403
from tests.support import PG_URL, ServerProcess, fresh_database, require_postgres

pytestmark = pytest.mark.integration

ROOT_PW = "pg-root-password"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this module (dropped afterwards)."""
    require_postgres()
    with fresh_database(PG_URL) as url:
        yield url


@pytest.fixture
def app(pg_database: str, tmp_path: Path) -> Iterator[Flask]:
    """Overrides tests/server/conftest.py's SQLite app: same settings, on an emptied PostgreSQL schema."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    flask_app = create_app(
        {
            "data_dir": str(tmp_path / "data"),
            "root_password": ROOT_PASSWORD,
            "max_body_mb": 1,
            "database_url": pg_database,
        }
    )
    yield flask_app
    flask_app.extensions["v6nb_db"].engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server process on its own fresh PostgreSQL database."""
    require_postgres()
    with fresh_database(PG_URL) as url:
        settings = {"database_url": url, "root_password": ROOT_PW}
        with ServerProcess(tmp_path_factory.mktemp("pg-server"), settings) as srv:
            yield srv


@pytest.fixture(scope="module")
def live_root(server: ServerProcess) -> str:
    """The root user's token on the live server."""
    return server.login("root", ROOT_PW)


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _network(srv: ServerProcess, root: str, tag: str) -> dict[str, Any]:
    """Orgs x, y; collaboration xy; users ux@x, uy@y; a node per org; unique names per ``tag``."""
    n: dict[str, Any] = {"orgs": {}, "nodes": {}, "users": {}}
    for o in "xy":
        n["orgs"][o] = srv.ok("POST", "/api/organization", root, json={"name": f"{tag}-{o}"})["id"]
    n["collab"] = srv.ok(
        "POST",
        "/api/collaboration",
        root,
        json={"name": f"{tag}-xy", "organization_ids": list(n["orgs"].values())},
    )["id"]
    for o, oid in n["orgs"].items():
        node = srv.ok(
            "POST",
            "/api/node",
            root,
            json={"organization_id": oid, "collaboration_id": n["collab"]},
        )
        tok = srv.ok("POST", "/api/token/node", json={"api_key": node["api_key"]})
        n["nodes"][o] = {"id": node["id"], "api_key": node["api_key"], "token": tok["access_token"]}
        user = f"{tag}-u{o}"
        srv.ok(
            "POST",
            "/api/user",
            root,
            json={"username": user, "password": f"{user}-passphrase", "organization_id": oid},
        )
        n["users"][o] = srv.login(user, f"{user}-passphrase")
    return n


def test_data_lives_in_postgres(server: ServerProcess, live_root: str):
    assert server.get("/api/health").json() == {"status": "ok", "db": "ok"}
    url = _config_url(server)
    assert url.startswith("postgresql+psycopg2://")
    server.ok("POST", "/api/organization", live_root, json={"name": "pg-proof"})
    assert ("pg-proof",) in _query(url, "SELECT name FROM organization")
    assert ("root",) in _query(url, 'SELECT username FROM "user"')


def _config_url(server: ServerProcess) -> str:
    import yaml

    return str(yaml.safe_load(server.config_path.read_text())["database_url"])


def test_crud_filters_and_pagination(server: ServerProcess, live_root: str):
    n = _network(server, live_root, "crud")
    x, y = n["orgs"]["x"], n["orgs"]["y"]
    org = server.ok("PATCH", f"/api/organization/{x}", live_root, json={"domain": "x.example"})
    assert org["domain"] == "x.example"
    found = server.ok("GET", "/api/organization", live_root, params={"name": "crud-y"})["data"]
    assert [o["id"] for o in found] == [y]
    members = server.ok(
        "GET", "/api/organization", live_root, params={"collaboration_id": n["collab"]}
    )
    assert {o["id"] for o in members["data"]} == {x, y}
    assert (
        server.request("POST", "/api/organization", live_root, json={"name": "crud-x"}).status_code
        == 409
    )
    # an organization with users and nodes cannot go; an empty one can
    assert server.request("DELETE", f"/api/organization/{x}", live_root).status_code == 409
    empty = server.ok("POST", "/api/organization", live_root, json={"name": "crud-empty"})["id"]
    server.ok(
        "POST", f"/api/collaboration/{n['collab']}/organization", live_root, json={"id": empty}
    )
    r = server.request(
        "POST", f"/api/collaboration/{n['collab']}/organization", live_root, json={"id": empty}
    )
    assert r.status_code == 409
    server.ok(
        "DELETE", f"/api/collaboration/{n['collab']}/organization", live_root, json={"id": empty}
    )
    server.ok("DELETE", f"/api/organization/{empty}", live_root)
    assert server.get(f"/api/organization/{empty}", live_root).status_code == 404

    # users: own organization only, PATCH, password change, delete
    assert [u["username"] for u in server.ok("GET", "/api/user", n["users"]["x"])["data"]] == [
        "crud-ux"
    ]
    me = server.ok("GET", "/api/user/me", n["users"]["x"])
    assert me["organization_name"] == "crud-x"
    server.ok(
        "PATCH",
        f"/api/user/{me['id']}",
        n["users"]["x"],
        json={"password": "another-passphrase", "current_password": "crud-ux-passphrase"},
    )
    n["users"]["x"] = server.login("crud-ux", "another-passphrase")
    assert n["users"]["x"]
    assert (
        server.request(
            "PATCH", f"/api/user/{me['id']}", n["users"]["x"], json={"is_admin": True}
        ).status_code
        == 403
    )

    # nodes: one per organization per collaboration, rename, delete ends its login
    dup = {"organization_id": x, "collaboration_id": n["collab"]}
    assert server.request("POST", "/api/node", live_root, json=dup).status_code == 409
    nid = n["nodes"]["x"]["id"]
    assert (
        server.ok("PATCH", f"/api/node/{nid}", live_root, json={"name": "renamed"})["name"]
        == "renamed"
    )
    node = server.ok("GET", f"/api/node/{nid}", n["users"]["x"])
    assert node["status"] == "offline" and "api_key" not in node
    server.ok("DELETE", f"/api/node/{nid}", live_root)
    r = server.request("POST", "/api/token/node", json={"api_key": n["nodes"]["x"]["api_key"]})
    assert r.status_code == 401

    # pagination: stable order, totals, past the end
    for i in range(6):
        server.ok("POST", "/api/organization", live_root, json={"name": f"crud-page-{i}"})
    total = server.ok("GET", "/api/organization", live_root)["total"]
    pages = [
        server.ok("GET", "/api/organization", live_root, params={"per_page": 4, "page": p})
        for p in range(1, (total + 3) // 4 + 2)
    ]
    assert all(p["total"] == total for p in pages) and pages[-1]["data"] == []
    ids = [o["id"] for p in pages for o in p["data"]]
    assert ids == sorted(ids) and len(ids) == total


def test_task_lifecycle(server: ServerProcess, live_root: str):
    n = _network(server, live_root, "life")
    x, y = n["orgs"]["x"], n["orgs"]["y"]
    body = {
        "collaboration_id": n["collab"],
        "organizations": [{"id": x, "input": '{"method": "m"}'}, {"id": y, "input": "{}"}],
        "image": "img:1",
        "method": "m",
        "databases": [{"label": "default", "extra": "ünïcode ✓"}],
        "uid": "life-1",
    }
    task = server.ok("POST", "/api/task", n["users"]["x"], json=body)
    assert task["status"] == "pending" and task["databases"][0]["extra"] == "ünïcode ✓"
    r = server.request("POST", "/api/task", n["users"]["x"], json=body)
    assert r.status_code == 409 and "uid" in r.json()["errors"]
    runs = {r["organization_id"]: r["id"] for r in task["runs"]}
    nx, ny = n["nodes"]["x"]["token"], n["nodes"]["y"]["token"]

    # a node updates its own run only; timestamps round-trip through PostgreSQL
    assert (
        server.request("PATCH", f"/api/run/{runs[y]}", nx, json={"status": "active"}).status_code
        == 403
    )
    run = server.ok(
        "PATCH",
        f"/api/run/{runs[x]}",
        nx,
        json={"status": "active", "started_at": "2024-05-01T10:00:00+02:00"},
    )
    assert run["started_at"].startswith("2024-05-01T08:00:00")
    pending = server.ok("GET", "/api/task", n["users"]["x"], params={"status": "pending"})
    assert [t["id"] for t in pending["data"]] == [task["id"]]  # y still pending
    done = server.ok(
        "PATCH", f"/api/run/{runs[x]}", nx, json={"status": "completed", "result": "R", "log": "ok"}
    )
    assert done["finished_at"] and done["result"] == "R"
    r = server.request("PATCH", f"/api/run/{runs[x]}", nx, json={"status": "active"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"

    # filters on runs
    flt = server.ok(
        "GET",
        "/api/run",
        n["users"]["x"],
        params={"task_id": task["id"], "status": "completed,failed", "include": "result"},
    )
    assert [(r["id"], r["result"]) for r in flt["data"]] == [(runs[x], "R")]
    assert server.ok("GET", "/api/run", ny, params={"status": "open"})["total"] == 1
    results = server.ok("GET", "/api/result", n["users"]["x"], params={"task_id": task["id"]})[
        "data"
    ]
    assert {r["result"] for r in results} == {"R", None}

    # kill: only open runs, reason names the user; killed is final
    killed = server.ok("POST", f"/api/task/{task['id']}/kill", n["users"]["x"])
    assert killed["run_ids"] == [runs[y]]
    run_y = server.ok("GET", f"/api/run/{runs[y]}", live_root)
    assert run_y["status"] == "killed" and run_y["reason"] == "killed by life-ux"
    assert (
        server.request("PATCH", f"/api/run/{runs[y]}", ny, json={"status": "completed"}).status_code
        == 409
    )
    assert server.ok("GET", f"/api/task/{task['id']}", live_root)["status"] == "failed"

    # subtasks by the algorithm's container token; deleting the parent removes them
    t2 = server.ok("POST", "/api/task", n["users"]["y"], json={**body, "uid": "life-2"})
    run2 = next(r["id"] for r in t2["runs"] if r["organization_id"] == y)
    ctok = server.ok("POST", "/api/token/container", ny, json={"run_id": run2})["container_token"]
    sub = server.ok(
        "POST",
        "/api/task",
        ctok,
        json={"organizations": [{"id": x, "input": "i"}], "method": "part"},
    )
    assert sub["parent_id"] == t2["id"] and sub["job_id"] == t2["id"]
    assert server.ok("GET", "/api/task", live_root, params={"parent_id": t2["id"]})["total"] == 1
    server.ok("DELETE", f"/api/task/{t2['id']}", n["users"]["y"])
    assert server.get(f"/api/task/{sub['id']}", live_root).status_code == 404


# Requests that are fine for SQLite but reach PostgreSQL's stricter types: all must be a clean 4xx.
BAD = [
    ("POST", "/api/organization", {"name": "x" * 256}),
    ("POST", "/api/organization", {"name": "nul\x00name"}),
    ("POST", "/api/organization", {"name": "surrogate \ud800"}),
    ("POST", "/api/organization", {"name": "ok-name", "domain": 5}),
    ("GET", "/api/organization?collaboration_id=99999999999999999999", None),
    ("GET", "/api/organization?collaboration_id=9223372036854775807", None),
    ("GET", "/api/organization/9223372036854775808", None),
    ("GET", "/api/run?status=completed,nonsense", None),
    ("GET", "/api/task?status=%00", None),
    ("GET", "/api/organization?name=%00", None),
    ("GET", "/api/organization?name=%ED%A0%80", None),
    ("POST", "/api/user", {"username": "u\x00", "password": "12345678", "organization_id": 1}),
    ("POST", "/api/collaboration", {"name": "c", "organization_ids": [2**63]}),
    ("POST", "/api/collaboration", {"name": "c", "organization_ids": [1.5]}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), BAD, ids=[f"{m} {p[:40]} {json.dumps(b)[:30]}" for m, p, b in BAD]
)
def test_bad_input_is_a_clean_4xx(server: ServerProcess, live_root: str, method, path, body):
    data = json.dumps(body) if body is not None else None  # json.dumps keeps \ud800 as an escape
    r = server.request(
        method, path, live_root, data=data, headers={"Content-Type": "application/json"}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()) == {"msg", "errors", "code"}


def test_task_input_with_nul_is_a_clean_4xx(server: ServerProcess, live_root: str):
    n = _network(server, live_root, "nul")
    body = {
        "collaboration_id": n["collab"],
        "organizations": [{"id": n["orgs"]["x"], "input": "a\x00b"}],
        "image": "img:1",
        "method": "m",
        "databases": [{"label": "d\x00"}],
    }
    r = server.request("POST", "/api/task", n["users"]["x"], json=body)
    assert 400 <= r.status_code < 500, r.text


def test_restart_keeps_data_and_tokens(server: ServerProcess, live_root: str):
    n = _network(server, live_root, "restart")
    task = server.ok(
        "POST",
        "/api/task",
        n["users"]["x"],
        json={
            "collaboration_id": n["collab"],
            "organizations": [{"id": n["orgs"]["x"], "input": "{}"}],
            "image": "img:1",
            "method": "m",
        },
    )
    assert server.stop() == 0
    server.start()
    # the token from before the restart still works (secret in data_dir), the data is all there
    again = server.ok("GET", f"/api/task/{task['id']}", n["users"]["x"])
    assert again["uid"] == task["uid"] and [r["id"] for r in again["runs"]] == [
        r["id"] for r in task["runs"]
    ]
    assert server.login("restart-ux", "restart-ux-passphrase")
    server.ok("POST", "/api/token/node", json={"api_key": n["nodes"]["y"]["api_key"]})
    names = {
        o["name"]
        for o in server.ok("GET", "/api/organization", live_root, params={"per_page": 500})["data"]
    }
    assert {"restart-x", "restart-y"} <= names
