"""QA regressions: deeply nested JSON, self-demotion of an administrator, a port already in use."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from flask.testing import FlaskClient

from server_app import cli
from tests.server.conftest import Network

DEEP = b'{"a":' * 5000 + b"1" + b"}" * 5000  # deeper than the JSON decoder's recursion limit


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/token/user"),
        ("POST", "/api/organization"),
        ("POST", "/api/task"),
        ("PATCH", "/api/user/1"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(
    client: FlaskClient, root: dict[str, str], method: str, path: str
) -> None:
    r = client.open(
        path, method=method, data=DEEP, headers={**root, "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.json
    assert r.json["code"] == "bad_request"
    assert "nested too deeply" in r.json["msg"]


def test_an_administrator_cannot_remove_their_own_admin_rights(net: Network) -> None:
    me = net.client.get("/api/user/me", headers=net.root).json
    r = net.client.patch(f"/api/user/{me['id']}", json={"is_admin": False}, headers=net.root)
    assert r.status_code == 409, r.json
    assert "another administrator" in r.json["msg"]
    assert net.client.get("/api/user/me", headers=net.root).json["is_admin"] is True
    # another administrator may still do it, and re-granting oneself is harmless
    r = net.client.patch(f"/api/user/{me['id']}", json={"is_admin": True}, headers=net.root)
    assert r.status_code == 200, r.json
    alice = net.user_ids["alice"]
    r = net.client.patch(f"/api/user/{alice}", json={"is_admin": True}, headers=net.root)
    assert r.status_code == 200
    r = net.client.patch(f"/api/user/{alice}", json={"is_admin": False}, headers=net.root)
    assert r.status_code == 200 and r.json["is_admin"] is False


def test_server_start_on_a_port_in_use_says_so(tmp_path: Any, capsys: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["start", "--port", str(port), "--data-dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "in use" in err and "--port" in err
