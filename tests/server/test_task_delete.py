"""Who deletes a task, on a real server process: its creator or an administrator; members of
other organizations in the collaboration may see and kill it (docs/api.md), not delete it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess

pytestmark = pytest.mark.integration

ROOT_PW = "delete-root-password-7Q"
PW = "member-password-for-7Q"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("delete")
    with ServerProcess(folder, {"root_password": ROOT_PW}) as srv:
        yield srv


@pytest.fixture(scope="module")
def net(server: ServerProcess) -> dict[str, Any]:
    """orgs a, b (collaboration ab) and c (outside); users alice and ann of a, bob of b, carol of c."""
    root = server.login("root", ROOT_PW)
    orgs = {n: server.ok("POST", "/api/organization", root, json={"name": n})["id"] for n in "abc"}
    ab = server.ok(
        "POST",
        "/api/collaboration",
        root,
        json={"name": "ab", "organization_ids": [orgs["a"], orgs["b"]]},
    )
    users, tokens = {}, {"root": root}
    for name, org in (("alice", "a"), ("ann", "a"), ("bob", "b"), ("carol", "c")):
        body = {"username": name, "password": PW, "organization_id": orgs[org]}
        users[name] = server.ok("POST", "/api/user", root, json=body)["id"]
        tokens[name] = server.login(name, PW)
    return {"orgs": orgs, "ab": ab["id"], "users": users, "tokens": tokens}


def _task(server: ServerProcess, net: dict[str, Any], who: str) -> dict[str, Any]:
    body = {
        "collaboration_id": net["ab"],
        "organizations": [{"id": net["orgs"][o], "input": "{}"} for o in "ab"],
        "image": "img:1",
        "method": "m",
    }
    return server.ok("POST", "/api/task", net["tokens"][who], json=body)


def test_a_member_of_another_organization_cannot_delete_a_task(
    server: ServerProcess, net: dict[str, Any]
):
    tok = net["tokens"]
    task = _task(server, net, "alice")
    path = f"/api/task/{task['id']}"

    r = server.request("DELETE", path, tok["bob"])
    assert r.status_code == 403, r.text
    assert "created" in r.json()["msg"] and "/kill" in r.json()["msg"]
    assert server.get(path, tok["root"]).status_code == 200  # still there
    # another user of the initiating organization is not its creator either
    assert server.request("DELETE", path, tok["ann"]).status_code == 403
    # outside the collaboration: the same answer as reading it, nothing more
    outside = server.request("DELETE", path, tok["carol"])
    assert outside.status_code == 403
    assert outside.json()["msg"] == server.get(path, tok["carol"]).json()["msg"]

    # killing stays open to the collaboration's members, as documented
    killed = server.ok("POST", f"{path}/kill", tok["bob"])
    assert len(killed["run_ids"]) == 2

    audit = server.ok("GET", "/api/audit", tok["root"], params={"action": "task_deleted"})
    assert all(e["target"] != f"task {task['id']}" for e in audit["data"])


def test_the_creator_and_an_administrator_delete(server: ServerProcess, net: dict[str, Any]):
    tok = net["tokens"]
    mine = _task(server, net, "alice")
    assert "deleted" in server.ok("DELETE", f"/api/task/{mine['id']}", tok["alice"])["msg"]
    assert server.get(f"/api/task/{mine['id']}", tok["root"]).status_code == 404

    theirs = _task(server, net, "bob")
    server.ok("DELETE", f"/api/task/{theirs['id']}", tok["root"])
    assert server.get(f"/api/task/{theirs['id']}", tok["root"]).status_code == 404

    events = {
        e["target"]: e
        for e in server.ok("GET", "/api/audit", tok["root"], params={"action": "task_deleted"})[
            "data"
        ]
    }
    assert events[f"task {mine['id']}"]["actor_id"] == net["users"]["alice"]
    assert events[f"task {theirs['id']}"]["detail"]["init_user_id"] == net["users"]["bob"]
