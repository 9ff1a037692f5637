"""No spurious retries: a kept-alive connection the server closed is no outage, a real one still is.

A small HTTP/1.1 server on loopback plays the server's side of the race: it answers the first
request of each connection and keeps it alive, then closes the connection without an answer when
the next request arrives on it (what gunicorn does to a keep-alive connection whose timeout ends
as a request comes in).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_app.server_client import RetryPolicy, ServerClient, node_transport
from vantage6nb.common.errors import ServerUnavailable
from vantage6nb.common.rest import PooledTransport
from vantage6nb.demo import free_port

FAST = RetryPolicy(retries=2, first_delay=0.0, max_delay=0.0)
_BODY = b'{"ok": 1}'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class ClosingServer:
    """Answers one request per connection, then closes it when the next request arrives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.closed_unanswered = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for answered in (True, False):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                if not answered:
                    self.closed_unanswered += 1
                    return  # closed without an answer, as a keep-alive timeout does
                conn.sendall(_ANSWER)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); the port refuses from now
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def closing_server() -> Iterator[ClosingServer]:
    server = ClosingServer()
    yield server
    server.close()


def _request(client: ServerClient) -> object:
    return client.request("GET", "/run", retries=FAST)


def test_a_connection_the_server_closed_is_sent_again_without_a_warning(
    closing_server: ClosingServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = ServerClient(closing_server.url, "key")
    with caplog.at_level(logging.DEBUG, logger="node_app"):
        assert [_request(client) for _ in range(3)] == [{"ok": 1}] * 3
    assert closing_server.closed_unanswered == 2  # the race happened, twice
    assert closing_server.connections == 3  # and each time one new connection answered
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert "had closed an idle connection" in caplog.text  # said at debug level only


def test_without_the_reconnect_the_race_looks_like_an_outage(
    closing_server: ClosingServer, caplog: pytest.LogCaptureFixture
) -> None:
    # the same transport without its reconnect: what the node logged under load
    import requests

    session = requests.Session()
    session.trust_env = False
    client = ServerClient(closing_server.url, "key", transport=session)
    with caplog.at_level(logging.WARNING, logger="node_app"):
        assert [_request(client) for _ in range(2)] == [{"ok": 1}] * 2
    assert "unreachable: ConnectionError; retrying GET /run" in caplog.text


def test_idle_connections_are_dropped_before_they_are_reused(
    closing_server: ClosingServer,
) -> None:
    client = ServerClient(closing_server.url, "key", transport=PooledTransport(_session, idle_s=0))
    assert [_request(client) for _ in range(3)] == [{"ok": 1}] * 3
    assert closing_server.connections == 3
    assert closing_server.closed_unanswered == 0  # never sent on a connection idle too long


def _session():  # type: ignore[no-untyped-def]
    import requests

    s = requests.Session()
    s.trust_env = False
    return s


def test_a_server_that_is_down_is_retried_and_warned_about(
    closing_server: ClosingServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = ServerClient(closing_server.url, "key", transport=node_transport())
    assert _request(client) == {"ok": 1}  # a pooled connection now
    closing_server.close()  # the server goes away: its port refuses
    with caplog.at_level(logging.WARNING, logger="node_app"), pytest.raises(ServerUnavailable):
        _request(client)
    assert caplog.text.count("unreachable: ConnectionError; retrying GET /run") == 2


def test_a_streamed_body_is_sent_whole_on_the_new_connection(
    closing_server: ClosingServer, tmp_path: Path
) -> None:
    body = tmp_path / "result.bin"
    body.write_bytes(b"x" * 100_000)
    client = ServerClient(closing_server.url, "key")
    assert _request(client) == {"ok": 1}
    assert client.put_file("/run/1/result", body, retries=FAST) == {"ok": 1}
    assert closing_server.closed_unanswered == 1


def test_nothing_listens_is_no_stale_connection(caplog: pytest.LogCaptureFixture) -> None:
    client = ServerClient(f"http://127.0.0.1:{free_port()}", "key")
    with caplog.at_level(logging.WARNING, logger="node_app"), pytest.raises(ServerUnavailable):
        _request(client)
    assert caplog.text.count("unreachable") == 2
