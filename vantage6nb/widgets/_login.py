"""Login: server URL, username, password and (when the account has one) a TOTP code; shows who is
logged in, logs out, and exposes the Client."""

from __future__ import annotations

import html
import warnings
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

    Errors (wrong password, server down, bad URL, a locked account) are shown inside the widget.
    For an account with two-factor login the widget shows a code field after the first attempt
    and logs in with the code on the next click. ``username`` and ``organization`` traits hold who
    is logged in; observe ``username`` to react to a login (or a logout: it becomes ``''``).

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
        self.totp_input = widgets.Text(
            description="Code",
            placeholder="6 digits from your authenticator app",
            layout=widgets.Layout(display="none"),
        )
        self.login_button = widgets.Button(
            description="Log in", button_style="primary", icon="sign-in"
        )
        self.login_button.on_click(self._on_click)
        self.logout_button = widgets.Button(
            description="Log out",
            icon="sign-out",
            tooltip="End this session on the server (its tokens are revoked)",
            layout=widgets.Layout(display="none"),
        )
        self.logout_button.on_click(lambda _b: self.logout())
        self.status_html = widgets.HTML("<i>not logged in</i>")
        self.errors = ErrorOutput()
        super().__init__(
            [
                self.url_input,
                self.username_input,
                self.password_input,
                self.totp_input,
                widgets.HBox([self.login_button, self.logout_button, self.status_html]),
                self.errors.widget,
            ],
            **kwargs,
        )
        self.add_class("v6nb-login")

    @property
    def asks_for_code(self) -> bool:
        """True while the code field is shown (the account has two-factor login)."""
        return self.totp_input.layout.display != "none"

    def login(self) -> bool:
        """Log in with what the form holds; True on success (the error is shown otherwise).

        When the server answers that the account needs a TOTP code, the code field appears and
        the next call logs in with it.
        """
        self.errors.clear()
        url = self.url_input.value.strip()
        if not url:
            self.errors.show_message("Enter the server URL, e.g. http://127.0.0.1:7601.")
            return False
        if not self.username_input.value.strip():
            self.errors.show_message("Enter your username.")
            return False
        code = self.totp_input.value.strip().replace(" ", "")
        if self.asks_for_code and not code:
            self.errors.show_message("Enter the 6-digit code from your authenticator app.")
            return False
        self.login_button.disabled = True
        self.status_html.value = "<i>logging in…</i>"
        ok = needs_code = False
        with self.errors.catch("logging in"):
            client = self._make_client(url)
            try:
                with warnings.catch_warnings():  # said in the status line instead
                    warnings.simplefilter("ignore", UserWarning)
                    client.login(
                        self.username_input.value.strip(),
                        self.password_input.value,
                        **({"totp": code} if self.asks_for_code else {}),
                    )
            except Exception as exc:
                from ..client._http import TOTP_REQUIRED  # loaded with the client already

                if getattr(exc, "code", None) != TOTP_REQUIRED:
                    raise
                needs_code = True
            else:
                user, org = describe_user(client.whoami)
                self.client = client
                self.password_input.value = ""  # do not keep secrets in the widget state
                self.organization = org
                self.username = user or self.username_input.value.strip()
                ok = True
        self.totp_input.value = ""  # a code is good once
        self.login_button.disabled = False
        if ok:
            self._show_code_field(False)
            self.logout_button.layout.display = None
            org_text = f" ({html.escape(self.organization)})" if self.organization else ""
            self.status_html.value = f"✔ logged in as <b>{html.escape(self.username)}</b>{org_text}"
            if getattr(self.client, "totp_enrolment_required", False) is True:
                self.status_html.value += (
                    " — <b>your organization requires two-factor login</b>: enrol first with "
                    "<code>login.client.enable_totp()</code>, then "
                    "<code>login.client.confirm_totp(code)</code>"
                )
        elif needs_code:
            self._show_code_field(True)
            self.status_html.value = (
                "<i>this account needs a code: enter the 6 digits your authenticator app shows, "
                "then click Log in</i>"
            )
        else:
            self.status_html.value = "<i>not logged in</i>"
            self.client, self.username, self.organization = None, "", ""
        return ok

    def logout(self) -> bool:
        """End the session on the server (``client.logout()``); True when it ended."""
        self.errors.clear()
        if self.client is None:
            return True
        ok = False
        with self.errors.catch("logging out"):
            self.client.logout()
            ok = True
        if ok:
            self.client, self.username, self.organization = None, "", ""
            self.logout_button.layout.display = "none"
            self.status_html.value = "<i>logged out</i>"
        return ok

    def _show_code_field(self, show: bool) -> None:
        self.totp_input.layout.display = None if show else "none"

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
