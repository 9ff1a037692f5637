"""Two server instances behind HAProxy, sharing PostgreSQL and RabbitMQ: one is killed in the middle
of a task, and every run still completes, the nodes reconnect through the balancer and the
researcher's wait() returns."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import vantage6nb as v6
from tests.node.harness import probe_node
from tests.support import (
    AMQP_URL,
    PG_URL,
    ServerProcess,
    free_port,
    fresh_database,
    require_postgres,
    require_rabbitmq,
    unavailable,
    wait_for,
)
from tests.support.processes import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT_PW = "lb-root-password"
WAIT_S = 120  # hang guards, not speed assertions


class Balancer:
    """``haproxy -db`` with the configuration ``v6nb server haproxy-config`` writes."""

    def __init__(self, folder: Path, instances: list[ServerProcess]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "haproxy.cfg"
        self.log = folder / "haproxy.log"
        cmd = [
            sys.executable,
            "-m",
            "server_app",
            "haproxy-config",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--check-interval-ms",
            "500",
            *[f"127.0.0.1:{s.port}" for s in instances],
        ]
        text = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
        self.config.write_text(text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        haproxy = shutil.which("haproxy")
        assert haproxy is not None
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [haproxy, "-f", str(self.config), "-db"], stdout=out, stderr=subprocess.STDOUT
            )

    def check(self) -> None:
        """Fail with HAProxy's log when it exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited: {self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start_all(servers: list[ServerProcess]) -> None:
    failures: list[BaseException] = []

    def start(srv: ServerProcess) -> None:
        try:
            srv.start()
        except BaseException as exc:  # pytest.fail raises outside Exception
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Instances a and b, HAProxy in front, and two process-runtime nodes connected through it."""
    if shutil.which("haproxy") is None:
        unavailable("HAProxy is not installed: run `sudo bash scripts/setup-haproxy.sh`")
    require_postgres()
    require_rabbitmq()
    folder = tmp_path_factory.mktemp("lb")
    with fresh_database(PG_URL) as url:
        shared = {
            "database_url": url,
            "root_password": ROOT_PW,
            "message_queue_url": AMQP_URL,
            "message_queue_channel": f"v6nb-lb-{uuid.uuid4().hex[:8]}",
            "secret_key": uuid.uuid4().hex,
            "worker_class": "gevent",
            # the balancer's address: the instances bound and count each client, not it
            # (tests/integration/test_forwarded_behind_haproxy.py shows the rules)
            "trusted_proxies": ["127.0.0.1"],
            "node_offline_s": 4,
            "log_level": "INFO",  # each instance logs the node sockets it accepts (see below)
        }
        servers = [ServerProcess(folder, shared, name=n) for n in ("a", "b")]
        lb = Balancer(folder, servers)
        nodes: list[Any] = []
        try:
            _start_all(servers)
            lb.start()
            wait_for(
                lambda: _ok(lb.url + "/api/health"),
                WAIT_S,
                "the balancer to pass a health check",
                check=lb.check,
            )
            root = servers[0].login("root", ROOT_PW)
            api = servers[0]
            orgs = [
                api.ok("POST", "/api/organization", root, json={"name": f"lb-{i}"})["id"]
                for i in range(2)
            ]
            collab = api.ok(
                "POST",
                "/api/collaboration",
                root,
                json={"name": "lb", "organization_ids": orgs, "encrypted": False},
            )["id"]
            for i, org in enumerate(orgs):
                node = api.ok(
                    "POST",
                    "/api/node",
                    root,
                    json={"organization_id": org, "collaboration_id": collab},
                )
                proc = probe_node(folder, f"lb-node-{i}", lb.url, node["api_key"])
                proc.start()
                nodes.append(proc)
            yield {"servers": servers, "lb": lb, "nodes": nodes, "orgs": orgs, "collab": collab}
        finally:
            for proc in nodes:
                proc.stop()
            lb.stop()
            for srv in servers:
                srv.stop()


# an instance's log line for a node socket it accepted: "<date> <time> INFO server_app.sockets: node 3 (n) online"
_ONLINE = re.compile(r"^(\S+ \S+) \w+ server_app\.sockets: node (\d+) \(.*\) online$", re.M)


def _instance_holding_a_node(servers: list[Any]) -> Any:
    """An instance on which some node's latest socket connection is (by the instances' logs)."""
    latest: dict[str, tuple[str, int]] = {}  # node id -> (time of its last "online", instance)
    for i, srv in enumerate(servers):
        for when, node_id in _ONLINE.findall(srv.output()):
            if node_id not in latest or when > latest[node_id][0]:
                latest[node_id] = (when, i)
    holders = sorted({i for _, i in latest.values()})
    assert holders, "no instance logged a node's socket connection"
    return servers[holders[0]]


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_requests_reach_both_instances_through_the_balancer(deployment):
    lb = deployment["lb"]
    seen = set()
    for _ in range(8):
        r = requests.get(lb.url + "/api/health", timeout=10)
        assert r.status_code == 200
        seen.add(r.cookies.get("V6NB_INSTANCE"))
    assert seen == {"s1", "s2"}  # round robin; the cookie names the instance


def test_killing_an_instance_mid_task_loses_no_run(deployment):
    lb, servers, nodes = deployment["lb"], deployment["servers"], deployment["nodes"]
    client = v6.Client(lb.url, state_dir=False).login("root", ROOT_PW)
    orgs = deployment["orgs"]
    tasks = [
        client.task.create(
            collaboration=deployment["collab"],
            organizations=orgs,
            image="test/probe",
            method="sleep",
            kwargs={"seconds": 5},
            databases=[],
        )
        for _ in range(3)
    ]
    # every node has started a run: the task is in the middle
    wait_for(
        lambda: sum("started on the process runtime" in n.output() for n in nodes) == len(nodes),
        WAIT_S,
        "both nodes to run the algorithm",
    )
    before = [n.output().count("connected to") for n in nodes]
    # the balancer may have put both nodes' sockets on one instance: kill one that holds a node
    victim = _instance_holding_a_node(servers)
    victim.stop(signal.SIGKILL)
    results = [t.results(timeout=WAIT_S) for t in tasks]  # wait() returns through instance b
    assert results == [[{"slept": 5}, {"slept": 5}]] * len(tasks)
    # the nodes that were on the killed instance reconnected through the balancer
    wait_for(
        lambda: all(
            n.output().count("connected to") > b or n.output().count("lost") == 0
            for n, b in zip(nodes, before, strict=True)
        ),
        WAIT_S,
        "the nodes of the killed instance to reconnect",
    )
    assert any(n.output().count("lost") for n in nodes), "no node was on the killed instance"
    # and a new task after the kill completes too
    again = client.task.create(
        collaboration=deployment["collab"],
        organizations=orgs,
        image="test/probe",
        method="echo",
        kwargs={"x": 1},
        databases=[],
    )
    assert len(again.results(timeout=WAIT_S)) == len(orgs)
    # the killed instance comes back and takes traffic again
    victim.start()
    wait_for(
        lambda: (
            {
                requests.get(lb.url + "/api/health", timeout=10).cookies.get("V6NB_INSTANCE")
                for _ in range(4)
            }
            == {"s1", "s2"}
        ),
        WAIT_S,
        "the restarted instance to be back behind the balancer",
    )
