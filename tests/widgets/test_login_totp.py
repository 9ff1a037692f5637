"""Login widget: an account with two-factor login gets a code field and logs in with the code;
the widget logs out. Against a real server process."""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest

from tests.client.conftest import ROOT_PASSWORD, Admin
from tests.support import ServerProcess, wait_for
from vantage6nb import Client
from vantage6nb.errors import AuthenticationError
from vantage6nb.widgets import Login

PASSWORD = "widget-Secret-1"


@pytest.fixture(scope="module")
def totp_account(tmp_path_factory: pytest.TempPathFactory):
    """A server with a user who has two-factor login on; yields (url, username, TOTP)."""
    settings = {"root_password": ROOT_PASSWORD, "login_rate_per_minute": 10_000}
    folder = tmp_path_factory.mktemp("login-widget")
    with ServerProcess(folder, settings) as proc:
        admin = Admin(proc.url)
        org = admin.post("/organization", {"name": "Widget Org"})
        admin.post(
            "/user", {"username": "coded", "password": PASSWORD, "organization_id": org["id"]}
        )
        client = Client(proc.url, timeout=10, state_dir=folder / "state").login("coded", PASSWORD)
        totp = pyotp.TOTP(client.enable_totp()["secret"])
        client.confirm_totp(totp.now())
        client.close()
        yield proc.url, "coded", totp


_used_steps: list[int] = []


def next_code(totp: pyotp.TOTP) -> str:
    """A code no login of this module has used (codes are single-use): the current step's, or
    the next one's (the server accepts one step of drift), waiting only if both are used."""
    now = int(time.time() // totp.interval)
    step = max([now, *(s + 1 for s in _used_steps)])
    if step > now + 1:
        wait_for(
            lambda: int(time.time() // totp.interval) >= step - 1,
            timeout=2 * totp.interval + 5,
            what="the next two-factor step",
        )
    _used_steps.append(step)
    return totp.at(step * totp.interval)


def _login(url: str, tmp_path: Path, username: str, password: str) -> Login:
    return Login(
        url=url,
        username=username,
        password=password,
        client_factory=lambda u: Client(u, timeout=10, state_dir=tmp_path / "state"),
    )


def test_the_widget_asks_for_the_code_and_logs_in_with_it(totp_account, tmp_path: Path) -> None:
    url, username, totp = totp_account
    login = _login(url, tmp_path, username, PASSWORD)
    assert not login.asks_for_code and login.totp_input.layout.display == "none"
    login.login_button.click()  # must not raise
    assert not login.logged_in and login.asks_for_code
    assert login.errors.messages == []  # a question, not an error
    assert "needs a code" in login.status_html.value
    assert login.password_input.value == PASSWORD  # kept for the second step

    login.login_button.click()  # no code entered yet
    assert login.errors.messages == ["Enter the 6-digit code from your authenticator app."]

    login.totp_input.value = "000000" if totp.now() != "000000" else "111111"
    assert not login.login()
    assert len(login.errors.messages) == 1 and "wrong" in login.errors.messages[0]
    assert login.asks_for_code and login.totp_input.value == ""

    seen = []
    login.observe(lambda change: seen.append(change["new"]), names=["username"])
    login.totp_input.value = next_code(totp)
    login.login_button.click()
    assert login.logged_in and seen == [username]
    assert login.client.whoami["username"] == username
    assert not login.asks_for_code and login.password_input.value == ""
    assert "logged in as <b>coded</b> (Widget Org)" in login.status_html.value
    assert login.logout_button.layout.display is None


def test_the_widget_logs_out(totp_account, tmp_path: Path) -> None:
    url, username, totp = totp_account
    login = _login(url, tmp_path, username, PASSWORD)
    login.totp_input.layout.display = None  # a user who knows to give the code at once
    login.totp_input.value = next_code(totp)
    assert login.login()
    client = login.client
    seen = []
    login.observe(lambda change: seen.append(change["new"]), names=["username"])
    login.logout_button.click()
    assert not login.logged_in and login.username == "" and seen == [""]
    assert "logged out" in login.status_html.value
    assert login.logout_button.layout.display == "none"
    with pytest.raises(AuthenticationError, match="Logged out"):
        client.organizations()


def test_an_account_without_a_code_logs_in_at_once(tmp_path: Path) -> None:
    class Fake:
        def __init__(self) -> None:
            self.calls: list[dict] = []
            self.whoami = {"username": "plain", "organization_name": "Org"}

        def login(self, username: str, password: str, **kw: str) -> Fake:
            self.calls.append({"username": username, **kw})
            return self

    fake = Fake()
    login = Login(url="http://x", username="plain", password="pw", client_factory=lambda u: fake)
    assert login.login() and fake.calls == [{"username": "plain"}]  # no totp= sent
    assert not login.asks_for_code
