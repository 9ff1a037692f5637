"""A real server process on a free loopback port (``tests.support``), seeded through its REST API,
for client tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ServerProcess
from tests.support import free_port as free_port  # test_transport.py imports it from here

ROOT_PASSWORD = "root-Secret-1"
RESEARCHER_PASSWORD = "research-Secret-1"


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


def client_server(folder: Path) -> ServerProcess:
    """A server process (not started yet) whose root password is ``ROOT_PASSWORD``."""
    return ServerProcess(folder, {"root_password": ROOT_PASSWORD})


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    with client_server(tmp_path_factory.mktemp("server")) as proc:
        yield proc


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
