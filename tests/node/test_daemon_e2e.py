"""The node daemon end to end: a real server process, real node processes, socket.io on loopback."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .harness import Api, Node, Server

pytestmark = pytest.mark.integration

try:  # the server is built alongside the node; without it these tests cannot run
    from server_app import create_app  # noqa: F401
except Exception as exc:  # pragma: no cover
    pytest.skip(f"server_app not usable yet: {exc}", allow_module_level=True)


def _network(tmp: Path, server: Server, n_orgs: int = 2) -> dict:
    root = Api(server.url, "root", "root-pass-123")
    orgs = [
        root.call("POST", "/organization", json={"name": f"org-{i}-{tmp.name[-6:]}"})["id"]
        for i in range(n_orgs)
    ]
    collab = root.call(
        "POST",
        "/collaboration",
        json={"name": f"c-{tmp.name[-6:]}", "organization_ids": orgs, "encrypted": False},
    )["id"]
    keys = [
        root.call(
            "POST",
            "/node",
            json={"organization_id": o, "collaboration_id": collab, "name": f"n{o}"},
        )["api_key"]
        for o in orgs
    ]
    root.call(
        "POST",
        "/user",
        json={
            "username": f"res-{tmp.name[-6:]}",
            "password": "research-pass-1",
            "organization_id": orgs[0],
        },
    )
    researcher = Api(server.url, f"res-{tmp.name[-6:]}", "research-pass-1")
    return {"root": root, "orgs": orgs, "collab": collab, "keys": keys, "api": researcher}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("net")
    server = Server(tmp)
    server.start()
    nodes: list[Node] = []
    try:
        info = _network(tmp, server)
        for i, (org, key) in enumerate(zip(info["orgs"], info["keys"], strict=True)):
            data = tmp / f"org{i}.csv"
            data.write_text(f"value,org\n{i},{org}\n")
            node = Node(
                tmp,
                f"node{i}",
                server.url,
                key,
                databases=[
                    {"label": "default", "uri": str(data), "type": "csv"},
                    {"label": "gone", "uri": "missing/nothere.csv", "type": "csv"},
                ],
            )
            node.start()
            nodes.append(node)
        yield {**info, "server": server, "nodes": nodes, "tmp": tmp}
    finally:
        for node in nodes:
            node.stop()
        server.stop()


def test_round_trip_on_two_nodes(net) -> None:
    api = net["api"]
    task = api.create_task(net["collab"], net["orgs"], "test/probe", "environment")
    runs = api.wait_runs(task["id"])
    assert {r["status"] for r in runs} == {"completed"}, runs
    by_org = {r["organization_id"]: json.loads(r["result"]) for r in runs}
    for org in net["orgs"]:
        seen = by_org[org]
        assert seen["labels"] == ["default"]
        assert seen["databases"]["default"]["first_line"] == "value,org"
        assert seen["secret_leaked"] is False
    assert all(r["started_at"] and r["finished_at"] for r in runs)


def test_crash_reports_log_tail(net) -> None:
    api = net["api"]
    task = api.create_task(
        net["collab"], net["orgs"][:1], "test/probe", "crash", message="kaboom-e2e"
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "crashed"
    assert "kaboom-e2e" in run["reason"]
    assert "Traceback" in run["log"] and "kaboom-e2e" in run["log"]


def test_missing_data_file_fails_the_run_not_the_node(net) -> None:
    api = net["api"]
    task = api.create_task(net["collab"], net["orgs"][:1], "test/probe", "echo", databases=["gone"])
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "failed"
    assert (
        "database 'gone' not found" in run["reason"]
        and "nothere.csv does not exist" in run["reason"]
    )
    task = api.create_task(net["collab"], net["orgs"][:1], "test/probe", "echo", databases=["nope"])
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "failed" and "'nope'" in run["reason"]
    # the node is still there
    task = api.create_task(net["collab"], net["orgs"][:1], "test/probe", "echo", x=1)
    assert api.wait_runs(task["id"])[0]["status"] == "completed"


def test_image_outside_policy_is_not_allowed(net) -> None:
    api = net["api"]
    task = api.create_task(net["collab"], net["orgs"][:1], "evil/miner", "echo")
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "not allowed"
    assert "evil/miner" in run["reason"] and "allowed_images" in run["reason"]


@pytest.mark.parametrize("vantage6_style", [False, True])
def test_subtasks_through_the_proxy(net, vantage6_style: bool) -> None:
    api = net["api"]
    task = api.create_task(
        net["collab"],
        net["orgs"][:1],
        "test/probe",
        "central",
        organization_ids=net["orgs"],
        vantage6_style=vantage6_style,
        tag="sub",
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "completed", run
    out = json.loads(run["result"])
    assert out["status"] == "completed"
    assert out["results"] == [{"args": [], "kwargs": {"tag": "sub"}}] * 2
    assert out["organizations"] == sorted(net["orgs"])
    assert out["nonsense_status"] == 404
    sub = api.call("GET", f"/task/{out['task_id']}")
    assert sub["parent_id"] == task["id"] and sub["image"] == "test/probe"


def test_kill_stops_a_running_algorithm(net) -> None:
    api = net["api"]
    task = api.create_task(net["collab"], net["orgs"][:1], "test/probe", "sleep", seconds=300)
    api.wait_runs(task["id"], {"active"})
    api.call("POST", f"/task/{task['id']}/kill")
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "killed"
    # the node's worker slot is free again: a new task completes
    task = api.create_task(net["collab"], net["orgs"][:1], "test/probe", "echo")
    assert api.wait_runs(task["id"])[0]["status"] == "completed"
    node_log = net["nodes"][0].log.read_text()
    assert "killed on request" in node_log


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_node_restarted_mid_task_runs_it_again(tmp_path: Path, sig: int) -> None:
    server = Server(tmp_path)
    server.start()
    node = None
    try:
        info = _network(tmp_path, server, n_orgs=1)
        node = Node(tmp_path, "n", server.url, info["keys"][0])
        node.start()
        api = info["api"]
        task = api.create_task(
            info["collab"], info["orgs"], "test/probe", "sleep", databases=[], seconds=4
        )
        api.wait_runs(task["id"], {"active"})
        assert node.stop(sig) in (0, -signal.SIGKILL)  # SIGTERM: a clean exit
        assert api.runs(task["id"])[0]["status"] == "active"
        node.start()
        (run,) = api.wait_runs(task["id"])
        assert run["status"] == "completed"
        assert "restarted" in run["reason"]
    finally:
        if node:
            node.stop()
        server.stop()


def test_server_restarted_mid_task_loses_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    node = None
    try:
        info = _network(tmp_path, server, n_orgs=1)
        node = Node(tmp_path, "n", server.url, info["keys"][0])
        node.start()
        api = info["api"]
        task = api.create_task(
            info["collab"], info["orgs"], "test/probe", "sleep", databases=[], seconds=3
        )
        api.wait_runs(task["id"], {"active"})
        server.stop()
        node.proc.wait_for_line("ended completed")  # finished while the server was down
        server.start()
        api = Api(server.url, f"res-{tmp_path.name[-6:]}", "research-pass-1")
        (run,) = api.wait_runs(task["id"])
        assert run["status"] == "completed"
        assert json.loads(run["result"]) == {"slept": 3}
        # and the node is connected again: a new task runs
        task = api.create_task(info["collab"], info["orgs"], "test/probe", "echo", databases=[])
        assert api.wait_runs(task["id"])[0]["status"] == "completed"
    finally:
        if node:
            node.stop()
        server.stop()
