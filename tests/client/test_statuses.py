"""One status vocabulary everywhere: a task's repr, ``task.state``, ``task.list()`` and the monitor
agree (a killed task is ``killed``); results carry their organizations; fingerprints are shown whole."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.client.conftest import ROOT_PASSWORD, Admin, client_server
from tests.client.test_round_trip_requests import NodeAgent
from vantage6nb import Client
from vantage6nb.common.keys import OrgKey
from vantage6nb.common.schemas import task_status

WAIT_S = 20.0


@pytest.fixture
def nodes(network: dict[str, Any]) -> dict[str, NodeAgent]:
    return {
        name: NodeAgent(network["url"], node["api_key"]) for name, node in network["nodes"].items()
    }


def _runs(task: Any) -> dict[str, int]:
    names = task.organization_names()
    return {names[int(r["organization_id"])]: int(r["id"]) for r in task.runs}


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (["completed", "completed"], "completed"),
        (["completed", "active"], "active"),
        (["pending", "active"], "pending"),
        (["killed", "killed"], "killed"),
        (["completed", "killed"], "killed"),
        (["refused", "completed"], "refused"),
        (["killed", "refused"], "failed"),
        (["crashed", "completed"], "failed"),
        (["not allowed"], "failed"),
    ],
)
def test_a_task_status_from_its_runs(runs: list[str], expected: str) -> None:
    assert task_status(runs) == expected


def test_a_killed_task_is_killed_in_its_repr_the_list_and_the_monitor(client: Client) -> None:
    from vantage6nb.widgets import TaskMonitor

    task = client.task.create(image="v6nb/summary", method="summary_partial", name="to kill")
    assert task.state == "pending" and " pending — Leiden pending" in repr(task)
    task.kill()
    assert task.state == "killed"
    assert repr(task).endswith(" killed — Leiden killed, Utrecht killed>")
    listed = client.task.list().set_index("id")
    assert listed.loc[task.id, "status"] == "killed"
    assert task.id in client.task.list(status="killed")["id"].tolist()
    assert task.id not in client.task.list(status="failed")["id"].tolist()
    assert client.task.get(task.id).state == "killed"  # a fresh handle reads the same
    monitor = TaskMonitor(task)
    try:
        assert monitor.status == "killed"
    finally:
        monitor.stop()


def test_a_task_killed_after_one_organization_completed_is_killed(
    client: Client, nodes: dict[str, NodeAgent]
) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial", name="half")
    nodes["Leiden"].complete(_runs(task)["Leiden"], {"n": 1})
    task.kill()
    assert [r["status"] for r in task.runs] == ["completed", "killed"]
    assert task.state == "killed"
    assert client.task.list().set_index("id").loc[task.id, "status"] == "killed"


def test_a_failed_task_stays_failed_in_the_list(
    client: Client, nodes: dict[str, NodeAgent]
) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial", name="crashed")
    runs = _runs(task)
    nodes["Leiden"].complete(runs["Leiden"], {"n": 1})
    nodes["Utrecht"].patch(runs["Utrecht"], {"status": "crashed", "reason": "exit code 1"})
    task.wait(timeout=WAIT_S, raise_on_failure=False, progress=False)
    assert task.state == "failed"
    assert task.id in client.task.list(status="failed")["id"].tolist()
    assert task.id not in client.task.list(status="killed")["id"].tolist()


def test_results_are_labelled_with_their_organization(
    client: Client, nodes: dict[str, NodeAgent]
) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial", name="labelled")
    runs = _runs(task)
    nodes["Leiden"].complete(runs["Leiden"], {"n": 1})
    nodes["Utrecht"].complete(runs["Utrecht"], {"n": 2, "name": "x" * 10})
    results = task.wait(timeout=WAIT_S, progress=False).results()
    assert results == [{"n": 1}, {"n": 2, "name": "x" * 10}]  # still the list it was
    assert results.organizations == ["Leiden", "Utrecht"]
    assert results["Utrecht"] == {"n": 2, "name": "x" * 10} and results[0] == {"n": 1}
    assert results.items() == list(zip(["Leiden", "Utrecht"], results, strict=True))
    assert repr(results).splitlines() == [
        "2 results, by organization:",
        "  Leiden:  {'n': 1}",
        "  Utrecht: {'n': 2, 'name': 'xxxxxxxxxx'}",
    ]
    with pytest.raises(KeyError, match="these organizations have one: Leiden, Utrecht"):
        results["Groningen"]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory):
    """A server of its own, with an organization that has a public key."""
    with client_server(tmp_path_factory.mktemp("keyed")) as server:
        key = OrgKey.generate()
        Admin(server.url).post(
            "/organization",
            {"name": f"Keyed {secrets.token_hex(3)}", "public_key": key.public_key_b64},
        )
        yield server.url, key.fingerprint


def test_key_fingerprints_are_shown_whole(keyed_server: tuple[str, str]) -> None:
    url, fp = keyed_server
    assert len(fp) == 50  # longer than pandas' display.max_colwidth cuts at
    with Client(url, state_dir=False).login("root", ROOT_PASSWORD) as admin:
        orgs = admin.organizations()
    narrow = orgs[["name", "key_fingerprint"]]
    for shown in (narrow, narrow.set_index("name"), orgs.set_index("name")["key_fingerprint"]):
        assert fp in repr(shown)
    for shown in (orgs, narrow, orgs.set_index("name")):  # as a notebook shows a frame
        assert fp in shown._repr_html_()
    assert orgs["key_fingerprint"].dropna().tolist() == [fp]
