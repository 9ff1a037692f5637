"""The algorithm proxy's own behaviour: authentication, input shapes, errors (no server needed)."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
import requests

from node_app.payloads import PlainJsonCodec, decode_algorithm_input
from node_app.proxy import AlgorithmProxy, RunContext
from node_app.server_client import ServerClient
from tests.support import free_port


@pytest.fixture
def proxy():
    # a server URL where nothing listens: forwarding fails as "unavailable", never as a crash
    client = ServerClient(f"http://127.0.0.1:{free_port()}", "key", timeout=2)
    p = AlgorithmProxy(client)
    p.start()
    p.register(
        "good-token",
        RunContext(run_id=1, task_id=2, collaboration_id=3, organization_id=4, image="v6nb/x"),
    )
    yield p
    p.stop()


def call(proxy: AlgorithmProxy, method: str, path: str, token: str | None = "good-token", **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    s = requests.Session()
    s.trust_env = False
    return s.request(
        method, f"http://127.0.0.1:{proxy.port}{path}", headers=headers, timeout=10, **kw
    )


@pytest.mark.parametrize("token", [None, "forged", ""])
def test_unknown_token_is_refused(proxy, token) -> None:
    resp = call(proxy, "GET", "/organization", token=token)
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthenticated"


def test_unregistered_token_no_longer_works(proxy) -> None:
    proxy.unregister("good-token")
    assert call(proxy, "GET", "/organization").status_code == 401


def test_bad_json_is_400(proxy) -> None:
    resp = requests.post(
        f"http://127.0.0.1:{proxy.port}/task",
        data=b"{not json",
        headers={"Authorization": "Bearer good-token", "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400 and "JSON" in resp.json()["msg"]


def test_deeply_nested_json_is_400(proxy: AlgorithmProxy) -> None:
    """JSON nested deeper than the decoder's limit is a 400, not a dropped connection."""
    s = requests.Session()
    s.trust_env = False
    resp = s.post(
        f"http://127.0.0.1:{proxy.port}/task",
        data=b"[" * 100_000 + b"]" * 100_000,
        headers={"Authorization": "Bearer good-token", "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "bad_request"
    # the proxy still answers afterwards
    assert s.get(f"http://127.0.0.1:{proxy.port}/nowhere", timeout=10).status_code in (401, 404)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"organizations": []},
        {"organizations": [{"id": "1", "input": {"method": "m"}}]},
        {"organizations": [{"id": 1, "input": "%%% not base64 or json"}]},
        {"organizations": [{"id": 1, "input": [1, 2]}]},
    ],
)
def test_bad_task_bodies_are_400(proxy, body) -> None:
    resp = call(proxy, "POST", "/task", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["msg"]


def test_server_down_is_503_not_a_crash(proxy) -> None:
    resp = call(proxy, "POST", "/task", json={"organization_ids": [1], "input": {"method": "m"}})
    assert resp.status_code == 503
    assert "try again" in resp.json()["msg"]


def test_unknown_route_is_404(proxy) -> None:
    resp = call(proxy, "DELETE", "/user/1")
    assert resp.status_code == 404 and "docs/api.md" in resp.json()["msg"]


def test_unix_socket(proxy, tmp_path: Path) -> None:
    path = proxy.serve_unix(tmp_path / "p.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b"GET /organization HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401")


def test_input_shapes() -> None:
    obj = {"method": "m", "kwargs": {"a": 1}}
    assert decode_algorithm_input(obj) == (obj, False)
    assert decode_algorithm_input(json.dumps(obj)) == (obj, False)
    assert decode_algorithm_input(base64.b64encode(json.dumps(obj).encode()).decode()) == (
        obj,
        True,
    )
    with pytest.raises(ValueError):
        decode_algorithm_input("$$$")


def test_plain_codec_round_trip() -> None:
    codec = PlainJsonCodec()
    assert codec.decode_result(1, codec.encode_input(1, {"a": [1, 2.5]}, {}), {}) == {"a": [1, 2.5]}
    assert codec.decode_input('{"method": "m"}', {}) == b'{"method": "m"}'
