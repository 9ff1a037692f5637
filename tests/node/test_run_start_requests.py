"""A run costs the node three requests: initializing (with the container token), active (sent
while the algorithm starts) and the final update; the run and its task come in the new_task event
(or, for a large input, in the open-run listing). Real server process, real daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node_app.config import load_config
from node_app.daemon import NodeDaemon

from .harness import server_process
from .test_daemon_e2e import _network

pytestmark = pytest.mark.integration


class SentRequests:
    """Records what the node's server client sends (and sends it unchanged)."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        original = daemon.client.send

        def send(method: str, path: str, **kwargs: Any) -> Any:
            self.sent.append((method, path.split("?")[0], kwargs.get("json")))
            return original(method, path, **kwargs)

        daemon.client.send = send  # type: ignore[method-assign]

    def about(self, run_id: int) -> list[tuple[str, str, Any]]:
        return [s for s in self.sent if s[1] in (f"/run/{run_id}", "/token/container", "/task")]


@pytest.fixture
def node(tmp_path: Path):
    with server_process(tmp_path) as server:
        info = _network(tmp_path, server, n_orgs=1)
        data = tmp_path / "org.csv"
        data.write_text("value\n1\n")
        config = load_config(
            None,
            environ={},
            overrides={
                "server_url": server.url,
                "api_key": info["keys"][0],
                "name": "inproc",
                "data_dir": str(tmp_path / "state"),
                "runtime": "process",
                "process_algorithms": {"test/probe": "tests.node.algorithms.probe"},
                "allowed_images": ["test/*"],
                "disclosure": {"untyped_images": ["test/*"]},  # the probe returns plain JSON
                "sync_interval_s": 30,
                "databases": [{"label": "default", "uri": str(data), "type": "csv"}],
            },
        )
        daemon = NodeDaemon(config)
        sent = SentRequests(daemon)
        try:
            daemon.start()
            yield {**info, "daemon": daemon, "sent": sent}
        finally:
            daemon.stop()


def test_a_run_takes_three_requests(node) -> None:
    api, sent = node["api"], node["sent"]
    first = api.create_task(node["collab"], node["orgs"], "test/probe", "echo", x=0)
    api.wait_runs(first["id"])  # by now the node's start-up listings are done
    sent.sent.clear()
    task = api.create_task(node["collab"], node["orgs"], "test/probe", "echo", x=1)
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "completed", run
    assert json.loads(run["result"])["kwargs"] == {"x": 1}
    assert run["started_at"] and run["finished_at"]
    calls = sent.about(run["id"])
    assert [(m, p) for m, p, _ in calls] == [("PATCH", f"/run/{run['id']}")] * 3, calls
    bodies = [body for _, _, body in calls]
    assert bodies[0] == {"status": "initializing", "container_token": True}
    assert bodies[1]["status"] == "active" and bodies[2]["status"] == "completed"
    # the new_task event carried the run and its task: nothing else was asked
    assert [s[:2] for s in sent.sent if s[0] == "GET"] == [], sent.sent


def test_a_large_input_is_fetched_with_the_open_runs(node) -> None:
    api, sent = node["api"], node["sent"]
    sent.sent.clear()
    big = "x" * (80 * 1024)  # over what a new_task event carries
    task = api.create_task(node["collab"], node["orgs"], "test/probe", "echo", blob=big)
    (run,) = api.wait_runs(task["id"])
    assert run["status"] == "completed", run
    assert json.loads(run["result"])["kwargs"] == {"blob": big}
    assert ("GET", "/run") in [s[:2] for s in sent.sent]
    assert ("GET", "/task") not in [s[:2] for s in sent.sent]


def test_a_refused_move_to_active_marks_the_run_cancelled(node) -> None:
    """The move to active runs beside the algorithm's start; when the server answers that the
    run is final (killed meanwhile), the node cancels the run instead of reporting it."""
    api, daemon = node["api"], node["daemon"]
    task = api.create_task(node["collab"], node["orgs"], "test/probe", "sleep", seconds=300)
    (run,) = api.wait_runs(task["id"], {"active"})
    api.call("POST", f"/task/{task['id']}/kill")
    assert api.wait_runs(task["id"])[0]["status"] == "killed"
    rid = int(run["id"])
    state = daemon.state
    with state._lock:
        state._cancelled.discard(rid)
    assert daemon.execution._report_active(rid, {"status": "active"}).result(timeout=30) is False
    assert state.killed_on_request(rid) or not state.holds(rid)
    assert api.runs(task["id"])[0]["status"] == "killed"  # the server's word stands
