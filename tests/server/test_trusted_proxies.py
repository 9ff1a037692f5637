"""Trusted proxies: which X-Forwarded-For address is the client's, and a real server that uses it
for the login limit, the audit log and the per-address connection bound, and ignores it from
any other peer."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from server_app.config import load_config
from server_app.serving import TrustedProxies
from tests.support import ServerProcess, wait_for
from vantage6nb.common.errors import ConfigurationError

ROOT_PW = "proxies-root-password"
RATE = 3  # failed logins per address and minute
_names = itertools.count(1)


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),  # one trusted proxy
        ("127.0.0.1", None, "127.0.0.1"),  # no header: the proxy itself (its health checks)
        ("127.0.0.1", "made-up, 203.0.113.9", "203.0.113.9"),  # the client's own entry: left
        ("127.0.0.1", "203.0.113.9, 10.0.0.7", "203.0.113.9"),  # two proxies, both trusted
        ("127.0.0.1", "203.0.113.9, 198.51.100.4, 10.0.0.7", "198.51.100.4"),  # right-most
        ("127.0.0.1", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # all trusted: the left-most
        ("127.0.0.1", "203.0.113.9, not-an-address", "127.0.0.1"),  # garbage: the last proxy
        ("127.0.0.1", "203.0.113.9:4711", "203.0.113.9"),  # with a port
        ("127.0.0.1", "[2001:db8::1]:4711", "2001:db8::1"),
        ("127.0.0.1", " 2001:db8::1 ", "2001:db8::1"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # a dual-stack socket's peer
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),  # untrusted peer: header ignored
        ("198.51.100.4", "127.0.0.1", "198.51.100.4"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(peer, header, client):
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/24"])
    assert proxies.client_address(peer, header) == client


def test_no_trusted_proxies_never_reads_the_header():
    proxies = TrustedProxies([])
    assert not proxies
    assert proxies.client_address("127.0.0.1", "203.0.113.9") == "127.0.0.1"


@pytest.mark.parametrize("entry", ["balancer.example", "10.0.0.0/33", "", "127.0.0.1, 10.0.0.1"])
def test_a_bad_trusted_proxy_is_a_configuration_error(entry):
    with pytest.raises(ConfigurationError) as err:
        load_config(None, environ={}, overrides={"trusted_proxies": [entry]})
    assert "trusted_proxies" in err.value.errors


def test_trusted_proxies_from_the_environment():
    env = {"V6NB_SERVER_TRUSTED_PROXIES": '["127.0.0.1", "10.0.0.5/24"]'}
    assert load_config(None, environ=env)["trusted_proxies"] == ["127.0.0.1", "10.0.0.5/24"]


# --- a real server that trusts 127.0.0.1 ---------------------------------------------------


class _From(HTTPAdapter):
    """Connections from one loopback source address."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def _session(source: str) -> requests.Session:
    s = requests.Session()
    s.mount("http://", _From(source))
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("proxies"),
        {
            "root_password": ROOT_PW,
            "trusted_proxies": ["127.0.0.1"],
            "login_rate_per_minute": RATE,
            "login_max_failures": 1000,  # only the address limit answers 429 here
            "max_connections_per_address": 2,
            "body_timeout_s": 20.0,
        },
    )
    with srv:
        yield srv


def _fail_login(srv: ServerProcess, source: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    body = {"username": f"nobody-{next(_names)}", "password": "not a password at all"}
    with _session(source) as s:
        r = s.post(srv.url + "/api/token/user", json=body, headers=headers, timeout=30)
    return r.status_code


def _failed_addresses(srv: ServerProcess) -> list[str]:
    root = srv.login("root", ROOT_PW)
    r = srv.get("/api/audit?action=login_failed&per_page=500", root)
    assert r.status_code == 200, r.text
    return [e["address"] for e in r.json()["data"]]


@pytest.mark.integration
def test_a_trusted_peer_forwards_for_its_clients(server):
    for _ in range(RATE):
        assert _fail_login(server, "127.0.0.1", "192.0.2.10") == 401
    assert _fail_login(server, "127.0.0.1", "192.0.2.10") == 429  # that client is over its limit
    assert _fail_login(server, "127.0.0.1", "192.0.2.11") == 401  # another one is not
    assert _fail_login(server, "127.0.0.1", "made-up, 192.0.2.10") == 429  # nor can it spoof
    addresses = _failed_addresses(server)
    assert addresses.count("192.0.2.10") == RATE + 2 and "192.0.2.11" in addresses


@pytest.mark.integration
def test_the_header_from_an_untrusted_peer_is_ignored(server):
    for i in range(RATE):
        assert _fail_login(server, "127.0.0.2", f"198.51.100.{i + 1}") == 401
    assert _fail_login(server, "127.0.0.2", "192.0.2.99") == 429  # a new header changes nothing
    assert _fail_login(server, "127.0.0.2") == 429
    assert "192.0.2.99" not in _failed_addresses(server)


def _held_request(srv: ServerProcess, forwarded: str) -> socket.socket:
    """A login whose body never arrives in full: the request stays in progress."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(
        b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Forwarded-For: %s\r\nContent-Length: 100\r\n\r\n{" % forwarded.encode()
    )
    return sock


def _health(srv: ServerProcess, forwarded: str) -> int:
    r = requests.get(srv.url + "/api/health", headers={"X-Forwarded-For": forwarded}, timeout=30)
    return r.status_code


@pytest.mark.integration
def test_the_connection_bound_counts_the_forwarded_client_not_the_proxy(server):
    held = [_held_request(server, "192.0.2.20") for _ in range(2)]
    try:
        # the third request of that client is refused once the two are in progress
        wait_for(lambda: _health(server, "192.0.2.20") == 503, 60, "the bound to refuse")
        r = requests.get(
            server.url + "/api/health", headers={"X-Forwarded-For": "192.0.2.20"}, timeout=30
        )
        assert r.status_code == 503 and r.json()["code"] == "too_many_connections"
        # another client of the same proxy, and the proxy itself, are not bounded by them
        assert _health(server, "192.0.2.21") == 200
        assert server.get("/api/health").status_code == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: _health(server, "192.0.2.20") == 200, 60, "the held requests to end")
