"""Behind HAProxy, the client's own address (X-Forwarded-For from a trusted balancer) is what the
login limit, the audit log and the per-address connection bound use; a client cannot spoof it,
and without ``trusted_proxies`` the header is ignored."""

from __future__ import annotations

import itertools
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.integration.test_load_balancer import Balancer
from tests.support import ServerProcess, unavailable, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT_PW = "forwarded-root-password"
ALICE_PW = "alice keeps a quiet garden"
RATE = 3  # failed logins per address and minute
WAIT_S = 60  # hang guards, not speed assertions
_names = itertools.count(1)


class _From(HTTPAdapter):
    """Connections from one loopback source address (127.0.0.0/8 is all on ``lo``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def _login(url: str, source: str, username: str, password: str, **headers: str) -> Any:
    with requests.Session() as s:
        s.mount("http://", _From(source))
        body = {"username": username, "password": password}
        return s.post(url + "/api/token/user", json=body, headers=headers, timeout=30)


class _Site:
    """One instance (SQLite) and HAProxy in front of it."""

    def __init__(self, folder: Path, name: str, **settings: Any) -> None:
        values = {
            "root_password": ROOT_PW,
            "login_rate_per_minute": RATE,
            "login_max_failures": 1000,  # only the address limit answers 429 here
            **settings,
        }
        self.server = ServerProcess(folder, values, name=name)
        (folder / f"{name}-lb").mkdir(parents=True, exist_ok=True)
        self.lb = Balancer(folder / f"{name}-lb", [self.server])
        self.url = self.lb.url

    def start(self) -> None:
        self.server.start()
        self.lb.start()
        wait_for(self._healthy, WAIT_S, "the balancer to pass a health check", check=self.lb.check)
        self.root = root = self.server.login("root", ROOT_PW)  # before any lockout
        org = self.server.ok("POST", "/api/organization", root, json={"name": "fwd"})["id"]
        body = {"username": "alice", "password": ALICE_PW, "organization_id": org}
        self.server.ok("POST", "/api/user", root, json=body)

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/api/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.lb.stop()
        self.server.stop()

    def audit(self, action: str) -> list[dict[str, Any]]:
        r = self.server.get(f"/api/audit?action={action}&per_page=500", self.root)
        assert r.status_code == 200, r.text
        return list(r.json()["data"])


def _start(site: _Site) -> Iterator[_Site]:
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("haproxy") is None:
        unavailable("HAProxy is not installed: run `sudo bash scripts/setup-haproxy.sh`")
    return tmp_path_factory.mktemp("forwarded")


@pytest.fixture(scope="module")
def trusting(folder: Path) -> Iterator[_Site]:
    """trusted_proxies: the balancer (127.0.0.1); two requests in progress per client."""
    site = _Site(
        folder,
        "trusting",
        trusted_proxies=["127.0.0.1"],
        max_connections_per_address=2,
        body_timeout_s=30.0,
    )
    yield from _start(site)


@pytest.fixture(scope="module")
def untrusting(folder: Path) -> Iterator[_Site]:
    """No trusted_proxies (the default); no connection bound, so the balancer's own connections
    cannot get in the way."""
    yield from _start(_Site(folder, "untrusting", max_connections_per_address=0))


def _guess(site: _Site, source: str, **headers: str) -> int:
    return int(_login(site.url, source, "alice", "not alice's password", **headers).status_code)


def test_locking_out_one_client_does_not_lock_out_another(trusting):
    for _ in range(RATE):
        assert _guess(trusting, "127.0.0.2") == 401
    r = _login(trusting.url, "127.0.0.2", "alice", ALICE_PW)  # even the right password
    assert r.status_code == 429 and "from your address" in r.json()["msg"]
    assert _login(trusting.url, "127.0.0.3", "alice", ALICE_PW).status_code == 200


def test_a_spoofed_forwarded_for_does_not_escape_the_limit(trusting):
    for _ in range(RATE):
        assert _guess(trusting, "127.0.0.4") == 401
    # the balancer appends 127.0.0.4 to whatever the client wrote: the right-most untrusted
    # address is still the client's own, also when it names the balancer itself
    for spoofed in ("192.0.2.1", "127.0.0.5", "127.0.0.1", "127.0.0.1, 127.0.0.1"):
        r = _login(trusting.url, "127.0.0.4", "alice", ALICE_PW, **{"X-Forwarded-For": spoofed})
        assert r.status_code == 429, spoofed
    # straight to the instance, bypassing the balancer: the header is ignored as well
    direct = trusting.server.url
    for _ in range(RATE):
        r = _login(direct, "127.0.0.6", "alice", "wrong", **{"X-Forwarded-For": "192.0.2.2"})
        assert r.status_code == 401
    r = _login(direct, "127.0.0.6", "alice", ALICE_PW, **{"X-Forwarded-For": "192.0.2.3"})
    assert r.status_code == 429


def test_the_audit_log_records_the_client_address(trusting):
    name = f"nobody-{next(_names)}"
    r = _login(trusting.url, "127.0.0.7", name, "a guess", **{"X-Forwarded-For": "1.2.3.4"})
    assert r.status_code == 401
    assert _login(trusting.url, "127.0.0.8", "alice", ALICE_PW).status_code == 200
    failed = [e for e in trusting.audit("login_failed") if e["target"] == f"user {name}"]
    assert [e["address"] for e in failed] == ["127.0.0.7"]
    assert "127.0.0.8" in [e["address"] for e in trusting.audit("login")]


def _held(site: _Site, source: str) -> socket.socket:
    """A login through the balancer whose body never arrives in full: it stays in progress."""
    sock = socket.create_connection(
        ("127.0.0.1", site.lb.port), timeout=30, source_address=(source, 0)
    )
    sock.sendall(
        b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    return sock


def _health_from(site: _Site, source: str) -> Any:
    with requests.Session() as s:
        s.mount("http://", _From(source))
        return s.get(site.url + "/api/health", timeout=30)


def test_the_connection_bound_applies_to_each_client_not_the_balancer(trusting):
    held = [_held(trusting, "127.0.0.9") for _ in range(2)]
    try:
        wait_for(
            lambda: _health_from(trusting, "127.0.0.9").status_code == 503,
            WAIT_S,
            "the instance to refuse a third request of 127.0.0.9",
        )
        r = _health_from(trusting, "127.0.0.9")
        assert r.status_code == 503 and r.json()["code"] == "too_many_connections"
        assert _health_from(trusting, "127.0.0.10").status_code == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(
        lambda: _health_from(trusting, "127.0.0.9").status_code == 200,
        WAIT_S,
        "the held requests to end",
    )


def test_without_trusted_proxies_the_header_is_ignored(untrusting):
    for _ in range(RATE):
        assert _guess(untrusting, "127.0.0.11") == 401
    # every client is the balancer's address: the limit holds them all together
    r = _login(untrusting.url, "127.0.0.12", "alice", ALICE_PW, **{"X-Forwarded-For": "192.0.2.4"})
    assert r.status_code == 429
    addresses = {e["address"] for e in untrusting.audit("login_failed")}
    assert addresses == {"127.0.0.1"}
