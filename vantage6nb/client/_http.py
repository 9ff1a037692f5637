"""HTTP transport to the server: base URL, bearer tokens with transparent refresh, typed errors."""

from __future__ import annotations

import threading
from typing import Any, BinaryIO

import requests

from ..common.errors import (
    AuthenticationError,
    ServerUnavailable,
    ValidationError,
    error_from_payload,
)

__all__ = ["Transport"]

_START_HINT = "is the server running? start it with `v6nb server start` or `v6nb demo`"
_MAX_PER_PAGE = 500
_DOWNLOAD_CHUNK = 1024 * 1024


class Transport:
    """One ``requests.Session`` to one server, holding the researcher's tokens.

    A request answered 401 while a refresh token is held is retried once with a fresh access
    token, so a long notebook session never sees an expired token.

    Examples
    --------
    >>> t = Transport("http://127.0.0.1:7601", timeout=5.0)  # doctest: +SKIP
    >>> t.request("GET", "/health")  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(self, url: str, *, timeout: float = 30.0, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ValidationError(
                f"Server URL must start with http:// or https://, got {url!r}; "
                "e.g. Client('http://127.0.0.1:7601').",
                errors={"url": "expected http:// or https://"},
            )
        self.api = self.url + "/api"
        self.timeout = timeout
        self.verify = verify
        self.session = requests.Session()
        self.session.verify = verify
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self._refresh_lock = threading.Lock()

    # -- tokens ---------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> dict[str, Any]:
        """Exchange a username and password for tokens; returns the server's user object."""
        try:
            body = self.request(
                "POST",
                "/token/user",
                json={"username": username, "password": password},
                auth=False,
            )
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"Login failed for user '{username}': wrong username or password ({exc.msg}).",
                errors=exc.errors,
            ) from None
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token")
        return dict(body.get("user") or {})

    def refresh(self, stale: str | None = None) -> str:
        """Get a new access token with the refresh token; returns it.

        ``stale`` is the token the caller saw fail: when another thread already replaced it, that
        newer token is returned without asking the server again.
        """
        with self._refresh_lock:
            if stale is not None and self.access_token not in (None, stale):
                return self.access_token
            if not self.refresh_token:
                raise AuthenticationError(
                    "Not logged in: call client.login(username, password) first."
                )
            try:
                body = self.request(
                    "POST", "/token/refresh", json={"refresh_token": self.refresh_token}, auth=False
                )
            except AuthenticationError as exc:
                self.access_token = None
                raise AuthenticationError(
                    f"Your session has expired ({exc.msg}): log in again with client.login(...)."
                ) from None
            self.access_token = str(body["access_token"])
            return self.access_token

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
        token = self.access_token
        if auth and token is None:
            raise AuthenticationError("Not logged in: call client.login(username, password) first.")
        resp = self._send(method, path, params=params, json=json, token=token if auth else None)
        if resp.status_code == 401 and auth and self.refresh_token:
            token = self.refresh(stale=token)
            resp = self._send(method, path, params=params, json=json, token=token)
        if resp.status_code >= 400:
            raise error_from_payload(resp.status_code, _payload(resp))
        if not resp.content:
            return None
        return _payload(resp)

    def download(self, path: str, dst: BinaryIO) -> int:
        """GET ``/api<path>`` as bytes into ``dst``, chunk by chunk; returns the bytes written.

        Examples
        --------
        >>> with open("result.bin", "wb") as fh:  # doctest: +SKIP
        ...     t.download("/run/7/result", fh)
        """
        for attempt in (0, 1):
            token = self.access_token
            if token is None:
                raise AuthenticationError(
                    "Not logged in: call client.login(username, password) first."
                )
            try:
                resp = self.session.get(
                    self.api + path,
                    headers={"Authorization": f"Bearer {token}"},
                    stream=True,
                    timeout=(self.timeout, max(self.timeout, 600.0)),
                )
            except requests.exceptions.RequestException:
                raise ServerUnavailable(
                    f"Cannot download {path} from {self.url}: {_START_HINT}."
                ) from None
            with resp:
                if resp.status_code == 401 and attempt == 0 and self.refresh_token:
                    self.refresh(stale=token)
                    continue
                if resp.status_code >= 400:
                    raise error_from_payload(resp.status_code, _payload(resp))
                written = 0
                try:
                    for chunk in resp.iter_content(_DOWNLOAD_CHUNK):
                        dst.write(chunk)
                        written += len(chunk)
                except requests.exceptions.RequestException:
                    raise ServerUnavailable(
                        f"The download of {path} from {self.url} broke off; try again."
                    ) from None
                return written
        raise AuthenticationError("Your session has expired: log in again with client.login(...).")

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint, following pages until ``total`` is reached."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            query = {k: v for k, v in (params or {}).items() if v is not None}
            query.update(page=page, per_page=_MAX_PER_PAGE)
            body = self.request("GET", path, params=query)
            data = body.get("data", []) if isinstance(body, dict) else list(body or [])
            items.extend(data)
            total = body.get("total") if isinstance(body, dict) else None
            if not data or total is None or len(items) >= int(total):
                return items
            page += 1

    def _send(
        self, method: str, path: str, *, params: Any, json: Any, token: str | None
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return self.session.request(
                method,
                self.api + path,
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.exceptions.SSLError as exc:
            raise ServerUnavailable(
                f"TLS verification of {self.url} failed ({exc}); pass verify=<CA bundle path> "
                "(or verify=False for a test server)."
            ) from None
        except requests.exceptions.Timeout:
            raise ServerUnavailable(
                f"The server at {self.url} did not answer within {self.timeout:g} s; "
                "it may be overloaded: retry, or raise Client(..., timeout=...)."
            ) from None
        except requests.exceptions.ConnectionError:
            raise ServerUnavailable(
                f"Cannot reach the server at {self.url}: {_START_HINT}."
            ) from None

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


def _payload(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text
