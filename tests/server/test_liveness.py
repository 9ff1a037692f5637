"""Liveness: a node that stops answering is marked offline (node_offline_s), researchers get the
event, and its reconnect is logged as routine (INFO), not as an error."""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.node.harness import probe_node
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.integration

ROOT_PW = "liveness-root-password"
OFFLINE_S = 4.0
WAIT_S = 60  # a hang guard; how fast it happens is measured in benchmarks/liveness.py


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, Any]]:
    srv = ServerProcess(
        tmp_path,
        {"root_password": ROOT_PW, "node_offline_s": OFFLINE_S, "worker_class": "gevent"},
    )
    with srv:
        root = srv.login("root", ROOT_PW)
        org = srv.ok("POST", "/api/organization", root, json={"name": "live"})["id"]
        collab = srv.ok(
            "POST", "/api/collaboration", root, json={"name": "live", "organization_ids": [org]}
        )["id"]
        node = srv.ok(
            "POST", "/api/node", root, json={"organization_id": org, "collaboration_id": collab}
        )
        proc = probe_node(tmp_path, "live-node", srv.url, node["api_key"])
        with proc:
            yield {"server": srv, "root": root, "node": node, "proc": proc}


def _status(net: dict[str, Any]) -> str:
    srv = net["server"]
    return str(srv.ok("GET", f"/api/node/{net['node']['id']}", net["root"])["status"])


def test_a_stopped_node_goes_offline_and_its_reconnect_is_routine(network):
    srv, proc = network["server"], network["proc"]
    wait_for(lambda: _status(network) == "online", WAIT_S, "the node to be online")
    seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    researcher = socketio.Client(reconnection=False)
    for name in ("node_offline", "node_online"):
        researcher.on(name, lambda data, name=name: seen.put((name, data)))
    researcher.connect(
        srv.url, auth={"token": network["root"]}, transports=["websocket"], wait_timeout=20
    )
    assert proc.proc is not None
    try:
        stopped = time.monotonic()
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            name, data = seen.get(timeout=WAIT_S)
            offline_after = time.monotonic() - stopped
            assert name == "node_offline" and data["node_id"] == network["node"]["id"]
            assert _status(network) == "offline"
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        name, data = seen.get(timeout=WAIT_S)
        assert name == "node_online" and data["node_id"] == network["node"]["id"]
        wait_for(lambda: _status(network) == "online", WAIT_S, "the node to be online again")
        print(f"offline {offline_after:.1f} s after SIGSTOP (node_offline_s={OFFLINE_S})")
    finally:
        researcher.disconnect()
    wait_for(
        lambda: proc.output().count("connected to") >= 2, WAIT_S, "the node to say it reconnected"
    )
    lines = proc.output().splitlines()
    assert any("lost" in line and "INFO" in line for line in lines), proc.output()[-3000:]
    assert not [line for line in lines if " ERROR " in line or "aborting" in line], lines


def test_node_offline_s_sets_the_ping(tmp_path: Path):
    from server_app import create_app

    app = create_app({"data_dir": str(tmp_path), "root_password": ROOT_PW, "node_offline_s": 10})
    sio = app.extensions["v6nb"].hub.sio
    # a ping, its timeout, and one sweep of engine.io's service task fit in node_offline_s
    assert sio.eio.ping_interval + 2 * sio.eio.ping_timeout <= 10
