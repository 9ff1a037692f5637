"""The node daemon end to end: a real server process, real node processes, socket.io on loopback."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import NodeProcess, ServerProcess

from .harness import ROOT_PASSWORD, Api, probe_node, server_process

pytestmark = pytest.mark.integration


def _network(tmp: Path, server: ServerProcess, n_orgs: int = 2) -> dict:
    root = Api(server.url, "root", ROOT_PASSWORD)
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
def node_harness(tmp_path_factory):
    """A server process and two probe nodes (one organization each) in one collaboration, with a
    researcher's REST helper; tests only create tasks on it."""
    tmp = tmp_path_factory.mktemp("node-harness")
    nodes: list[NodeProcess] = []
    with server_process(tmp) as server:
        try:
            info = _network(tmp, server)
            for i, (org, key) in enumerate(zip(info["orgs"], info["keys"], strict=True)):
                data = tmp / f"org{i}.csv"
                data.write_text(f"value,org\n{i},{org}\n")
                node = probe_node(
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


def test_round_trip_on_two_nodes(node_harness) -> None:
    api = node_harness["api"]
    task = api.create_task(
        node_harness["collab"], node_harness["orgs"], "test/probe", "environment"
    )
    runs = api.wait_runs(task["id"])
    assert {r["status"] for r in runs} == {"completed"}, runs
    by_org = {r["organization_id"]: json.loads(r["result"]) for r in runs}
    for org in node_harness["orgs"]:
        seen = by_org[org]
        assert seen["labels"] == ["default"]
        assert seen["databases"]["default"]["first_line"] == "value,org"
        assert seen["secret_leaked"] is False
    assert all(r["started_at"] and r["finished_at"] for r in runs)


def test_crash_reports_log_tail(node_harness) -> None:
    api = node_harness["api"]
    task = api.create_task(
        node_harness["collab"],
        node_harness["orgs"][:1],
        "test/probe",
        "crash",
        message="kaboom-e2e",
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "crashed"
    assert "kaboom-e2e" in run["reason"]
    assert "Traceback" in run["log"] and "kaboom-e2e" in run["log"]


def test_missing_data_file_fails_the_run_not_the_node(node_harness) -> None:
    api = node_harness["api"]
    task = api.create_task(
        node_harness["collab"], node_harness["orgs"][:1], "test/probe", "echo", databases=["gone"]
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "failed"
    assert (
        "database 'gone' not found" in run["reason"]
        and "nothere.csv does not exist" in run["reason"]
    )
    task = api.create_task(
        node_harness["collab"], node_harness["orgs"][:1], "test/probe", "echo", databases=["nope"]
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "failed" and "'nope'" in run["reason"]
    # the node is still there
    task = api.create_task(
        node_harness["collab"], node_harness["orgs"][:1], "test/probe", "echo", x=1
    )
    assert api.wait_runs(task["id"])[0]["status"] == "completed"


def test_image_outside_policy_is_not_allowed(node_harness) -> None:
    api = node_harness["api"]
    task = api.create_task(node_harness["collab"], node_harness["orgs"][:1], "evil/miner", "echo")
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "not allowed"
    assert "evil/miner" in run["reason"] and "allowed_images" in run["reason"]


@pytest.mark.parametrize("vantage6_style", [False, True])
def test_subtasks_through_the_proxy(node_harness, vantage6_style: bool) -> None:
    api = node_harness["api"]
    task = api.create_task(
        node_harness["collab"],
        node_harness["orgs"][:1],
        "test/probe",
        "central",
        organization_ids=node_harness["orgs"],
        vantage6_style=vantage6_style,
        tag="sub",
    )
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "completed", run
    out = json.loads(run["result"])
    assert out["status"] == "completed"
    assert out["results"] == [{"args": [], "kwargs": {"tag": "sub"}}] * 2
    assert out["organizations"] == sorted(node_harness["orgs"])
    assert out["nonsense_status"] == 404
    sub = api.call("GET", f"/task/{out['task_id']}")
    assert sub["parent_id"] == task["id"] and sub["image"] == "test/probe"


def test_kill_stops_a_running_algorithm(node_harness) -> None:
    api = node_harness["api"]
    task = api.create_task(
        node_harness["collab"], node_harness["orgs"][:1], "test/probe", "sleep", seconds=300
    )
    api.wait_runs(task["id"], {"active"})
    api.call("POST", f"/task/{task['id']}/kill")
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "killed"
    # the node's worker slot is free again: a new task completes
    task = api.create_task(node_harness["collab"], node_harness["orgs"][:1], "test/probe", "echo")
    assert api.wait_runs(task["id"])[0]["status"] == "completed"
    node_harness["nodes"][0].wait_for_line("killed on request")  # the node's log says why


@contextmanager
def _sleeping_run(
    tmp: Path, seconds: int
) -> Iterator[tuple[ServerProcess, NodeProcess, dict, dict]]:
    """A server, one probe node and a task whose run sleeps ``seconds`` s, once that run is active."""
    with server_process(tmp) as server:
        info = _network(tmp, server, n_orgs=1)
        with probe_node(tmp, "n", server.url, info["keys"][0]) as node:
            api = info["api"]
            task = api.create_task(
                info["collab"], info["orgs"], "test/probe", "sleep", databases=[], seconds=seconds
            )
            api.wait_runs(task["id"], {"active"})
            yield server, node, info, task


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_node_restarted_mid_task_runs_it_again(tmp_path: Path, sig: int) -> None:
    with _sleeping_run(tmp_path, 4) as (_, node, info, task):
        api = info["api"]
        assert node.stop(sig) in (0, -signal.SIGKILL)  # SIGTERM: a clean exit
        assert api.runs(task["id"])[0]["status"] == "active"
        node.start()
        (run,) = api.wait_runs(task["id"])
        assert run["status"] == "completed"
        assert "restarted" in run["reason"]


def test_server_restarted_mid_task_loses_nothing(tmp_path: Path) -> None:
    with _sleeping_run(tmp_path, 3) as (server, node, info, task):
        server.stop()
        node.wait_for_line("ended completed")  # finished while the server was down
        server.start()
        api = Api(server.url, f"res-{tmp_path.name[-6:]}", "research-pass-1")
        (run,) = api.wait_runs(task["id"])
        assert run["status"] == "completed"
        assert json.loads(run["result"]) == {"slept": 3}
        # and the node is connected again: a new task runs
        task = api.create_task(info["collab"], info["orgs"], "test/probe", "echo", databases=[])
        assert api.wait_runs(task["id"])[0]["status"] == "completed"
