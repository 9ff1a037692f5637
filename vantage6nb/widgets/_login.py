"""Login: server URL, username and password; shows who is logged in and exposes the Client."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from ._output import ErrorOutput

__all__ = ["Login", "describe_user"]


def describe_user(whoami: Any) -> tuple[str, str]:
    """(username, organization name) from the client's ``whoami`` (a dict or an object).

    Examples
    --------
    >>> describe_user({"username": "researcher", "organization_name": "Leiden"})
    ('researcher', 'Leiden')
    """

    def get(*keys: str) -> str:
        for key in keys:
            value = whoami.get(key) if isinstance(whoami, dict) else getattr(whoami, key, None)
            if value not in (None, ""):
                return str(value)
        return ""

    org = get("organization_name", "organization")
    if not org:
        org_id = get("organization_id")
        org = f"organization {org_id}" if org_id else ""
    return get("username", "name"), org


class Login(widgets.VBox):
    """A login form; after a successful login :attr:`client` is a logged-in ``vantage6nb.Client``.

    Errors (wrong password, server down, bad URL) are shown inside the widget. ``username`` and
    ``organization`` traits hold who is logged in; observe ``username`` to react to a login.

    Examples
    --------
    >>> login = Login(url="http://127.0.0.1:7601")  # doctest: +SKIP
    >>> login  # fill in, click "Log in"  # doctest: +SKIP
    >>> client = login.client  # doctest: +SKIP
    """

    username = traitlets.Unicode("", help="Who is logged in ('' when nobody).")
    organization = traitlets.Unicode("", help="The organization of the logged-in user.")

    def __init__(
        self,
        url: str = "",
        username: str = "",
        password: str = "",
        *,
        client_factory: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._client_factory = client_factory
        self.client: Any = None
        self.url_input = widgets.Text(
            value=url, description="Server", placeholder="http://127.0.0.1:7601"
        )
        self.username_input = widgets.Text(value=username, description="Username")
        self.password_input = widgets.Password(value=password, description="Password")
        self.login_button = widgets.Button(
            description="Log in", button_style="primary", icon="sign-in"
        )
        self.login_button.on_click(self._on_click)
        self.status_html = widgets.HTML("<i>not logged in</i>")
        self.errors = ErrorOutput()
        super().__init__(
            [
                self.url_input,
                self.username_input,
                self.password_input,
                widgets.HBox([self.login_button, self.status_html]),
                self.errors.widget,
            ],
            **kwargs,
        )
        self.add_class("v6nb-login")

    def login(self) -> bool:
        """Log in with what the form holds; True on success (the error is shown otherwise)."""
        self.errors.clear()
        url = self.url_input.value.strip()
        if not url:
            self.errors.show_message("Enter the server URL, e.g. http://127.0.0.1:7601.")
            return False
        if not self.username_input.value.strip():
            self.errors.show_message("Enter your username.")
            return False
        self.login_button.disabled = True
        self.status_html.value = "<i>logging in…</i>"
        ok = False
        with self.errors.catch("logging in"):
            client = self._make_client(url)
            client.login(self.username_input.value.strip(), self.password_input.value)
            user, org = describe_user(client.whoami)
            self.client = client
            self.password_input.value = ""  # do not keep the secret in the notebook's widget state
            self.organization = org
            self.username = user or self.username_input.value.strip()
            ok = True
        self.login_button.disabled = False
        if ok:
            org_text = f" ({html.escape(self.organization)})" if self.organization else ""
            self.status_html.value = f"✔ logged in as <b>{html.escape(self.username)}</b>{org_text}"
        else:
            self.status_html.value = "<i>not logged in</i>"
            self.client, self.username, self.organization = None, "", ""
        return ok

    def _make_client(self, url: str) -> Any:
        if self._client_factory is not None:
            return self._client_factory(url)
        from ..client import Client

        return Client(url)

    def _on_click(self, _button: Any = None) -> None:
        self.login()

    @property
    def logged_in(self) -> bool:
        return self.client is not None
