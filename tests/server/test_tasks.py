"""Tasks and runs: creation, visibility, node updates, final-run immutability, kill, subtasks, results."""

from __future__ import annotations

import pytest

from tests.server.conftest import Network


def _run_of(task, org_id):
    return next(r for r in task["runs"] if r["organization_id"] == org_id)


def test_create_task_and_runs(server_net: Network):
    c = server_net.client
    task = server_net.task(
        "alice", "ab", ["a", "b"], name="t1", databases=[{"label": "default"}], uid="u-1"
    )
    assert task["uid"] == "u-1" and task["job_id"] == task["id"] and task["status"] == "pending"
    assert [r["status"] for r in task["runs"]] == ["pending", "pending"]
    assert all(r["node_status"] == "offline" for r in task["runs"])
    # duplicate uid
    body = {
        "collaboration_id": server_net.collabs["ab"],
        "organizations": [{"id": server_net.orgs["a"], "input": "x"}],
        "image": "i",
        "method": "m",
        "uid": "u-1",
    }
    r = c.post("/api/task", json=body, headers=server_net.users["alice"])
    assert r.status_code == 409 and "uid" in r.json["errors"]
    # a generated uid when absent
    assert len(server_net.task("alice", "ab", ["a"])["uid"]) == 32
    # not a member of the collaboration / receiver outside it
    body = {**body, "uid": "u-2", "collaboration_id": server_net.collabs["bc"]}
    assert c.post("/api/task", json=body, headers=server_net.users["alice"]).status_code == 403
    body = {
        **body,
        "collaboration_id": server_net.collabs["ab"],
        "organizations": [{"id": server_net.orgs["c"], "input": "x"}],
    }
    r = c.post("/api/task", json=body, headers=server_net.users["alice"])
    assert r.status_code == 400 and "organizations[0].id" in r.json["errors"]
    # nodes do not create tasks
    assert (
        c.post("/api/task", json=body, headers=server_net.nodes["a@ab"]["headers"]).status_code
        == 403
    )


def test_task_visibility_and_filters(server_net: Network):
    c = server_net.client
    t1 = server_net.task("alice", "ab", ["a", "b"])
    t2 = server_net.task("carol", "bc", ["b", "c"])
    assert [
        t["id"] for t in c.get("/api/task", headers=server_net.users["alice"]).json["data"]
    ] == [t1["id"]]
    assert c.get(f"/api/task/{t2['id']}", headers=server_net.users["alice"]).status_code == 403
    bob = c.get("/api/task", headers=server_net.users["bob"]).json
    assert bob["total"] == 2
    r = c.get(
        "/api/task",
        query_string={"collaboration_id": server_net.collabs["bc"]},
        headers=server_net.users["bob"],
    )
    assert [t["id"] for t in r.json["data"]] == [t2["id"]]
    r = c.get(
        "/api/task", query_string={"init_org_id": server_net.orgs["a"]}, headers=server_net.root
    )
    assert [t["id"] for t in r.json["data"]] == [t1["id"]]
    # node of a in ab sees only its own org's runs
    runs = c.get("/api/run", headers=server_net.nodes["a@ab"]["headers"]).json["data"]
    assert [r["organization_id"] for r in runs] == [server_net.orgs["a"]]
    other = _run_of(t1, server_net.orgs["b"])
    assert (
        c.get(f"/api/run/{other['id']}", headers=server_net.nodes["a@ab"]["headers"]).status_code
        == 403
    )
    assert (
        c.patch(
            f"/api/run/{other['id']}",
            json={"status": "active"},
            headers=server_net.nodes["a@ab"]["headers"],
        ).status_code
        == 403
    )


def test_run_lifecycle_and_final_immutability(server_net: Network):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node = server_net.nodes["a@ab"]["headers"]
    run = _run_of(task, server_net.orgs["a"])
    r = c.patch(f"/api/run/{run['id']}", json={"status": "active"}, headers=node)
    assert r.status_code == 200 and r.json["started_at"] is not None
    r = c.get("/api/task", query_string={"status": "pending"}, headers=server_net.users["alice"])
    assert r.json["total"] == 1  # b is still pending
    r = c.patch(
        f"/api/run/{run['id']}",
        json={"status": "completed", "result": "R", "log": "done"},
        headers=node,
    )
    assert r.status_code == 200 and r.json["finished_at"] and r.json["result"] == "R"
    r = c.patch(f"/api/run/{run['id']}", json={"status": "active"}, headers=node)
    assert r.status_code == 409
    assert c.patch(f"/api/run/{run['id']}", json={"log": "more"}, headers=node).status_code == 409
    assert c.get(f"/api/run/{run['id']}", headers=server_net.users["alice"]).json["log"] == "done"
    # lists omit input/result/log unless included
    lst = c.get(
        "/api/run", query_string={"task_id": task["id"]}, headers=server_net.users["alice"]
    ).json["data"]
    assert "result" not in lst[0]
    lst = c.get(
        "/api/run",
        query_string={"task_id": task["id"], "include": "result,log", "status": "completed"},
        headers=server_net.users["alice"],
    ).json["data"]
    assert [x["result"] for x in lst] == ["R"]
    assert (
        c.get("/api/run", query_string={"status": "open"}, headers=server_net.users["alice"]).json[
            "total"
        ]
        == 1
    )
    assert (
        c.get(
            "/api/run",
            query_string={"node_id": server_net.nodes["a@ab"]["id"]},
            headers=server_net.root,
        ).json["total"]
        == 1
    )
    results = c.get(
        "/api/result", query_string={"task_id": task["id"]}, headers=server_net.users["alice"]
    ).json["data"]
    assert {x["result"] for x in results} == {"R", None}
    # bad status value / bad time
    b = _run_of(task, server_net.orgs["b"])
    nb = server_net.nodes["b@ab"]["headers"]
    assert c.patch(f"/api/run/{b['id']}", json={"status": "done"}, headers=nb).status_code == 400
    assert (
        c.patch(f"/api/run/{b['id']}", json={"started_at": "yesterday"}, headers=nb).status_code
        == 400
    )
    r = c.patch(f"/api/run/{b['id']}", json={"status": "failed", "reason": "no data"}, headers=nb)
    assert r.json["reason"] == "no data"
    assert (
        c.get(f"/api/task/{task['id']}", headers=server_net.users["alice"]).json["status"]
        == "failed"
    )


REFUSAL = (
    "refused by this node's disclosure policy (rule min_count, threshold 5): "
    "a cell of species x island is below this node's minimum of 5 records"
)


@pytest.mark.parametrize("before", [[], ["initializing", "active"]])
def test_a_node_refuses_a_run_for_good(server_net: Network, before: list[str]):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node, alice = server_net.nodes["a@ab"]["headers"], server_net.users["alice"]
    run = _run_of(task, server_net.orgs["a"])
    for status in before:  # refused straight from pending (direct_part) or after running
        assert (
            c.patch(f"/api/run/{run['id']}", json={"status": status}, headers=node).status_code
            == 200
        )
    body = {"status": "refused", "reason": REFUSAL, "finished_at": "2024-05-01T10:02:11+00:00"}
    r = c.patch(f"/api/run/{run['id']}", json=body, headers=node)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "refused" and r.json["reason"] == REFUSAL
    assert r.json["finished_at"].startswith("2024-05-01T10:02:11")
    # final: neither back to active nor on to completed, and nothing else changes
    for later in ({"status": "active"}, {"status": "completed", "result": "R"}, {"log": "x"}):
        assert c.patch(f"/api/run/{run['id']}", json=later, headers=node).status_code == 409
    assert c.get(f"/api/run/{run['id']}", headers=alice).json["status"] == "refused"
    listed = c.get("/api/run", query_string={"status": "refused"}, headers=alice).json["data"]
    assert [x["id"] for x in listed] == [run["id"]]
    # the task: a failed one once the other run ends, and no result for the refused run
    b = _run_of(task, server_net.orgs["b"])
    nb = server_net.nodes["b@ab"]["headers"]
    c.patch(f"/api/run/{b['id']}", json={"status": "completed", "result": "R"}, headers=nb)
    assert c.get(f"/api/task/{task['id']}", headers=alice).json["status"] == "failed"
    failed = c.get("/api/task", query_string={"status": "failed"}, headers=alice).json["data"]
    assert task["id"] in [t["id"] for t in failed]
    results = c.get("/api/result", query_string={"task_id": task["id"]}, headers=alice).json
    assert {x["run_id"]: x["result"] for x in results["data"]} == {run["id"]: None, b["id"]: "R"}


def test_kill(server_net: Network):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node = server_net.nodes["a@ab"]["headers"]
    a_run = _run_of(task, server_net.orgs["a"])
    c.patch(f"/api/run/{a_run['id']}", json={"status": "completed", "result": "x"}, headers=node)
    assert (
        c.post(f"/api/task/{task['id']}/kill", headers=server_net.users["carol"]).status_code == 403
    )
    r = c.post(f"/api/task/{task['id']}/kill", headers=server_net.users["alice"])
    assert r.status_code == 200 and r.json["run_ids"] == [_run_of(task, server_net.orgs["b"])["id"]]
    killed = c.get(f"/api/run/{r.json['run_ids'][0]}", headers=server_net.root).json
    assert killed["status"] == "killed" and killed["reason"] == "killed by alice"
    assert c.get(f"/api/run/{a_run['id']}", headers=server_net.root).json["status"] == "completed"
    assert (
        c.patch(
            f"/api/run/{killed['id']}",
            json={"status": "completed"},
            headers=server_net.nodes["b@ab"]["headers"],
        ).status_code
        == 409
    )
    assert c.delete(f"/api/task/{task['id']}", headers=server_net.users["alice"]).status_code == 200
    assert c.get(f"/api/run/{a_run['id']}", headers=server_net.root).status_code == 404


def test_container_subtasks(server_net: Network):
    c = server_net.client
    parent = server_net.task("alice", "ab", ["a"])
    node = server_net.nodes["a@ab"]["headers"]
    run = parent["runs"][0]
    tok = c.post("/api/token/container", json={"run_id": run["id"]}, headers=node).json[
        "container_token"
    ]
    ch = {"Authorization": f"Bearer {tok}"}
    body = {
        "organizations": [
            {"id": server_net.orgs["a"], "input": "i"},
            {"id": server_net.orgs["b"], "input": "i"},
        ],
        "method": "partial",
    }
    r = c.post("/api/task", json=body, headers=ch)
    assert r.status_code == 201, r.json
    sub = r.json
    assert (
        sub["parent_id"] == parent["id"]
        and sub["job_id"] == parent["job_id"]
        and sub["image"] == "img:1"
    )
    assert (
        sub["init_org_id"] == server_net.orgs["a"]
        and sub["init_user_id"] == server_net.user_ids["alice"]
    )
    assert c.post("/api/task", json={**body, "image": "evil:1"}, headers=ch).status_code == 403
    assert (
        c.post(
            "/api/task", json={**body, "collaboration_id": server_net.collabs["bc"]}, headers=ch
        ).status_code
        == 403
    )
    # reads within its job only
    other = server_net.task("bob", "ab", ["b"])
    assert c.get(f"/api/task/{sub['id']}", headers=ch).status_code == 200
    denied = c.get(f"/api/task/{other['id']}", headers=ch)
    assert denied.status_code == 403
    # the same collaboration, another job: the message says so (not "a collaboration ...")
    assert "not part of this algorithm's job" in denied.json["msg"]
    assert "collaboration" not in denied.json["msg"]
    assert {t["id"] for t in c.get("/api/task", headers=ch).json["data"]} == {
        parent["id"],
        sub["id"],
    }
    assert len(c.get("/api/run", query_string={"task_id": sub["id"]}, headers=ch).json["data"]) == 2
    assert c.get("/api/result", query_string={"task_id": sub["id"]}, headers=ch).status_code == 200
    orgs = c.get("/api/organization", headers=ch).json["data"]
    assert {o["id"] for o in orgs} == {server_net.orgs["a"], server_net.orgs["b"]}
    # killing the parent kills the subtask's runs too
    r = c.post(f"/api/task/{parent['id']}/kill", headers=server_net.users["alice"])
    assert len(r.json["run_ids"]) == 3
    assert (
        c.get(
            "/api/task",
            query_string={"parent_id": parent["id"], "status": "failed"},
            headers=server_net.root,
        ).json["total"]
        == 1
    )


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_out_of_range_in_utc_is_a_400_not_a_500(server_net: Network, when: str):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a"])
    node = server_net.nodes["a@ab"]["headers"]
    run = _run_of(task, server_net.orgs["a"])
    r = c.patch(
        f"/api/run/{run['id']}", json={"status": "active", "started_at": when}, headers=node
    )
    assert r.status_code == 400, r.json
    assert r.json["errors"] == {"started_at": "out of range"} and "UTC" in r.json["msg"]


def test_a_page_past_the_last_id_is_a_400_not_a_500(server_net: Network):
    alice = server_net.users["alice"]
    for path in ("/api/organization", "/api/task", "/api/run", "/api/user"):
        r = server_net.client.get(
            path, query_string={"page": 2**62, "per_page": 419}, headers=alice
        )
        assert r.status_code == 400 and "page" in r.json["errors"], (path, r.json)
