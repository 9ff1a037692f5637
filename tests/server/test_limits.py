"""The limits that protect a server (gevent worker): idle websockets and half-open connections cost
no capacity, slow heads and bodies are cut off, one address holds a bounded number of
connections, and bodies are bounded before and while they are read."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio

from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.integration

ROOT_PW = "limits-root-password"
PER_ADDRESS = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("limits"),
        {
            "root_password": ROOT_PW,
            "worker_class": "gevent",
            "threads": 4,  # what a gthread worker would have: the gevent one must not care
            "header_timeout_s": 1.0,
            "body_timeout_s": 1.0,
            "max_connections_per_address": PER_ADDRESS,
            "max_body_mb": 1,
            "max_unauthenticated_body_kb": 16,
        },
    )
    with srv:
        yield srv


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return server.login("root", ROOT_PW)


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def _response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:  # closed with our unread bytes in its buffer: TCP resets
        pass
    return out


def test_idle_websockets_and_half_open_connections_leave_the_server_answering(server, token):
    # 4 gthread threads would be held by the first 4 of these; greenlets cost no capacity
    clients = []
    half_open = []
    try:
        for _ in range(20):
            c = socketio.Client(reconnection=False)
            c.connect(server.url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
            clients.append(c)
        for _ in range(100):
            s = _connect(server)
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            half_open.append(s)
        assert server.get("/api/health").json()["status"] == "ok"
        assert server.get("/api/user", token).status_code == 200
    finally:
        for c in clients:
            c.disconnect()
        for s in half_open:
            s.close()


def test_a_request_head_that_does_not_complete_is_closed_without_an_answer(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        assert _response(sock) == b""  # closed after header_timeout_s


def test_an_idle_new_connection_is_closed(server):
    with _connect(server) as sock:
        assert _response(sock) == b""


def test_a_body_that_stops_arriving_is_answered_408(server):
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"username": '
        )
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_timeout_s" in answer


def test_a_large_unauthenticated_body_is_refused_before_it_is_read(server):
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n"  # 200 MiB announced; none of it sent
        )
        answer = _response(sock)  # answered, and closed rather than drained
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"max_unauthenticated_body_kb" in answer


def test_a_chunked_unauthenticated_body_is_cut_off_at_the_limit(server):
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 8192
        try:
            for _ in range(64):  # 512 KiB offered; the limit is 16 KiB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what we want
        answer = _response(sock)
    # the 413, unless the reset (the server closed with our unsent rest unread) overtook it
    assert answer.startswith(b"HTTP/1.1 413") or answer == b"", answer[:200]


def test_an_authenticated_body_over_max_body_mb_is_refused_on_its_length(server, token):
    with _connect(server) as sock:
        sock.sendall(
            b"POST /api/task HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"max_body_mb" in answer


def test_connections_per_address_are_bounded(server):
    held = []
    try:
        # idle keep-alive connections that completed one request each
        for _ in range(PER_ADDRESS):
            s = _connect(server)
            s.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(s)
        with _connect(server) as extra:
            answer = _response(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"max_connections_per_address" in answer
    finally:
        for s in held:
            s.close()
    # once they are closed, the address is served again
    wait_for(
        lambda: server.get("/api/health").status_code == 200,
        30,
        "the server to serve this address again",
    )


def test_limits_are_declared_settings(tmp_path: Path):
    from server_app.config import load_config
    from vantage6nb.common.errors import ConfigurationError

    for key, bad in (
        ("worker_class", "eventlet"),
        ("header_timeout_s", 0),
        ("max_connections_per_address", -1),
        ("node_offline_s", 1),
    ):
        with pytest.raises(ConfigurationError) as err:
            load_config(None, environ={}, overrides={"data_dir": str(tmp_path), key: bad})
        assert key in err.value.errors
