"""The node's server client retries in one loop, as its retry policy says (no server needed)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from node_app.server_client import UNTIL_STOPPED, RetryPolicy, ServerClient
from vantage6nb.common.errors import NotFound, ServerUnavailable

FAST = RetryPolicy(retries=3, first_delay=0.0, max_delay=0.0)


class Scripted:
    """Answers ``send`` from a script: ``(status, body)`` pairs or exceptions to raise."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, method: str, path: str, *, token: str | None, **kw: Any) -> Any:
        self.calls.append((method, path, token))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(send: Scripted) -> ServerClient:
    client = ServerClient("http://127.0.0.1:9", "key")
    client.send = send  # type: ignore[method-assign]
    return client


def test_a_request_is_retried_while_the_server_is_away() -> None:
    send = Scripted(ServerUnavailable("down"), (503, None), (200, {"ok": 1}))
    assert _client(send).request("GET", "/run", retries=FAST) == {"ok": 1}
    assert len(send.calls) == 3


@pytest.mark.parametrize("retries", [0, 2])
def test_a_request_gives_up_after_its_retries(retries: int) -> None:
    send = Scripted(*[ServerUnavailable("down")] * (retries + 2))
    policy = RetryPolicy(retries=retries, first_delay=0.0, max_delay=0.0)
    with pytest.raises(ServerUnavailable):
        _client(send).request("GET", "/run", retries=policy)
    assert len(send.calls) == retries + 1


def test_an_expired_token_is_refreshed_once() -> None:
    send = Scripted(
        (401, {"msg": "expired"}),
        (200, {"access_token": "new", "node": {"id": 1}}),  # the refresh: a fresh login
        (401, {"msg": "expired"}),
    )
    client = _client(send)
    with pytest.raises(Exception) as caught:
        client.request("GET", "/run", retries=FAST)
    assert getattr(caught.value, "status", None) == 401
    assert [c[1] for c in send.calls] == ["/run", "/token/node", "/run"]
    assert send.calls[-1][2] == "new"  # the retry carries the new token


def test_an_error_answer_is_raised_typed_and_not_retried() -> None:
    send = Scripted((404, {"msg": "no such run"}))
    with pytest.raises(NotFound):
        _client(send).request("GET", "/run/9", retries=FAST)
    assert len(send.calls) == 1


def test_until_stopped_ends_when_the_node_stops() -> None:
    stop = threading.Event()
    client = ServerClient("http://127.0.0.1:9", "key", stop=stop)
    calls = []

    def down() -> None:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        raise ServerUnavailable("down")

    with pytest.raises(ServerUnavailable):
        client.until_ok(down, "testing")
    assert len(calls) == 3
    assert UNTIL_STOPPED.retries is None


def test_put_file_uses_the_same_loop(tmp_path: Path, monkeypatch) -> None:
    file = tmp_path / "blob"
    file.write_bytes(b"x")
    client = ServerClient("http://127.0.0.1:9", "key")
    answers = [ServerUnavailable("down"), (502, None), (200, {"stored": True})]

    def put_once(path: str, f: Path) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(client, "_put_once", put_once)
    assert client.put_file("/run/1/result", file, retries=FAST) == {"stored": True}
    assert answers == []


def test_the_node_client_runs_against_the_app_in_process(tmp_path: Path) -> None:
    from server_app import create_app
    from vantage6nb.demo._setup import AdminSession
    from vantage6nb.testing import FlaskTransport

    url = "http://testserver"
    transport = FlaskTransport(create_app({"data_dir": str(tmp_path), "root_password": "pw-1"}))
    admin = AdminSession(url, "root", "pw-1", transport=transport)
    org = admin.create_organization("Leiden")
    collab = admin.create_collaboration("study", [org["id"]], encrypted=False)
    key = admin.create_node(org["id"], collab["id"], "leiden-node")["api_key"]

    client = ServerClient(url, key, transport=transport)
    assert client.login()["organization_id"] == org["id"]
    assert client.paged("/run", {"node_id": client.node["id"], "status": "open"}) == []
    with pytest.raises(NotFound):
        client.request("GET", "/run/999999", retries=FAST)
    assert transport.sent.count(("GET", f"{url}/api/run/999999")) == 1  # an error: no retry
