"""Exactly once: a node killed (SIGKILL) once a run's algorithm has written its output returns that
output after its restart, and never runs the algorithm a second time (docs/operations.md)."""

from __future__ import annotations

import collections
import json
import random
import signal
import time
from pathlib import Path

import pytest

from tests.support import NodeProcess, wait_for

from .harness import ROOT_PASSWORD, Api, probe_node, server_process

pytestmark = pytest.mark.integration

TRIALS = 20
ONCE = {"test/once": "tests.node.algorithms.once"}


def _network(tmp: Path, server_url: str) -> dict:
    root = Api(server_url, "root", ROOT_PASSWORD)
    org = root.call("POST", "/organization", json={"name": f"once-{tmp.name[-6:]}"})["id"]
    collab = root.call(
        "POST",
        "/collaboration",
        json={"name": f"once-{tmp.name[-6:]}", "organization_ids": [org], "encrypted": False},
    )["id"]
    key = root.call(
        "POST", "/node", json={"organization_id": org, "collaboration_id": collab, "name": "n"}
    )["api_key"]
    user = {"username": f"once-{tmp.name[-6:]}", "password": "research-pass-1"}
    root.call("POST", "/user", json={**user, "organization_id": org})
    api = Api(server_url, user["username"], user["password"])
    return {"api": api, "org": org, "collab": collab, "key": key}


def _where(node: NodeProcess, rid: int) -> str:
    """Where the run stood when the node died, from what it left on disk."""
    state = node.folder / "state"
    work = state / "runs" / f"run-{rid}"
    if (state / "outbox" / f"run-{rid}.json").exists():
        return "in the outbox"
    if (work / "output.json").exists():
        return "output taken by the node"
    if (work / "algorithm-output" / "output.json").exists():
        return "output written, algorithm not gone"
    return "uploaded" if not work.exists() else "no output"


def test_a_node_killed_after_the_output_never_runs_the_algorithm_again(tmp_path: Path) -> None:
    rng = random.Random(14)
    seen: collections.Counter[str] = collections.Counter()
    with server_process(tmp_path) as server:
        net = _network(tmp_path, server.url)
        node = probe_node(
            tmp_path,
            "n",
            server.url,
            net["key"],
            process_algorithms=ONCE,
            databases=[],
            log_level="INFO",
        )
        node.start()
        try:
            api = net["api"]
            for trial in range(TRIALS):
                record = tmp_path / f"executions-{trial}.txt"
                # the kill lands from inside the algorithm's exit to after the upload
                pause_ms, delay_ms = trial % 10, rng.uniform(0, 60)
                task = api.create_task(
                    net["collab"],
                    [net["org"]],
                    "test/once",
                    "record",
                    databases=[],
                    path=str(record),
                    pause_ms=pause_ms,
                )
                wait_for(
                    Path(f"{record}.written").exists,
                    60,
                    f"trial {trial}: the output to be written",
                    interval=0.001,
                )
                time.sleep(delay_ms / 1000)
                node.stop(signal.SIGKILL)
                (run,) = api.runs(task["id"])
                seen[_where(node, run["id"])] += 1
                node.start()
                (run,) = api.wait_runs(task["id"])
                lines = record.read_text().splitlines()
                assert len(lines) == 1, (trial, lines, run)
                assert run["status"] == "completed", (trial, run)
                assert json.loads(run["result"])["executions"] == 1, (trial, run)
        finally:
            node.stop()
    log = node.log_path.read_text()
    assert "previous life of this node: running it again" not in log, log[-3000:]
    print(f"where the {TRIALS} kills landed: {dict(seen)}")


def test_an_output_the_node_cannot_return_ends_the_run_failed_not_run_again(
    tmp_path: Path,
) -> None:
    with server_process(tmp_path) as server:
        net = _network(tmp_path, server.url)
        node = probe_node(
            tmp_path, "n", server.url, net["key"], process_algorithms=ONCE, databases=[]
        )
        with node:
            record = tmp_path / "executions.txt"
            task = net["api"].create_task(
                net["collab"],
                [net["org"]],
                "test/once",
                "record",
                databases=[],
                path=str(record),
                pause_ms=60_000,  # the algorithm lingers after its output: the kill lands there
            )
            wait_for(Path(f"{record}.written").exists, 60, "the output to be written")
            node.stop(signal.SIGKILL)
            (run,) = net["api"].runs(task["id"])
            work = node.folder / "state" / "runs" / f"run-{run['id']}"
            assert (work / "algorithm-output" / "output.json").exists()
            (work / "started.json").write_text("{lost")  # the node's record of the start is gone
            node.start()
            (run,) = net["api"].wait_runs(task["id"])
        assert run["status"] == "failed", run
        assert "cannot return it" in run["reason"] and "not run again" in run["reason"]
        assert len(record.read_text().splitlines()) == 1
