"""Two real server instances on one PostgreSQL database and one RabbitMQ: socket.io events cross instances."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import socketio

from tests.support import (
    AMQP_URL,
    PG_URL,
    ServerProcess,
    free_port,
    fresh_database,
    require_postgres,
    require_rabbitmq,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT_PW = "mq-root-password"
WAIT = 30  # seconds to wait for an event that must come


class Listener:
    """A socket.io client that queues every event it is told to watch."""

    def __init__(self, url: str, token: str, names: tuple[str, ...]) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        for name in names:
            self.sio.on(name, lambda data, name=name: self.events.put((name, data)))
        self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=20)

    def next(self, name: str, **match: Any) -> dict[str, Any]:
        """The next ``name`` event whose payload has ``match`` within ``WAIT`` s; others are skipped."""
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if got == name and all(data.get(k) == v for k, v in match.items()):
                return data
        raise AssertionError(f"no {name} event with {match} within {WAIT} s")

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B, started at the same moment on one empty database and one exchange."""
    require_postgres()
    require_rabbitmq()
    folder = tmp_path_factory.mktemp("mq")
    with fresh_database(PG_URL) as url:
        shared = {
            "database_url": url,
            "root_password": ROOT_PW,
            "message_queue_url": AMQP_URL,
            # one exchange per test run, so parallel runs on the same RabbitMQ never meet
            "message_queue_channel": f"v6nb-test-{uuid.uuid4().hex[:8]}",
            # every instance must sign and accept the same tokens
            "secret_key": uuid.uuid4().hex,
        }
        a = ServerProcess(folder, shared, name="a")
        b = ServerProcess(folder, shared, name="b")
        failures: list[BaseException] = []

        def start(srv: ServerProcess) -> None:
            try:
                srv.start()
            except BaseException as exc:  # pytest.fail raises outside Exception
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            if failures:
                raise failures[0]
            yield a, b
        finally:
            a.stop()
            b.stop()


@pytest.fixture(scope="module")
def mq_entities(pair: tuple[ServerProcess, ServerProcess]) -> dict[str, Any]:
    """One organization, one collaboration and two nodes of it (created through B)."""
    _, b = pair
    root = b.login("root", ROOT_PW)
    org = b.ok("POST", "/api/organization", root, json={"name": "mq-org"})["id"]
    org2 = b.ok("POST", "/api/organization", root, json={"name": "mq-org2"})["id"]
    collab = b.ok(
        "POST", "/api/collaboration", root, json={"name": "mq", "organization_ids": [org, org2]}
    )["id"]
    nodes = {}
    for o in (org, org2):
        node = b.ok(
            "POST", "/api/node", root, json={"organization_id": o, "collaboration_id": collab}
        )
        nodes[o] = node
    return {"root": root, "org": org, "org2": org2, "collab": collab, "nodes": nodes}


def _node_token(srv: ServerProcess, node: dict[str, Any]) -> str:
    return str(srv.ok("POST", "/api/token/node", json={"api_key": node["api_key"]})["access_token"])


def _wait_status(
    srv: ServerProcess, mq_entities: dict[str, Any], node: dict[str, Any], status: str
) -> None:
    """Wait until ``srv`` reports ``node`` with ``status`` (the socket.io handler sets it, not the
    client's connect call)."""
    wait_for(
        lambda: srv.ok("GET", f"/api/node/{node['id']}", mq_entities["root"])["status"] == status,
        timeout=WAIT,
        what=f"node {node['id']} to be {status} on {srv.url}",
    )


def _task(
    srv: ServerProcess, token: str, mq_entities: dict[str, Any], orgs: list[int]
) -> dict[str, Any]:
    body = {
        "collaboration_id": mq_entities["collab"],
        "organizations": [{"id": o, "input": "{}"} for o in orgs],
        "image": "img:1",
        "method": "m",
    }
    return srv.ok("POST", "/api/task", token, json=body)  # type: ignore[no-any-return]


def test_both_instances_share_one_database(pair, mq_entities):
    a, b = pair
    token_from_b = mq_entities["root"]
    # a token issued by B works on A, and A sees what was created through B
    orgs = a.ok("GET", "/api/organization", token_from_b)["data"]
    assert {"mq-org", "mq-org2"} <= {o["name"] for o in orgs}
    assert (
        a.get("/api/health").json() == b.get("/api/health").json() == {"status": "ok", "db": "ok"}
    )


def test_events_from_rest_on_b_reach_sockets_on_a(pair, mq_entities):
    a, b = pair
    org, node = mq_entities["org"], mq_entities["nodes"][mq_entities["org"]]
    node_token = _node_token(b, node)
    user = Listener(a.url, mq_entities["root"], ("node_online", "task_created", "run_status"))
    node_sio = Listener(a.url, node_token, ("new_task", "kill"))
    try:
        online = user.next("node_online", node_id=node["id"])
        assert online["status"] == "online"
        _wait_status(b, mq_entities, node, "online")

        task = _task(b, mq_entities["root"], mq_entities, [org])
        run_id = task["runs"][0]["id"]
        new = node_sio.next("new_task", task_id=task["id"])
        assert new["run_ids"] == [run_id] and new["collaboration_id"] == mq_entities["collab"]
        assert user.next("task_created", task_id=task["id"])["organization_ids"] == [org]

        b.ok("PATCH", f"/api/run/{run_id}", node_token, json={"status": "active"})
        status = user.next("run_status", run_id=run_id)
        assert status["status"] == "active" and status["node_id"] == node["id"]

        killed = b.ok("POST", f"/api/task/{task['id']}/kill", mq_entities["root"])
        assert killed["run_ids"] == [run_id]
        assert node_sio.next("kill", task_id=task["id"])["run_ids"] == [run_id]
        assert user.next("run_status", run_id=run_id)["status"] == "killed"
    finally:
        node_sio.close()
        user.close()


def test_events_from_a_reach_sockets_on_b(pair, mq_entities):
    a, b = pair
    node = mq_entities["nodes"][mq_entities["org2"]]
    user_on_b = Listener(b.url, mq_entities["root"], ("node_online", "node_offline"))
    node_on_a = Listener(a.url, _node_token(a, node), ())
    try:
        assert (
            user_on_b.next("node_online", node_id=node["id"])["organization_id"]
            == mq_entities["org2"]
        )
        node_on_a.close()
        assert user_on_b.next("node_offline", node_id=node["id"])["status"] == "offline"
        _wait_status(b, mq_entities, node, "offline")
    finally:
        node_on_a.close()
        user_on_b.close()


def test_no_event_lost_under_concurrent_requests(pair, mq_entities):
    a, b = pair
    node = mq_entities["nodes"][mq_entities["org"]]
    node_on_a = Listener(a.url, _node_token(a, node), ("new_task",))
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            tasks = list(
                pool.map(
                    lambda _: _task(b, mq_entities["root"], mq_entities, [mq_entities["org"]]),
                    range(40),
                )
            )
        want = {t["id"] for t in tasks}
        got = set()
        while got != want:
            _, data = node_on_a.events.get(timeout=WAIT)
            got.add(data["task_id"])
        assert got == want
    finally:
        node_on_a.close()


def test_restarting_one_instance_keeps_the_others_nodes_online(pair, mq_entities):
    a, b = pair
    node = mq_entities["nodes"][mq_entities["org"]]
    node_on_a = Listener(a.url, _node_token(a, node), ())
    try:
        _wait_status(a, mq_entities, node, "online")
        assert b.stop() == 0
        b.start()
        # B's start must not mark offline a node that is connected to A
        assert b.ok("GET", f"/api/node/{node['id']}", mq_entities["root"])["status"] == "online"
    finally:
        node_on_a.close()


def test_a_stale_connection_ending_does_not_mark_a_reconnected_node_offline(pair, mq_entities):
    a, b = pair
    node = mq_entities["nodes"][mq_entities["org2"]]
    watcher = Listener(b.url, mq_entities["root"], ("node_online", "node_offline"))
    old = Listener(a.url, _node_token(a, node), ())
    try:
        watcher.next("node_online", node_id=node["id"])
        # the node reconnects through B before its connection to A is over (a load balancer
        # switching instances); then the old connection ends
        new = Listener(b.url, _node_token(b, node), ())
        watcher.next("node_online", node_id=node["id"])
        old.close()
        # nothing to wait for when all is well: watch for a wrong node_offline for a few seconds
        stray = _events_for(watcher, seconds=3)
        assert ("node_offline", node["id"]) not in [(n, d["node_id"]) for n, d in stray]
        assert a.ok("GET", f"/api/node/{node['id']}", mq_entities["root"])["status"] == "online"
        new.close()
        assert watcher.next("node_offline", node_id=node["id"])["status"] == "offline"
    finally:
        old.close()
        watcher.close()


def _events_for(listener: Listener, seconds: float) -> list[tuple[str, Any]]:
    """Every event that arrives within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(listener.events.get(timeout=left))
        except queue.Empty:
            break
    return out


def test_unreachable_message_queue_stops_the_start_with_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    srv = ServerProcess(
        tmp_path,
        {"root_password": ROOT_PW, "message_queue_url": f"amqp://guest:guest@127.0.0.1:{port}//"},
    )
    with pytest.raises(AssertionError, match="Cannot reach the message queue"):
        srv.start()
    assert srv.stop() != 0
    assert "guest:guest" not in srv.output()  # the password is not echoed
