"""Tokens: user and node login, refresh, expiry, container tokens, and the socket-free checks."""

from __future__ import annotations

import pytest

from server_app.tokens import TokenService
from tests.server.conftest import ROOT_PASSWORD, Network
from tests.support import bearer


def test_root_login_and_me(client, root):
    r = client.get("/api/user/me", headers=root)
    assert r.status_code == 200
    assert r.json["username"] == "root" and r.json["is_admin"] is True
    assert r.json["organization_name"] == "root"


@pytest.mark.parametrize(
    "body",
    [{"username": "root", "password": "wrong"}, {"username": "nobody", "password": ROOT_PASSWORD}],
)
def test_wrong_credentials_401(client, body):
    r = client.post("/api/token/user", json=body)
    assert r.status_code == 401
    assert r.json["code"] == "unauthenticated"


def test_node_login_wrong_key(client):
    r = client.post("/api/token/node", json={"api_key": "not-a-key"})
    assert r.status_code == 401 and "api_key" in r.json["msg"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer garbage", "Basic abc", "Bearer a.b.c"])
def test_bad_access_tokens_401(client, header):
    headers = {"Authorization": header} if header else {}
    r = client.get("/api/organization", headers=headers)
    assert r.status_code == 401
    assert set(r.json) == {"msg", "errors", "code"}


def test_refresh_gives_working_access_token(client):
    r = client.post("/api/token/user", json={"username": "root", "password": ROOT_PASSWORD})
    refresh = r.json["refresh_token"]
    r2 = client.post("/api/token/refresh", json={"refresh_token": refresh})
    assert r2.status_code == 200
    assert (
        client.get("/api/organization", headers=bearer(r2.json["access_token"])).status_code == 200
    )
    # an access token is not a refresh token, and the reverse
    assert (
        client.post(
            "/api/token/refresh", json={"refresh_token": r.json["access_token"]}
        ).status_code
        == 401
    )
    assert client.get("/api/organization", headers=bearer(refresh)).status_code == 401


def test_expired_token(app, client):
    tokens: TokenService = app.extensions["v6nb"].tokens
    expired = tokens.issue(
        {"sub": 1, "type": "user", "org": 1, "admin": True}, kind="access", lifetime=-5
    )
    r = client.get("/api/organization", headers=bearer(expired))
    assert r.status_code == 401 and r.json["code"] == "token_expired"
    assert "refresh" in r.json["msg"]


def test_token_from_other_secret_rejected(client):
    forged = TokenService("another-secret", access_minutes=5, refresh_hours=1).issue(
        {"sub": 1, "type": "user", "org": 1, "admin": True}, kind="access"
    )
    assert client.get("/api/organization", headers=bearer(forged)).status_code == 401


def test_tokens_survive_restart(tmp_path):
    from server_app import create_app

    cfg = {"data_dir": str(tmp_path / "d"), "root_password": ROOT_PASSWORD}
    c1 = create_app(cfg).test_client()
    tok = c1.post("/api/token/user", json={"username": "root", "password": ROOT_PASSWORD}).json[
        "access_token"
    ]
    c2 = create_app(cfg).test_client()
    assert c2.get("/api/organization", headers=bearer(tok)).status_code == 200


def test_generated_root_password_file(tmp_path):
    import stat

    from server_app import create_app

    data = tmp_path / "d"
    client = create_app({"data_dir": str(data)}).test_client()
    pw_file = data / "root_password.txt"
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600
    r = client.post(
        "/api/token/user", json={"username": "root", "password": pw_file.read_text().strip()}
    )
    assert r.status_code == 200


def test_node_token_and_container_token(server_net: Network):
    c = server_net.client
    task = server_net.task("alice", "ab", ["a", "b"])
    node_a = server_net.nodes["a@ab"]
    run_a = next(r for r in task["runs"] if r["organization_id"] == server_net.orgs["a"])
    run_b = next(r for r in task["runs"] if r["organization_id"] == server_net.orgs["b"])
    r = c.post("/api/token/container", json={"run_id": run_a["id"]}, headers=node_a["headers"])
    assert r.status_code == 200
    # not this node's run
    assert (
        c.post(
            "/api/token/container", json={"run_id": run_b["id"]}, headers=node_a["headers"]
        ).status_code
        == 403
    )
    # users cannot get container tokens
    assert (
        c.post(
            "/api/token/container", json={"run_id": run_a["id"]}, headers=server_net.users["alice"]
        ).status_code
        == 403
    )
    # finished runs get none
    c.patch(
        f"/api/run/{run_a['id']}",
        json={"status": "completed", "result": "{}"},
        headers=node_a["headers"],
    )
    r = c.post("/api/token/container", json={"run_id": run_a["id"]}, headers=node_a["headers"])
    assert r.status_code == 409


def test_refresh_of_deleted_user(server_net: Network):
    c = server_net.client
    r = c.post("/api/token/user", json={"username": "carol", "password": "carol-password"})
    assert (
        c.delete(f"/api/user/{server_net.user_ids['carol']}", headers=server_net.root).status_code
        == 200
    )
    assert (
        c.post("/api/token/refresh", json={"refresh_token": r.json["refresh_token"]}).status_code
        == 401
    )
