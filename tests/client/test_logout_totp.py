"""Logout, rotating refresh tokens, two-factor login and the audit log through the ``Client``,
against a real server process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyotp
import pytest
import requests

from tests.support import ServerProcess
from vantage6nb import Client
from vantage6nb.client import TotpEnrolmentWarning, TotpRequired
from vantage6nb.errors import AuthenticationError, PermissionDenied

from .conftest import ROOT_PASSWORD, Admin

PASSWORD = "logout-Secret-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's own: many logins from one address in little time."""
    settings = {"root_password": ROOT_PASSWORD, "login_rate_per_minute": 10_000}
    with ServerProcess(tmp_path_factory.mktemp("logout-server"), settings) as proc:
        admin = Admin(proc.url)
        org = admin.post("/organization", {"name": "Logout Org"})
        yield {"url": proc.url, "admin": admin, "org": org}


def _user(srv: dict[str, Any], name: str) -> str:
    srv["admin"].post(
        "/user", {"username": name, "password": PASSWORD, "organization_id": srv["org"]["id"]}
    )
    return name


def _client(srv: dict[str, Any], tmp_path: Path) -> Client:
    return Client(srv["url"], timeout=10, state_dir=tmp_path / "state")


def _until_refused(url: str, token: str, deadline_s: float = 30.0) -> int:
    """The status of GET /api/user/me with ``token``, once it is no longer 200 (or at the deadline)."""
    end = time.monotonic() + deadline_s
    while True:
        r = requests.get(url + "/api/user/me", headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 200 or time.monotonic() > end:
            return r.status_code
        time.sleep(0.05)


def test_logout_ends_the_session_on_the_server_and_in_the_client(srv, tmp_path: Path) -> None:
    name = _user(srv, "leaving")
    client = _client(srv, tmp_path).login(name, PASSWORD)
    access, refresh = client._transport.access_token, client._transport.refresh_token
    assert client.whoami["username"] == name
    client.logout()
    assert not client.logged_in and "not logged in" in repr(client)
    with pytest.raises(AuthenticationError, match=r"Logged out: log in again with client\.login"):
        client.organizations()
    with pytest.raises(AuthenticationError, match="log in again"):
        client.whoami  # noqa: B018
    # the tokens it held are dead on the server too, not only forgotten
    assert _until_refused(srv["url"], access) == 401
    r = requests.post(srv["url"] + "/api/token/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401
    client.logout()  # again: nothing to do, no error
    assert client.login(name, PASSWORD).whoami["username"] == name  # and back in


def test_logout_everywhere_ends_the_other_sessions(srv, tmp_path: Path) -> None:
    name = _user(srv, "everywhere")
    here = _client(srv, tmp_path).login(name, PASSWORD)
    there = _client(srv, tmp_path).login(name, PASSWORD)
    here.logout(everywhere=True)
    end = time.monotonic() + 5
    while True:  # revocation reaches every session within the session cache's second
        try:
            there.organizations()
        except AuthenticationError as exc:
            assert "log in again" in str(exc)
            break
        assert time.monotonic() < end, "the other session still works"
        time.sleep(0.05)
    with pytest.raises(AuthenticationError, match="log in again"):
        there.organizations()


def test_the_client_keeps_the_rotated_refresh_token(srv, tmp_path: Path) -> None:
    name = _user(srv, "rotating")
    client = _client(srv, tmp_path).login(name, PASSWORD)
    transport = client._transport
    first = transport.refresh_token
    transport.refresh()
    second = transport.refresh_token
    assert second and second != first
    transport.refresh()  # with the rotated token: presenting the used one would end the session
    assert transport.refresh_token not in (first, second)
    assert client.organizations()["name"].tolist() == ["Logout Org"]

    # an old refresh token presented again ends the whole session, and the client says so
    r = requests.post(srv["url"] + "/api/token/refresh", json={"refresh_token": first})
    assert r.status_code == 401
    end = time.monotonic() + 5
    while True:
        transport.access_token = "expired"  # the next request refreshes
        try:
            client.organizations()
        except AuthenticationError as exc:
            assert "log in again" in str(exc)
            break
        assert time.monotonic() < end, "the session survived the reuse of a refresh token"
        time.sleep(0.05)


def test_two_factor_login_through_the_client(srv, tmp_path: Path) -> None:
    name = _user(srv, "two-factor")
    client = _client(srv, tmp_path).login(name, PASSWORD)
    enrolment = client.enable_totp()
    assert enrolment["uri"].startswith("otpauth://totp/") and enrolment["secret"]
    totp = pyotp.TOTP(enrolment["secret"])
    with pytest.raises(Exception, match="does not match"):
        client.confirm_totp("000000" if totp.now() != "000000" else "111111")
    client.confirm_totp(totp.now())

    fresh = _client(srv, tmp_path)
    with pytest.raises(TotpRequired) as info:
        fresh.login(name, PASSWORD)
    assert isinstance(info.value, AuthenticationError) and info.value.code == "totp_required"
    assert "totp='123456'" in str(info.value) and not fresh.logged_in
    wrong = "000000" if totp.now() != "000000" else "111111"
    with pytest.raises(AuthenticationError, match="wrong username or password or code") as bad:
        fresh.login(name, PASSWORD, totp=wrong)
    assert not isinstance(bad.value, TotpRequired)
    assert fresh.login(name, PASSWORD, totp=totp.now()).whoami["username"] == name
    # a code is single-use: the same one again is refused, the next one (spaces are fine) works
    with pytest.raises(AuthenticationError, match="used already"):
        _client(srv, tmp_path).login(name, PASSWORD, totp=totp.now())
    later = totp.at(time.time() + totp.interval)
    assert fresh.login(name, PASSWORD, totp=" ".join(later)).logged_in

    client.disable_totp(totp.now())
    assert _client(srv, tmp_path).login(name, PASSWORD).logged_in


def test_an_organization_that_requires_two_factor_login(srv, tmp_path: Path) -> None:
    admin = srv["admin"]
    org = admin.post("/organization", {"name": "Strict Org"})
    root = _client(srv, tmp_path).login("root", ROOT_PASSWORD)
    assert root.require_totp("Strict Org") is True
    admin.post("/user", {"username": "strict", "password": PASSWORD, "organization_id": org["id"]})
    client = _client(srv, tmp_path)
    with pytest.warns(TotpEnrolmentWarning, match=r"client\.enable_totp\(\)"):
        client.login("strict", PASSWORD)
    assert client.totp_enrolment_required
    with pytest.raises(PermissionDenied, match="two-factor"):
        client.organizations()
    secret = client.enable_totp()["secret"]
    client.confirm_totp(pyotp.TOTP(secret).now())
    assert not client.totp_enrolment_required
    end = time.monotonic() + 5
    while True:
        try:
            assert "Strict Org" in client.organizations()["name"].tolist()
            break
        except PermissionDenied:
            assert time.monotonic() < end
            time.sleep(0.05)


def test_the_audit_log_as_a_dataframe(srv, tmp_path: Path) -> None:
    name = _user(srv, "audited")
    with pytest.raises(AuthenticationError):
        _client(srv, tmp_path).login(name, "not-the-password-1")
    root = _client(srv, tmp_path).login("root", ROOT_PASSWORD)
    df = root.audit()
    assert list(df.columns[:10]) == [
        "id",
        "time",
        "action",
        "outcome",
        "actor_type",
        "actor_id",
        "actor_org_id",
        "address",
        "target",
        "detail",
    ]
    assert isinstance(df["time"].dtype, pd.DatetimeTZDtype)
    assert {"login", "login_failed", "user_created"} <= set(df["action"])
    failed = root.audit(action="login_failed")
    assert set(failed["action"]) == {"login_failed"} and len(failed) >= 1
    assert failed["address"].iloc[-1] == "127.0.0.1"
    assert root.audit(since=pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)).empty
    with pytest.raises(PermissionDenied):
        _client(srv, tmp_path).login(name, PASSWORD).audit()
