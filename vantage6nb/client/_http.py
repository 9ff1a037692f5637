"""The client's HTTP layer: base URL, bearer tokens with transparent refresh, typed errors.

The requests themselves go through the shared REST core (:mod:`vantage6nb.common.rest`) over a
transport: a ``requests.Session`` by default, or any object with its ``request`` method.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import requests

from ..common.errors import (
    AuthenticationError,
    NotFound,
    ServerUnavailable,
    TotpRequired,
    ValidationError,
)
from ..common.rest import Response, RestCore, collect_pages, exchange, long_timeout, result
from ..common.rest import Transport as HttpTransport

__all__ = ["TOTP_REQUIRED", "TotpRequired", "Transport", "server_url"]

#: the error code of a login that needs a TOTP code (``exc.code``; the Login widget asks for one)
TOTP_REQUIRED = "totp_required"


_START_HINT = "is the server running? start it with `v6nb server start` or `v6nb demo`"
_NOT_LOGGED_IN = "Not logged in: call client.login(username, password) first."
_LOGGED_OUT = "Logged out: log in again with client.login(username, password)."


def _login_failed(exc: AuthenticationError, username: str, totp: str | None) -> AuthenticationError:
    """The login error, of the class the server named, with what to do next."""
    if exc.code == TOTP_REQUIRED:
        msg = (
            f"User '{username}' logs in with a second factor: pass the 6-digit code from your "
            "authenticator app, client.login(username, password, totp='123456')."
        )
    elif "wrong" in exc.msg.lower() and "password" in exc.msg.lower():
        extra = " or code" if totp is not None else ""
        msg = f"Login failed for user '{username}': wrong username or password{extra} ({exc.msg})."
    else:  # e.g. a locked account: the server says how long
        msg = f"Login failed for user '{username}': {exc.msg}"
    return type(exc)(msg, errors=exc.errors)


def server_url(url: str) -> str:
    """The server's base URL as the client keeps it: no trailing ``/``, and no ``/api`` (the API
    path, which the client adds itself; vantage6's clients are given it separately).

    Examples
    --------
    >>> server_url("http://127.0.0.1:7601/api/")
    'http://127.0.0.1:7601'
    >>> server_url("https://example.org/v6")
    'https://example.org/v6'
    """
    if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
        raise ValidationError(
            f"Server URL must start with http:// or https://, got {url!r}; "
            "e.g. Client('http://127.0.0.1:7601').",
            errors={"url": "expected http:// or https://"},
        )
    base = url.strip().rstrip("/")
    while base.endswith("/api"):
        base = base[: -len("/api")].rstrip("/")
    return base


class Transport:
    """One server and the researcher's tokens, over one HTTP transport (a ``requests.Session``).

    A request answered 401 while a refresh token is held is retried once with a fresh access
    token, so a long notebook session never sees an expired token.

    Parameters
    ----------
    url : str
        The server, e.g. ``"http://127.0.0.1:7601"`` (a trailing ``/api`` is dropped).
    timeout : float
        Seconds to wait for one HTTP answer.
    verify : bool or str
        TLS verification of the default ``requests.Session``.
    transport : optional
        Sends the requests instead of a ``requests.Session`` (see
        :class:`vantage6nb.common.rest.Transport`), e.g. ``vantage6nb.testing.FlaskTransport``.

    Examples
    --------
    >>> t = Transport("http://127.0.0.1:7601", timeout=5.0)  # doctest: +SKIP
    >>> t.request("GET", "/health")  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: HttpTransport | None = None,
    ) -> None:
        self.url = server_url(url)
        self.api = self.url + "/api"
        self.timeout = timeout
        self.verify = verify
        if transport is None:
            session = requests.Session()
            session.verify = verify
            transport = session
        self.session = transport
        self.rest = RestCore(self.api, transport, timeout=timeout, on_failure=self._unreachable)
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self._not_logged_in = _NOT_LOGGED_IN  # what a request without a token is told
        self._refresh_lock = threading.Lock()

    # -- tokens ---------------------------------------------------------------------------------
    def login(self, username: str, password: str, *, totp: str | None = None) -> dict[str, Any]:
        """Exchange a username and password (and a TOTP code) for tokens; returns the server's
        answer without the tokens (``user``, and ``totp_enrolment_required`` with a ``msg`` when
        the organization requires two-factor login and the account has none yet).

        An account with two-factor login answered without ``totp`` raises the error the server
        names ``totp_required`` (an :class:`AuthenticationError` whose ``code`` says so).
        """
        body: dict[str, Any] = {"username": username, "password": password}
        if totp is not None:
            body["totp"] = str(totp).strip().replace(" ", "")
        codes: list[Any] = []  # the error code the server named (kept even if not a known class)

        def send(method: str, path: str, *, params: Any, json: Any, token: Any) -> Response:
            resp = self._send(method, path, params=params, json=json, token=token)
            if resp.status_code == 401:
                try:
                    codes.append((resp.json() or {}).get("code"))
                except (ValueError, AttributeError):
                    pass
            return resp

        try:
            answer = self.rest.call("POST", "/token/user", json=body, send=send)
        except AuthenticationError as exc:
            if codes and codes[-1] == TOTP_REQUIRED and exc.code != TOTP_REQUIRED:
                exc = TotpRequired(exc.msg, errors=exc.errors)
            raise _login_failed(exc, username, totp) from None
        except NotFound as exc:  # something answers, but not a vantage6nb server at this path
            raise NotFound(
                f"No vantage6nb server answers at {self.url} ({exc.msg}). Give the server's own "
                "URL, e.g. Client('http://127.0.0.1:7601'), without the path of a page or endpoint.",
                errors=exc.errors,
            ) from None
        self.access_token = answer["access_token"]
        self.refresh_token = answer.get("refresh_token")
        self._not_logged_in = _NOT_LOGGED_IN
        return {k: v for k, v in answer.items() if k not in ("access_token", "refresh_token")}

    def refresh(self, stale: str | None = None) -> str:
        """Get a new access token with the refresh token; returns it.

        ``stale`` is the token the caller saw fail: when another thread already replaced it, that
        newer token is returned without asking the server again.
        """
        with self._refresh_lock:
            if stale is not None and self.access_token not in (None, stale):
                return self.access_token
            if not self.refresh_token:
                raise AuthenticationError(self._not_logged_in)
            try:
                body = self.request(
                    "POST", "/token/refresh", json={"refresh_token": self.refresh_token}, auth=False
                )
            except AuthenticationError as exc:
                self.access_token = self.refresh_token = None
                self._not_logged_in = (
                    f"Your session has ended ({exc.msg}): log in again with client.login(...)."
                )
                raise AuthenticationError(self._not_logged_in, errors=exc.errors) from None
            self.access_token = str(body["access_token"])
            # refresh tokens rotate: the old one is spent, and presenting it again ends the session
            if body.get("refresh_token"):
                self.refresh_token = str(body["refresh_token"])
            return self.access_token

    def revoke(self, *, everywhere: bool = False) -> None:
        """End the session on the server (``everywhere``: every session of the user), then forget
        the tokens. A server that cannot be reached raises :class:`ServerUnavailable` and the
        tokens are kept, so the call can be repeated."""
        if self.access_token is None:
            self._forget(_LOGGED_OUT)
            return
        body: dict[str, Any] = {"all": True} if everywhere else {}
        if self.refresh_token and not everywhere:
            body["refresh_token"] = self.refresh_token
        try:
            self.request("POST", "/token/revoke", json=body)
        except AuthenticationError:
            pass  # the session had ended already: nothing left to revoke
        except ServerUnavailable as exc:
            raise ServerUnavailable(
                f"{exc.msg} The session was not revoked on the server and this client still "
                "holds it: call client.logout() again when the server answers.",
                errors=exc.errors,
            ) from None
        self._forget(_LOGGED_OUT)

    def _forget(self, why: str) -> None:
        with self._refresh_lock:
            self.access_token = self.refresh_token = None
            self._not_logged_in = why

    # -- requests -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        auth: bool = True,
    ) -> Any:
        """Send one request to ``/api<path>``; return the decoded JSON or raise the typed error."""
        if auth and self.access_token is None:
            raise AuthenticationError(self._not_logged_in)
        return self.rest.call(
            method,
            path,
            token=lambda: self.access_token if auth else None,
            refresh=self._refresher() if auth else None,
            params=params,
            json=json,
            send=self._send,
        )

    def download(self, path: str, dst: BinaryIO) -> int:
        """GET ``/api<path>`` as bytes into ``dst``, chunk by chunk; returns the bytes written.

        Examples
        --------
        >>> with open("result.bin", "wb") as fh:  # doctest: +SKIP
        ...     t.download("/run/7/result", fh)
        """
        if self.access_token is None:
            raise AuthenticationError(self._not_logged_in)

        def cannot_download(exc: OSError) -> None:
            raise ServerUnavailable(
                f"Cannot download {path} from {self.url}: {_START_HINT}."
            ) from None

        def broke_off(exc: OSError) -> None:
            raise ServerUnavailable(
                f"The download of {path} from {self.url} broke off; try again."
            ) from None

        return self.rest.download(
            path,
            dst,
            token=lambda: self.access_token,
            refresh=self._refresher(),
            on_failure=cannot_download,
            on_broken=broke_off,
        )

    def upload(self, path: str, file: Path, *, params: Mapping[str, Any] | None = None) -> Any:
        """POST ``file`` as the ``application/octet-stream`` body of ``/api<path>``, streamed
        from disk (never read into memory); returns the decoded JSON answer.

        Examples
        --------
        >>> t.upload("/task/input", Path("input.sealed"),
        ...          params={"collaboration_id": 1, "organization_id": 2})  # doctest: +SKIP
        {'input_upload': '5f0c...', 'size': 1048751, 'sealed': True, ...}
        """
        if self.access_token is None:
            raise AuthenticationError(self._not_logged_in)

        def once(token: str | None) -> Response:
            with open(file, "rb") as fh:  # sent in chunks, with its Content-Length
                return self.rest.send(
                    "POST",
                    path,
                    token=token,
                    params=params,
                    data=fh,
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=long_timeout(self.timeout),
                )

        resp = exchange(
            once,
            status=lambda r: r.status_code,
            token=lambda: self.access_token,
            refresh=self._refresher(),
            release=lambda r: r.close(),
            what=f"POST {path}",
        )
        return result(resp)

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint, following pages until ``total`` is reached."""
        return collect_pages(lambda query: self.request("GET", path, params=query), params)

    def _refresher(self) -> Callable[[str | None], str] | None:
        # a 401 is answered by one refresh only while a refresh token is held
        return self.refresh if self.refresh_token else None

    def _send(
        self, method: str, path: str, *, params: Any, json: Any, token: str | None
    ) -> Response:
        return self.rest.send(method, path, params=params, json=json, token=token)

    def _unreachable(self, exc: OSError) -> None:
        """The typed error for a request that got no answer (other failures propagate)."""
        if isinstance(exc, requests.exceptions.SSLError):
            raise ServerUnavailable(
                f"TLS verification of {self.url} failed ({exc}); pass verify=<CA bundle path> "
                "(or verify=False for a test server)."
            ) from None
        if isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
            raise ServerUnavailable(
                f"The server at {self.url} did not answer within {self.timeout:g} s; "
                "it may be overloaded: retry, or raise Client(..., timeout=...)."
            ) from None
        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
            raise ServerUnavailable(
                f"Cannot reach the server at {self.url}: {_START_HINT}."
            ) from None

    def close(self) -> None:
        """Close the pooled connections."""
        close = getattr(self.session, "close", None)
        if close is not None:
            close()
