"""A real server process on a free loopback port, seeded through its REST API, for client tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT_PASSWORD = "root-Secret-1"
RESEARCHER_PASSWORD = "research-Secret-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m server_app start --config <tmp>/server.yaml``, stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = folder / "server.yaml"
        cfg.write_text(
            f"host: 127.0.0.1\nport: {self.port}\ndata_dir: {folder / 'data'}\n"
            f"root_password: {ROOT_PASSWORD}\nthreads: 16\nlog_level: WARNING\n"
        )
        self.config = cfg
        self.start()

    def start(self) -> None:
        """Start (or start again, on the same port and data folder) and wait until healthy."""
        self.log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server_app", "start", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self._wait_ready()
        except BaseException:  # never leave a half-started server behind
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or busy starting up
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Admin:
    """Seeds organizations, a collaboration, users and nodes through the REST API as root."""

    def __init__(self, url: str) -> None:
        self.url = url + "/api"
        r = requests.post(
            self.url + "/token/user",
            json={"username": "root", "password": ROOT_PASSWORD},
            timeout=10,
        )
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(self.url + path, json=body, headers=self.headers, timeout=10)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r.json()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    try:
        import server_app.cli  # noqa: F401
    except ImportError as exc:  # the server is written concurrently; say so instead of erroring
        pytest.skip(f"server_app is not importable yet: {exc}")
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def network(server: ServerProcess) -> dict[str, Any]:
    """Two organizations in one collaboration, a researcher in the first, a node each (offline)."""
    admin = Admin(server.url)
    leiden = admin.post("/organization", {"name": "Leiden", "domain": "leiden.example"})
    utrecht = admin.post("/organization", {"name": "Utrecht", "domain": "utrecht.example"})
    other = admin.post("/organization", {"name": "Elsewhere"})
    collab = admin.post(
        "/collaboration",
        {"name": "study", "organization_ids": [leiden["id"], utrecht["id"]], "encrypted": False},
    )
    admin.post(
        "/user",
        {
            "username": "researcher",
            "password": RESEARCHER_PASSWORD,
            "organization_id": leiden["id"],
            "email": "r@leiden.example",
        },
    )
    nodes = {
        org["name"]: admin.post(
            "/node",
            {
                "organization_id": org["id"],
                "collaboration_id": collab["id"],
                "name": f"{org['name'].lower()}-node",
            },
        )
        for org in (leiden, utrecht)
    }
    return {
        "url": server.url,
        "orgs": {"Leiden": leiden, "Utrecht": utrecht, "Elsewhere": other},
        "collaboration": collab,
        "nodes": nodes,
    }


@pytest.fixture
def client(network: dict[str, Any]):
    from vantage6nb import Client

    c = Client(network["url"], timeout=10).login("researcher", RESEARCHER_PASSWORD)
    try:
        yield c
    finally:
        c.close()
