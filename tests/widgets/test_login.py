"""Login widget: form validation and errors shown in the widget (no server needed here)."""

from __future__ import annotations

from tests.support import free_port
from vantage6nb.widgets import Login


def test_empty_fields_ask_for_input():
    login = Login()
    assert not login.login()
    assert login.errors.messages == ["Enter the server URL, e.g. http://127.0.0.1:7601."]
    login.url_input.value = "http://127.0.0.1:1"
    login.login_button.click()
    assert login.errors.messages == ["Enter your username."]
    assert login.client is None and login.username == ""


def test_unreachable_server_is_shown_in_the_widget():
    login = Login(url=f"http://127.0.0.1:{free_port()}", username="researcher", password="x")
    seen = []
    login.observe(lambda change: seen.append(change["new"]), names=["username"])
    login.login_button.click()  # must not raise
    assert not login.logged_in and seen == []
    assert len(login.errors.messages) == 1
    message = login.errors.messages[0]
    assert message.startswith("Error while logging in:")
    # the message is in the Output widget, as stderr text
    assert login.errors.widget.outputs[0]["name"] == "stderr"
    assert message in login.errors.widget.outputs[0]["text"]
    assert "not logged in" in login.status_html.value
    assert not login.login_button.disabled
