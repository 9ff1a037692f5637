"""Login that resists guessing, against a real server process: lockout, per-address limit, the
same work for unknown usernames, failures logged, password policy, case-blind usernames, TOTP."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from server_app.bootstrap import hash_password
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.integration

ROOT_PW = "login-root-passphrase"
_names = itertools.count(1)


def _server(factory: pytest.TempPathFactory, name: str, **settings: Any) -> ServerProcess:
    return ServerProcess(factory.mktemp(name), {"root_password": ROOT_PW, **settings})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default limits (5 failures, 900 s lockout, 30 failures a minute per address: the tests on
    this server fail fewer logins than that)."""
    with _server(tmp_path_factory, "login") as srv:
        yield srv


@pytest.fixture(scope="module")
def root(server: ServerProcess) -> str:
    return server.login("root", ROOT_PW)


@pytest.fixture(scope="module")
def org(server: ServerProcess, root: str) -> int:
    return int(server.ok("POST", "/api/organization", root, json={"name": "login-org"})["id"])


def _user(server: ServerProcess, root: str, org: int) -> tuple[int, str, str]:
    name = f"member-number-{next(_names)}"
    pw = f"{name} keeps a quiet garden"
    body = {"username": name, "password": pw, "organization_id": org}
    return int(server.ok("POST", "/api/user", root, json=body)["id"]), name, pw


def _login(server: ServerProcess, username: str, password: str, **extra: Any) -> Any:
    body = {"username": username, "password": password, **extra}
    return server.request("POST", "/api/token/user", json=body)


def _without_numbers(msg: str) -> str:
    return re.sub(r"\d+", "N", msg)


def test_lockout_after_five_failures_same_for_unknown_names(server, root, org):
    uid, name, pw = _user(server, root, org)
    unknown = f"nobody-{next(_names)}"
    answers: dict[str, list[Any]] = {name: [], unknown: []}
    for who in (name, unknown):
        for _ in range(5):
            answers[who].append(_login(server, who, "a wrong guess of a password"))
    for who in (name, unknown):
        assert [r.status_code for r in answers[who]] == [401] * 5
    # the same answer for a real account and for a name that is no account
    assert answers[name][0].json() == answers[unknown][0].json()
    # the sixth try, even with the right password: locked, for both
    locked = _login(server, name, pw)
    ghost = _login(server, unknown, pw)
    for r in (locked, ghost):
        assert r.status_code == 429, r.text
        assert 850 <= int(r.headers["Retry-After"]) <= 900
        assert "try again in 15 minutes" in r.json()["msg"]
    assert _without_numbers(locked.json()["msg"]) == _without_numbers(ghost.json()["msg"])
    assert locked.json()["code"] == ghost.json()["code"] == "too_many_attempts"
    # every failure is logged with the address, and audited
    wait_for(
        lambda: f"login failed for '{name}' from 127.0.0.1" in server.output(),
        30,
        "the failed login in the server log",
    )
    failed = server.ok(
        "GET", "/api/audit", root, params={"action": "login_failed", "per_page": 500}
    )
    mine = [e for e in failed["data"] if e["target"] == f"user {name}"]
    assert len(mine) == 6 and all(e["address"] == "127.0.0.1" for e in mine)
    assert {e["outcome"] for e in mine} == {"denied"}


def test_address_limit(tmp_path_factory):
    with _server(tmp_path_factory, "rate", login_rate_per_minute=3) as srv:
        for i in range(3):
            assert _login(srv, f"guess{i}", "some password or other").status_code == 401
        r = _login(srv, "root", ROOT_PW)  # even the right password, from this address
        assert r.status_code == 429 and "from your address" in r.json()["msg"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_unknown_username_costs_a_password_hash(tmp_path, monkeypatch):
    """The same work for an unknown username as for a known one: one check of a hash made with
    the same parameters (counted, not timed: a busy machine cannot break a count)."""
    from server_app import create_app
    from server_app.resources import auth

    checked: list[str] = []
    real = auth.verify_password

    def counting(stored: str, password: str) -> bool:
        checked.append(stored.split("$", 1)[0])  # the method and its parameters
        return real(stored, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    app = create_app({"data_dir": str(tmp_path), "root_password": "timing-root-passphrase"})
    c = app.test_client()
    for name in ("no-such-user", "root", "NO-SUCH-USER"):
        r = c.post("/api/token/user", json={"username": name, "password": "not the password"})
        assert r.status_code == 401 and r.json["msg"] == auth.WRONG_CREDENTIALS
    assert len(checked) == 3, checked
    assert len(set(checked)) == 1 and checked[0] == hash_password("x").split("$", 1)[0], checked


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("password", "at least 10 characters"),
        ("12345678", "at least 10 characters"),
        (" " * 8, "only spaces"),
        (" " * 12, "only spaces"),
        ("qwertyuiop", "common password"),
        ("Password123", "common password"),
        ("{name}", "equal to the username"),
    ],
)
def test_weak_passwords_refused(server, root, org, password, problem):
    name = f"weakling-number-{next(_names)}"
    template, password = password, password.format(name=name)
    body = {"username": name, "password": password, "organization_id": org}
    r = server.request("POST", "/api/user", root, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == {"password": problem}
    if password.strip() and password != "password":  # the answer never repeats the password
        assert password.strip() not in r.text
    uid, user, pw = _user(server, root, org)
    token = server.login(user, pw)
    change = {"password": template.format(name=user), "current_password": pw}
    r = server.request("PATCH", f"/api/user/{uid}", token, json=change)
    assert r.status_code == 400 and "password" in r.json()["errors"], r.text


def test_usernames_are_unique_without_case(server, root, org):
    r = server.request(
        "POST",
        "/api/user",
        root,
        json={"username": "ROOT", "password": "a decent passphrase", "organization_id": org},
    )
    assert r.status_code == 409, r.text
    assert "a user named 'ROOT' exists already (names are compared without case)" in r.json()[
        "msg"
    ].replace("A user", "a user")
    # login in any case
    assert _login(server, "Root", ROOT_PW).status_code == 200
    uid, name, _pw = _user(server, root, org)
    r = server.request("PATCH", f"/api/user/{uid}", root, json={"username": "rOOt"})
    assert r.status_code == 409
    assert (
        server.ok("GET", "/api/user", root, params={"username": name.upper()})["data"][0]["id"]
        == uid
    )


def test_totp_enrolment_and_login(server, root, org):
    uid, name, pw = _user(server, root, org)
    token = server.login(name, pw)
    start = server.ok("POST", f"/api/user/{uid}/totp", token)
    assert start["uri"].startswith("otpauth://totp/") and start["secret"]
    totp = pyotp.TOTP(start["secret"])
    r = server.request("POST", f"/api/user/{uid}/totp/confirm", token, json={"code": "000000"})
    if totp.verify("000000"):  # one in a million
        pytest.skip("the current code happens to be 000000")
    assert r.status_code == 400 and r.json()["errors"] == {"code": "does not match"}
    server.ok("POST", f"/api/user/{uid}/totp/confirm", token, json={"code": totp.now()})
    r = _login(server, name, pw)
    assert r.status_code == 401 and r.json()["code"] == "totp_required"
    assert "6-digit code" in r.json()["msg"]
    wrong = _login(server, name, pw, totp="12345")
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthenticated"
    assert _login(server, name, pw, totp=totp.now()).status_code == 200
    # a wrong password with the right code is still a wrong password
    assert _login(server, name, "not it at all", totp=totp.now()).status_code == 401


def test_organization_requires_totp(server, root):
    org = int(server.ok("POST", "/api/organization", root, json={"name": "strict-org"})["id"])
    uid, name, pw = _user(server, root, org)
    token = server.login(name, pw)
    assert (
        server.request(
            "POST", f"/api/organization/{org}/require-totp", token, json={"require_totp": True}
        ).status_code
        == 403
    )
    server.ok("POST", f"/api/organization/{org}/require-totp", root, json={"require_totp": True})
    r = server.get("/api/organization", token)
    assert r.status_code == 403 and r.json()["code"] == "totp_enrolment_required"
    assert f"/api/user/{uid}/totp" in r.json()["msg"]
    login = _login(server, name, pw).json()
    assert login["totp_enrolment_required"] is True
    token = login["access_token"]
    secret = server.ok("POST", f"/api/user/{uid}/totp", token)["secret"]
    server.ok(
        "POST", f"/api/user/{uid}/totp/confirm", token, json={"code": pyotp.TOTP(secret).now()}
    )
    assert server.get("/api/organization", token).status_code == 200


def test_a_two_factor_code_is_single_use(server, root, org):
    uid, name, pw = _user(server, root, org)
    token = server.login(name, pw)
    totp = pyotp.TOTP(server.ok("POST", f"/api/user/{uid}/totp", token)["secret"])
    server.ok("POST", f"/api/user/{uid}/totp/confirm", token, json={"code": totp.now()})
    code = totp.now()
    assert _login(server, name, pw, totp=code).status_code == 200
    again = _login(server, name, pw, totp=code)
    assert again.status_code == 401 and again.json()["errors"] == {"totp": "used already"}
    assert "used already" in again.json()["msg"]
    later = totp.at(time.time() + totp.interval)  # the next step's code is still good
    assert _login(server, name, pw, totp=later).status_code == 200
