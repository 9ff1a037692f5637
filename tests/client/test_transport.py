"""The HTTP layer: every error status and code becomes its typed class; tokens refresh transparently.

Most run against a small scripted HTTP server on loopback (real sockets), which lets a test say
exactly what the server answers, including an expired token mid-session; the last ones give the
client a transport of their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vantage6nb import errors
from vantage6nb.client._http import Transport

from .conftest import free_port


class Scripted(ThreadingHTTPServer):
    """Answers each path from ``routes``: path -> (status, body) or a function(handler) -> that."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Any] = {}
        self.seen: list[tuple[str, str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?")[0]
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        route = self.server.routes.get(path, (404, {"msg": "no route", "code": "not_found"}))
        status, body = route(self) if callable(route) else route
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _logged_in(stub: Scripted) -> Transport:
    t = Transport(stub.url, timeout=5)
    t.access_token, t.refresh_token = "A1", "R1"
    return t


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "validation_error", errors.ValidationError),
        (400, "bad_request", errors.BadRequest),
        (401, "unauthenticated", errors.AuthenticationError),
        (403, "forbidden", errors.PermissionDenied),
        (404, "not_found", errors.NotFound),
        (409, "conflict", errors.Conflict),
        (409, "key_mismatch", errors.KeyMismatch),
        (413, "payload_too_large", errors.PayloadTooLarge),
        (503, "unavailable", errors.ServerUnavailable),
        (418, "no_such_code", errors.V6Error),
    ],
)
def test_error_codes_map_to_classes(stub: Scripted, status: int, code: str, cls: type) -> None:
    stub.routes["/api/thing"] = (
        status,
        {"msg": f"server says {code}", "errors": {"f": "bad"}, "code": code},
    )
    t = Transport(stub.url, timeout=5)
    with pytest.raises(cls) as info:
        t.request("GET", "/thing", auth=False)
    assert type(info.value) is cls
    assert info.value.msg == f"server says {code}"
    assert info.value.errors == {"f": "bad"}


def test_non_json_error_falls_back_on_status(stub: Scripted) -> None:
    stub.routes["/api/thing"] = (404, "<html>nope</html>")
    with pytest.raises(errors.NotFound, match="nope"):
        Transport(stub.url).request("GET", "/thing", auth=False)


def test_connection_refused_says_how_to_start_the_server() -> None:
    t = Transport(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(errors.ServerUnavailable, match="v6nb server start") as info:
        t.request("GET", "/health", auth=False)
    assert "is the server running?" in str(info.value)


def test_not_logged_in_is_an_authentication_error(stub: Scripted) -> None:
    with pytest.raises(errors.AuthenticationError, match="client.login"):
        Transport(stub.url).request("GET", "/organization")
    assert stub.seen == []  # nothing was sent without a token


def test_bad_url_is_rejected() -> None:
    with pytest.raises(errors.V6Error, match="http://"):
        Transport("127.0.0.1:7601")


def test_expired_access_token_is_refreshed_once_and_retried(stub: Scripted) -> None:
    def org(handler: _Handler) -> tuple[int, Any]:
        if handler.headers.get("Authorization") == "Bearer A2":
            return 200, {"data": [{"id": 1, "name": "Leiden"}], "total": 1}
        return 401, {"msg": "Token expired", "code": "token_expired"}

    def refresh(handler: _Handler) -> tuple[int, Any]:
        assert handler.body == {"refresh_token": "R1"}
        return 200, {"access_token": "A2"}

    stub.routes.update({"/api/organization": org, "/api/token/refresh": refresh})
    t = _logged_in(stub)
    assert t.paginate("/organization") == [{"id": 1, "name": "Leiden"}]
    assert t.access_token == "A2"
    assert [s[1].split("?")[0] for s in stub.seen] == [
        "/api/organization",
        "/api/token/refresh",
        "/api/organization",
    ]


def test_failed_refresh_asks_to_log_in_again(stub: Scripted) -> None:
    stub.routes["/api/organization"] = (401, {"msg": "Token expired", "code": "token_expired"})
    stub.routes["/api/token/refresh"] = (
        401,
        {"msg": "Refresh token expired", "code": "token_expired"},
    )
    t = _logged_in(stub)
    with pytest.raises(errors.AuthenticationError, match="log in again"):
        t.request("GET", "/organization")
    assert t.access_token is None


def test_pagination_follows_pages_until_total(stub: Scripted) -> None:
    def page(handler: _Handler) -> tuple[int, Any]:
        query = dict(p.split("=") for p in handler.path.split("?")[1].split("&"))
        n = int(query["page"])
        data = [{"id": i} for i in range((n - 1) * 500, min(n * 500, 1203))]
        return 200, {"data": data, "page": n, "per_page": 500, "total": 1203}

    stub.routes["/api/run"] = page
    items = _logged_in(stub).paginate("/run", {"task_id": 4, "status": None})
    assert [i["id"] for i in items] == list(range(1203))
    assert all("task_id=4" in s[1] and "status" not in s[1] for s in stub.seen)


def test_download_refreshes_an_expired_token_once(stub: Scripted, tmp_path) -> None:
    def result(handler: _Handler) -> tuple[int, Any]:
        if handler.headers.get("Authorization") == "Bearer A2":
            return 200, "the result bytes"
        return 401, {"msg": "Token expired", "code": "token_expired"}

    stub.routes.update(
        {"/api/run/7/result": result, "/api/token/refresh": (200, {"access_token": "A2"})}
    )
    with (tmp_path / "result.bin").open("wb") as fh:
        assert _logged_in(stub).download("/run/7/result", fh) == len("the result bytes")
    assert (tmp_path / "result.bin").read_bytes() == b"the result bytes"
    assert [s[1] for s in stub.seen] == [
        "/api/run/7/result",
        "/api/token/refresh",
        "/api/run/7/result",
    ]


def test_download_that_cannot_connect_says_how_to_start_the_server(tmp_path) -> None:
    t = Transport(f"http://127.0.0.1:{free_port()}", timeout=5)
    t.access_token = "A1"
    with (tmp_path / "x").open("wb") as fh:
        with pytest.raises(errors.ServerUnavailable, match="Cannot download /run/1/result"):
            t.download("/run/1/result", fh)


class _Refusing:
    """A transport that is not requests: its failures are plain OSErrors."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc
        self.urls: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.urls.append(url)
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "message"),
    [(ConnectionRefusedError(), "v6nb server start"), (TimeoutError(), "did not answer within")],
)
def test_a_given_transport_sends_and_its_failures_are_typed(exc: OSError, message: str) -> None:
    from vantage6nb import Client

    transport = _Refusing(exc)
    client = Client("http://server.example:7601/", transport=transport)
    with client, pytest.raises(errors.ServerUnavailable, match=message):
        client.login("researcher", "pw")
    assert transport.urls == ["http://server.example:7601/api/token/user"]
