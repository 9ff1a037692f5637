"""Fixtures for server tests: an in-process app on a temporary data folder and a small
two-collaboration network on it (``server_net``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server_app import create_app
from tests.support import bearer

ROOT_PASSWORD = "root-password-for-tests"


@pytest.fixture
def app(tmp_path: Any) -> Flask:
    return create_app(
        {"data_dir": str(tmp_path / "data"), "root_password": ROOT_PASSWORD, "max_body_mb": 1}
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def root(client: FlaskClient) -> dict[str, str]:
    r = client.post("/api/token/user", json={"username": "root", "password": ROOT_PASSWORD})
    assert r.status_code == 200, r.json
    return bearer(r.json["access_token"])


@dataclass
class Network:
    """orgs a, b, c; collaboration ab (a, b) and bc (b, c); users alice@a, bob@b, carol@c; one node per membership."""

    client: FlaskClient
    root: dict[str, str]
    orgs: dict[str, int] = field(default_factory=dict)
    collabs: dict[str, int] = field(default_factory=dict)
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # "a@ab" -> {id, api_key, headers}

    def login(self, username: str, password: str) -> dict[str, str]:
        r = self.client.post("/api/token/user", json={"username": username, "password": password})
        assert r.status_code == 200, r.json
        return bearer(r.json["access_token"])

    def task(self, who: str, collab: str, orgs: list[str], **extra: Any) -> dict[str, Any]:
        body = {
            "collaboration_id": self.collabs[collab],
            "organizations": [{"id": self.orgs[o], "input": '{"method": "m"}'} for o in orgs],
            "image": "img:1",
            "method": "m",
            **extra,
        }
        r = self.client.post("/api/task", json=body, headers=self.users[who])
        assert r.status_code == 201, r.json
        return r.json


@pytest.fixture
def server_net(client: FlaskClient, root: dict[str, str]) -> Network:
    """The :class:`Network` of organizations, collaborations, users and nodes on the in-process app."""
    n = Network(client, root)
    for name in "abc":
        r = client.post("/api/organization", json={"name": name}, headers=root)
        assert r.status_code == 201, r.json
        n.orgs[name] = r.json["id"]
    for name, members in (("ab", "ab"), ("bc", "bc")):
        r = client.post(
            "/api/collaboration",
            json={
                "name": name,
                "organization_ids": [n.orgs[m] for m in members],
                "encrypted": False,
            },
            headers=root,
        )
        assert r.status_code == 201, r.json
        n.collabs[name] = r.json["id"]
        for m in members:
            r = client.post(
                "/api/node",
                json={"organization_id": n.orgs[m], "collaboration_id": n.collabs[name]},
                headers=root,
            )
            assert r.status_code == 201, r.json
            key = r.json["api_key"]
            t = client.post("/api/token/node", json={"api_key": key})
            assert t.status_code == 200, t.json
            n.nodes[f"{m}@{name}"] = {
                "id": r.json["id"],
                "api_key": key,
                "headers": bearer(t.json["access_token"]),
            }
    for user, org in (("alice", "a"), ("bob", "b"), ("carol", "c")):
        r = client.post(
            "/api/user",
            json={"username": user, "password": f"{user}-password", "organization_id": n.orgs[org]},
            headers=root,
        )
        assert r.status_code == 201, r.json
        n.user_ids[user] = r.json["id"]
        n.users[user] = n.login(user, f"{user}-password")
    return n
