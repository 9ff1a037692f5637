"""Starting a run in few requests: the open-run listing with its task, the token with initializing."""

from __future__ import annotations

import pytest

from tests.server.conftest import Network


def _run_of(task, org_id):
    return next(r for r in task["runs"] if r["organization_id"] == org_id)


def test_open_runs_include_their_task(server_net: Network):
    c = server_net.client
    task = server_net.task(
        "alice", "ab", ["a", "b"], databases=[{"label": "default"}], uid="u-start"
    )
    node = server_net.nodes["a@ab"]
    r = c.get(
        "/api/run",
        query_string={"node_id": node["id"], "status": "open", "include": "input,task"},
        headers=node["headers"],
    )
    assert r.status_code == 200, r.json
    (run,) = [x for x in r.json["data"] if x["task_id"] == task["id"]]
    assert run["input"] is not None and "result" not in run
    assert run["task"] == {
        "id": task["id"],
        "uid": "u-start",
        "collaboration_id": server_net.collabs["ab"],
        "image": task["image"],
        "method": task["method"],
        "init_org_id": server_net.orgs["a"],
        "parent_id": None,
        "job_id": task["id"],
        "databases": [{"label": "default"}],
    }
    # without asking, no task
    plain = c.get(
        "/api/run", query_string={"task_id": task["id"]}, headers=server_net.users["alice"]
    )
    assert all("task" not in x for x in plain.json["data"])
    bad = c.get("/api/run", query_string={"include": "task,secret"}, headers=node["headers"])
    assert bad.status_code == 400 and bad.json["code"] == "validation_error"


def test_initializing_hands_out_the_container_token(server_net: Network):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node = server_net.nodes["a@ab"]
    run = _run_of(task, server_net.orgs["a"])
    r = c.patch(
        f"/api/run/{run['id']}",
        json={"status": "initializing", "container_token": True},
        headers=node["headers"],
    )
    assert r.status_code == 200, r.json
    assert r.json["status"] == "initializing"
    token = r.json["container_token"]
    # the token is a working container token of this run's job
    seen = c.get(f"/api/task/{task['id']}", headers={"Authorization": f"Bearer {token}"}).json
    assert seen["id"] == task["id"]
    # not asked: no token
    r = c.patch(f"/api/run/{run['id']}", json={"status": "active"}, headers=node["headers"])
    assert r.status_code == 200 and "container_token" not in r.json


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_container_token_flag_must_be_a_bool(server_net: Network, value):
    task = server_net.task("alice", "ab", ["a"])
    node = server_net.nodes["a@ab"]
    run = task["runs"][0]
    r = server_net.client.patch(
        f"/api/run/{run['id']}",
        json={"status": "initializing", "container_token": value},
        headers=node["headers"],
    )
    assert r.status_code == 400 and "container_token" in r.json["errors"]
    # nothing changed
    again = server_net.client.get(f"/api/run/{run['id']}", headers=node["headers"]).json
    assert again["status"] == "pending"


def test_no_token_for_a_run_that_ends_or_is_not_ours(server_net: Network):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node = server_net.nodes["a@ab"]
    run_a, run_b = _run_of(task, server_net.orgs["a"]), _run_of(task, server_net.orgs["b"])
    r = c.patch(
        f"/api/run/{run_a['id']}",
        json={"status": "completed", "result": "{}", "container_token": True},
        headers=node["headers"],
    )
    assert r.status_code == 409 and "container token" in r.json["msg"]
    # refused as a whole: the run is still open
    assert c.get(f"/api/run/{run_a['id']}", headers=node["headers"]).json["status"] == "pending"
    r = c.patch(
        f"/api/run/{run_b['id']}",
        json={"status": "initializing", "container_token": True},
        headers=node["headers"],
    )
    assert r.status_code == 403


def _capture_emits(app) -> list[tuple[str, dict, str]]:
    """Record what the app's socket.io hub emits (and emit it as before)."""
    hub = app.extensions["v6nb"].hub
    seen: list[tuple[str, dict, str]] = []
    original = hub.emit

    def emit(event: str, data: dict, room: str) -> None:
        seen.append((event, data, room))
        original(event, data, room)

    hub.emit = emit
    return seen


def test_new_task_event_carries_the_run_and_its_task(app, server_net: Network):
    seen = _capture_emits(app)
    task = server_net.task("alice", "ab", ["a", "b"], databases=[{"label": "default"}])
    news = {room: data for event, data, room in seen if event == "new_task"}
    node_a = server_net.nodes["a@ab"]
    data = news[f"node_{node_a['id']}"]
    run_a = _run_of(task, server_net.orgs["a"])
    assert data["task_id"] == task["id"] and data["run_ids"] == [run_a["id"]]
    assert data["runs"] == [
        {
            "id": run_a["id"],
            "task_id": task["id"],
            "organization_id": server_net.orgs["a"],
            "status": "pending",
            "input": '{"method": "m"}',
        }
    ]
    listed = server_net.client.get(
        "/api/run",
        query_string={"node_id": node_a["id"], "status": "open", "include": "task"},
        headers=node_a["headers"],
    ).json["data"]
    assert data["task"] == next(r["task"] for r in listed if r["id"] == run_a["id"])
    # each node hears of its own run only
    assert [r["id"] for r in news[f"node_{server_net.nodes['b@ab']['id']}"]["runs"]] == [
        _run_of(task, server_net.orgs["b"])["id"]
    ]


def test_new_task_event_leaves_a_large_input_to_the_listing(app, server_net: Network):
    seen = _capture_emits(app)
    body = {
        "collaboration_id": server_net.collabs["ab"],
        "organizations": [{"id": server_net.orgs["a"], "input": "x" * (64 * 1024 + 1)}],
        "image": "img:1",
        "method": "m",
    }
    r = server_net.client.post("/api/task", json=body, headers=server_net.users["alice"])
    assert r.status_code == 201, r.json
    (data,) = [d for event, d, _ in seen if event == "new_task"]
    assert data["run_ids"] == [r.json["runs"][0]["id"]]
    assert "runs" not in data and "task" not in data
