"""A real node records every run it executes, and each decision, in its audit log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from node_app.cli import main as node_main
from vantage6nb import audit, demo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_node():
    with demo.start(nodes=1) as network:
        yield network


def _audit_folder(network) -> Path:
    node = next(iter(network._nodes.values()))
    cfg = yaml.safe_load(Path(node.config).read_text())
    return Path(node.config).parent / cfg["data_dir"] / "audit"


def test_runs_and_decisions_are_recorded_and_the_chain_verifies(one_node):
    client = one_node.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        organizations=orgs, image="v6nb/diagnostics", method="echo", kwargs={"x": 1}
    )
    (value,) = task.results(timeout=120)
    refused = client.task.create(organizations=orgs, image="evil/miner", method="echo")
    refused.wait(timeout=60, raise_on_failure=False)
    run_id = int(task.status()["run_id"].iloc[0])
    refused_id = int(refused.status()["run_id"].iloc[0])
    folder = _audit_folder(one_node)
    frame = audit.read(folder)
    mine = frame[frame["run_id"] == run_id]
    assert list(mine["event"]) == ["decision", "run_started", "disclosure", "run_ended"]
    checked = mine[mine["event"] == "disclosure"].iloc[0]
    assert checked["outcome"] == "released" and checked["decisions"] == [
        {"rule": "untyped", "outcome": "trusted"}
    ]
    started = mine[mine["event"] == "run_started"].iloc[0]
    assert started["image"] == "v6nb/diagnostics" and started["method"] == "echo"
    assert started["task_id"] == task.id and started["arguments"].startswith("sha256:")
    ended = mine[mine["event"] == "run_ended"].iloc[0]
    assert ended["status"] == "completed" and re.fullmatch(
        r"sha256:[0-9a-f]{64}", ended["released"]
    )
    assert value  # the run really released something
    theirs = frame[frame["run_id"] == refused_id]
    assert list(theirs["event"]) == ["decision", "run_ended"]
    assert not bool(theirs.iloc[0]["allowed"]) and theirs.iloc[1]["status"] == "not allowed"
    assert audit.verify(folder) == []
    assert (
        node_main(["audit", "verify", "--config", str(next(iter(one_node._nodes.values())).config)])
        == 0
    )


def test_the_chain_continues_across_a_node_restart(one_node):
    client = one_node.client()
    orgs = client.organizations()["id"].tolist()
    name = one_node.node_names[0]
    before = len(audit.read(_audit_folder(one_node)))
    one_node.stop_node(name)
    one_node.start_node(name)  # waits until the node is online again
    client.task.create(organizations=orgs, image="v6nb/diagnostics", method="echo").results(
        timeout=120
    )
    frame = audit.read(_audit_folder(one_node))
    assert len(frame) >= before + 3
    assert list(frame["seq"]) == list(range(1, len(frame) + 1))
    assert audit.verify(_audit_folder(one_node)) == []
