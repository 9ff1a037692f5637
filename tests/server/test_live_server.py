"""The real server process (gunicorn) on loopback: HTTP login, socket.io over websocket, live events, SIGTERM."""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.integration

ROOT_PW = "live-root-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path, {"root_password": ROOT_PW}) as srv:
        yield srv


def _post(url: str, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(url + path, json=body, headers=headers, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_events_over_websocket(server: ServerProcess):
    url = server.url
    root = _post(url, "/api/token/user", {"username": "root", "password": ROOT_PW})["access_token"]
    org = _post(url, "/api/organization", {"name": "org1"}, root)
    col = _post(url, "/api/collaboration", {"name": "c1", "organization_ids": [org["id"]]}, root)
    node = _post(
        url, "/api/node", {"organization_id": org["id"], "collaboration_id": col["id"]}, root
    )
    node_token = _post(url, "/api/token/node", {"api_key": node["api_key"]})["access_token"]

    user_events: queue.Queue[tuple[str, Any]] = queue.Queue()
    node_events: queue.Queue[tuple[str, Any]] = queue.Queue()
    user_sio, node_sio = socketio.Client(), socketio.Client()
    for name in ("run_status", "node_online", "task_created"):
        user_sio.on(name, lambda data, name=name: user_events.put((name, data)))
    node_sio.on("new_task", lambda data: node_events.put(("new_task", data)))
    node_sio.on("kill", lambda data: node_events.put(("kill", data)))

    # a bad token is refused
    bad = socketio.Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        bad.connect(url, auth={"token": "nonsense"}, transports=["websocket"], wait_timeout=20)

    user_sio.connect(url, auth={"token": root}, transports=["websocket"], wait_timeout=20)
    try:
        assert user_sio.transport() == "websocket"
        node_sio.connect(url, auth={"token": node_token}, transports=["websocket"], wait_timeout=20)
        name, data = user_events.get(timeout=20)
        assert (name, data["node_id"], data["status"]) == ("node_online", node["id"], "online")
        wait_for(
            lambda: server.ok("GET", f"/api/node/{node['id']}", root)["status"] == "online",
            30,
            "the node to be online",
        )

        task = _post(
            url,
            "/api/task",
            {
                "collaboration_id": col["id"],
                "organizations": [{"id": org["id"], "input": "{}"}],
                "image": "i",
                "method": "m",
            },
            root,
        )
        name, data = node_events.get(timeout=20)
        assert (
            name == "new_task"
            and data["task_id"] == task["id"]
            and data["run_ids"] == [task["runs"][0]["id"]]
        )
        name, data = user_events.get(timeout=20)
        assert name == "task_created" and data["task_id"] == task["id"]

        r = requests.patch(
            f"{url}/api/run/{task['runs'][0]['id']}",
            json={"status": "active"},
            headers={"Authorization": f"Bearer {node_token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        name, data = user_events.get(timeout=20)
        assert name == "run_status" and data["status"] == "active" and data["node_id"] == node["id"]

        requests.post(
            f"{url}/api/task/{task['id']}/kill",
            headers={"Authorization": f"Bearer {root}"},
            timeout=30,
        )
        name, data = node_events.get(timeout=20)
        assert name == "kill" and data["run_ids"] == [task["runs"][0]["id"]]
        name, data = user_events.get(timeout=20)
        assert (
            name == "run_status"
            and data["status"] == "killed"
            and data["reason"] == "killed by root"
        )
    finally:
        node_sio.disconnect()
        user_sio.disconnect()
    assert server.stop(signal.SIGTERM) == 0
