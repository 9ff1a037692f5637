"""A server restart: the event stream reconnects with a fresh token, says so, and waiters carry on."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.support import ServerProcess
from vantage6nb import Client
from vantage6nb.client._events import DISCONNECTED, RECONNECTED
from vantage6nb.common import events

from .conftest import ROOT_PASSWORD, Admin, client_server

EVENT_WAIT_S = 60  # upper bound for a restart + reconnect; not a speed assertion


@pytest.fixture
def own_server(tmp_path):
    with client_server(tmp_path) as proc:
        yield proc


def test_restart_reconnects_and_waiters_carry_on(own_server: ServerProcess) -> None:
    admin = Admin(own_server.url)
    org = admin.post("/organization", {"name": "Solo"})
    collab = admin.post(
        "/collaboration", {"name": "solo", "organization_ids": [org["id"]], "encrypted": False}
    )
    admin.post(
        "/node",
        {"organization_id": org["id"], "collaboration_id": collab["id"], "name": "solo-node"},
    )

    client = Client(own_server.url, timeout=10).login("root", ROOT_PASSWORD)
    try:
        flags = {name: threading.Event() for name in (RECONNECTED, DISCONNECTED)}
        for name, flag in flags.items():
            client.events.on(name, lambda _, f=flag: f.set())
        assert client.events.connected

        task = client.task.create(collaboration="solo", image="test/probe", method="m")
        outcome: dict[str, Any] = {}

        def waiter() -> None:
            try:
                outcome["task"] = task.wait(
                    timeout=EVENT_WAIT_S * 2, raise_on_failure=False, progress=False
                )
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()

        own_server.stop()
        assert flags[DISCONNECTED].wait(EVENT_WAIT_S)
        own_server.start()
        assert flags[RECONNECTED].wait(EVENT_WAIT_S), client.events.last_error
        assert client.events.connected

        killed = threading.Event()
        client.events.on(
            events.RUN_STATUS,
            lambda ev: (
                killed.set() if ev.get("task_id") == task.id and ev["status"] == "killed" else None
            ),
        )
        task.kill()  # events flow again on the new connection
        assert killed.wait(EVENT_WAIT_S)
        thread.join(EVENT_WAIT_S)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome
        assert outcome["task"] is task and task.done
    finally:
        client.close()
