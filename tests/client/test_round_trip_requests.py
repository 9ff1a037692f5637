"""A task round trip in few requests: cached collaborations, events followed from creation on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.client.conftest import Admin
from tests.support import wait_for
from vantage6nb import Client, errors
from vantage6nb.common import events

WAIT_S = 20.0


class Requests:
    """Records every request the client's transport sends (and sends it unchanged)."""

    def __init__(self, client: Client) -> None:
        self.sent: list[tuple[str, str]] = []
        transport = client._transport
        original = transport._send

        def send(method: str, path: str, **kwargs: Any) -> Any:
            self.sent.append((method, path))
            return original(method, path, **kwargs)

        transport._send = send  # type: ignore[method-assign]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.sent if m == method and p == path)


class NodeAgent:
    """Plays a node over REST with its API key: takes one run through its statuses."""

    def __init__(self, url: str, api_key: str) -> None:
        self.api = url + "/api"
        r = requests.post(self.api + "/token/node", json={"api_key": api_key}, timeout=10)
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def patch(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.patch(f"{self.api}/run/{run_id}", json=body, headers=self.headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def complete(self, run_id: int, result: Any) -> None:
        started = self.patch(run_id, {"status": "initializing", "container_token": True})
        assert started["container_token"]
        self.patch(run_id, {"status": "active"})
        self.patch(run_id, {"status": "completed", "result": json.dumps(result)})


@pytest.fixture
def leiden(network: dict[str, Any]) -> NodeAgent:
    return NodeAgent(network["url"], network["nodes"]["Leiden"]["api_key"])


def test_a_task_created_while_connected_is_waited_for_without_rereading_runs(
    client: Client, leiden: NodeAgent
) -> None:
    assert client.events.connect()
    sent = Requests(client)
    task = client.task.create(organizations=["Leiden"], image="test/probe", method="m")
    (run,) = task.runs
    leiden.complete(int(run["id"]), {"n": 7})
    assert task.wait(timeout=WAIT_S, progress=False).done
    assert task.results() == [{"n": 7}]
    # the run statuses came as events only: no GET /run between the POST and the results
    assert sent.count("GET", "/run") == 0, sent.sent
    assert sent.count("POST", "/task") == 1 and sent.count("GET", "/result") == 1


def test_events_missed_while_disconnected_are_read_back(client: Client, leiden: NodeAgent) -> None:
    assert client.events.connect()
    task = client.task.create(organizations=["Leiden"], image="test/probe", method="m")
    client.events.close()  # the completion below is emitted while nobody listens
    leiden.complete(int(task.runs[0]["id"]), [1, 2])
    sent = Requests(client)
    assert task.wait(timeout=WAIT_S, progress=False).done  # reconnects, so re-reads the runs
    assert sent.count("GET", "/run") >= 1
    assert task.results() == [[1, 2]]


def test_events_caught_before_the_task_existed_are_folded_in_in_order(client: Client) -> None:
    assert client.events.connect()
    task = client.task.create(organizations=["Leiden"], image="test/probe", method="m")
    try:
        run_id = int(task.runs[0]["id"])
        ev = {"task_id": task.id, "run_id": run_id, "reason": ""}
        early = [
            {**ev, "status": "killed", "reason": "stop"},
            {**ev, "status": "active"},  # older news must not undo a final status
            {**ev, "task_id": task.id + 10_000, "status": "failed"},  # someone else's task
        ]
        other = client.task.create(organizations=["Leiden"], image="test/probe", method="m")
        other._follow(early, lambda: None, client.events.generation)
        assert [r["status"] for r in other.runs] == ["pending"]  # none of those are its own
        task._stop_following()
        task._follow(early, lambda: None, client.events.generation)
        assert [r["status"] for r in task.runs] == ["killed"]
        assert task._unfollow is not None  # a final state from old news: still listening
    finally:
        task.kill()
        other.kill()


def test_collaborations_are_listed_once_for_tasks_in_a_row(client: Client) -> None:
    sent = Requests(client)
    for _ in range(3):
        client.task.create(organizations=["Leiden"], image="test/probe", method="m").kill()
    assert sent.count("GET", "/collaboration") == 1, sent.sent
    client.collaborations()  # an explicit listing always asks the server
    assert sent.count("GET", "/collaboration") == 2


def test_a_new_member_is_found_although_the_listing_was_cached(
    client: Client, network: dict[str, Any]
) -> None:
    client.task.create(organizations=["Leiden"], image="test/probe", method="m").kill()
    admin = Admin(network["url"])
    collab, other = network["collaboration"]["id"], network["orgs"]["Elsewhere"]["id"]
    admin.post(f"/collaboration/{collab}/organization", {"id": other})
    try:
        task = client.task.create(organizations=["Elsewhere"], image="test/probe", method="m")
        assert task.organization_ids == [other]
        task.kill()
    finally:
        r = requests.delete(
            f"{admin.url}/collaboration/{collab}/organization",
            json={"id": other},
            headers=admin.headers,
            timeout=10,
        )
        assert r.status_code == 200, r.text


def test_events_on_a_finished_task_stop_being_followed(client: Client, leiden: NodeAgent) -> None:
    assert client.events.connect()
    task = client.task.create(organizations=["Leiden"], image="test/probe", method="m")
    assert task._unfollow is not None
    seen: list[Any] = []
    off = client.events.on(events.RUN_STATUS, seen.append)
    leiden.complete(int(task.runs[0]["id"]), 1)
    task.wait(timeout=WAIT_S, progress=False)
    off()
    wait_for(lambda: task._unfollow is None, WAIT_S, "the finished task to stop following events")


def test_a_collaboration_resolved_once_is_not_looked_up_again(client: Client) -> None:
    collab = client.collaboration()
    assert collab is not client.collaboration()  # a copy: the cache stays the client's
    ids = client.organization_ids(["Leiden"], collaboration=collab)
    assert ids == client.organization_ids("Leiden", collaboration=collab["name"])
    assert client.organization_names(ids)[ids[0]] == "Leiden"
    sent = Requests(client)
    task = client.task.create(
        collaboration=collab, organizations=ids, image="test/probe", method="m"
    )
    assert task.organization_ids == ids and task.collaboration_id == collab["id"]
    assert sent.count("GET", "/collaboration") == 0 and sent.count("GET", "/organization") == 0
    task.kill()
    with pytest.raises(errors.NotFound, match="Elsewhere"):
        client.task.create(
            collaboration=collab, organizations=["Elsewhere"], image="test/probe", method="m"
        )
    with pytest.raises(errors.ValidationError, match="empty"):
        client.task.create(collaboration=collab, organizations=[], image="test/probe", method="m")
