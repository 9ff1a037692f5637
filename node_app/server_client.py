"""The node's REST client: API-key login, token refresh, retries while the server is away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import requests

from vantage6nb.common.errors import (
    AuthenticationError,
    ServerUnavailable,
    error_from_payload,
)

__all__ = ["ServerClient", "backoff_delays"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = (502, 503, 504)
_DOWNLOAD_CHUNK = 1024 * 1024


def _json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return resp.text[:500]


def backoff_delays(first: float = 0.2, cap: float = 5.0):
    """Endless delays for retries: ``first``, doubling, capped at ``cap``.

    Examples
    --------
    >>> from itertools import islice
    >>> list(islice(backoff_delays(0.5, 2.0), 4))
    [0.5, 1.0, 2.0, 2.0]
    """
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


class ServerClient:
    """Talks to the server's ``/api`` as a node (or, with ``token=``, as a container).

    Parameters
    ----------
    url
        The server URL, e.g. ``http://127.0.0.1:7601``.
    api_key
        The node's API key.
    timeout
        Seconds per HTTP request.
    stop
        Set it to end endless retries (node shutdown).

    Examples
    --------
    >>> client = ServerClient("http://127.0.0.1:7601", "key")
    >>> client.api("/run")
    'http://127.0.0.1:7601/api/run'
    """

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, stop: threading.Event | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.node: dict[str, Any] = {}
        self._access: str | None = None
        self._refresh: str | None = None
        self._auth_lock = threading.Lock()
        self._local = threading.local()

    def api(self, path: str) -> str:
        """Absolute URL of an API path."""
        return f"{self.url}/api/{path.lstrip('/')}"

    @property
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False  # loopback only: never route through an environment proxy
        return s

    # -- raw HTTP --------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request; returns ``(status, body)``. Raises ServerUnavailable on connection errors."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            resp = self._session.request(
                method,
                self.api(path),
                json=json,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ServerUnavailable(
                f"server {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text[:500]
        return resp.status_code, body

    # -- authentication --------------------------------------------------------------------------
    def login(self) -> dict[str, Any]:
        """Log in with the API key; returns the node record (``id``, ``organization_id`` ...)."""
        status, body = self.send("POST", "/token/node", token=None, json={"api_key": self.api_key})
        if status != 200:
            err = error_from_payload(status, body)
            if isinstance(err, AuthenticationError):
                raise AuthenticationError(
                    f"the server refused this node's API key ({err.msg}); check `api_key` in node.yaml"
                )
            raise err
        with self._auth_lock:
            self._access, self._refresh = body["access_token"], body.get("refresh_token")
            self.node = dict(body.get("node") or {})
        return self.node

    def refresh(self) -> str:
        """A new access token (refresh token, else a fresh login)."""
        with self._auth_lock:
            refresh = self._refresh
        if refresh:
            status, body = self.send(
                "POST", "/token/refresh", token=None, json={"refresh_token": refresh}
            )
            if status == 200 and isinstance(body, dict) and body.get("access_token"):
                with self._auth_lock:
                    self._access = body["access_token"]
                return self._access
        self.login()
        assert self._access is not None
        return self._access

    @property
    def access_token(self) -> str | None:
        return self._access

    # -- requests as the node ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retries: int | None = 3,
    ) -> Any:
        """A request as the node; refreshes an expired token, retries while the server is away.

        ``retries=None`` retries until :attr:`stop` is set. Raises the typed error the server sent.
        """
        delays = backoff_delays()
        attempt = 0
        refreshed = False
        while True:
            try:
                status, body = self.send(method, path, token=self._access, json=json, params=params)
                if status == 401 and not refreshed:
                    refreshed = True
                    self.refresh()
                    continue
                if status in _RETRY_STATUSES:
                    raise ServerUnavailable(f"server answered {status} for {method} {path}")
            except ServerUnavailable as exc:
                attempt += 1
                if self.stop.is_set() or (retries is not None and attempt > retries):
                    raise
                delay = next(delays)
                log.warning("%s; retrying %s %s in %.1f s", exc, method, path, delay)
                if self.stop.wait(delay):
                    raise
                continue
            if 200 <= status < 300:
                return body
            raise error_from_payload(status, body)

    def put_file(self, path: str, file: Path, *, retries: int | None = 3) -> Any:
        """Stream ``file`` as the ``application/octet-stream`` body of a PUT, as the node.

        Retries like :meth:`request` (the whole file again: the server replaces a partial upload).
        """
        delays = backoff_delays()
        attempt = 0
        refreshed = False
        while True:
            try:
                resp = self._put_once(path, file)
                if resp.status_code == 401 and not refreshed:
                    refreshed = True
                    self.refresh()
                    continue
                if resp.status_code in _RETRY_STATUSES:
                    raise ServerUnavailable(f"server answered {resp.status_code} for PUT {path}")
            except ServerUnavailable as exc:
                attempt += 1
                if self.stop.is_set() or (retries is not None and attempt > retries):
                    raise
                delay = next(delays)
                log.warning("%s; retrying PUT %s in %.1f s", exc, path, delay)
                if self.stop.wait(delay):
                    raise
                continue
            body = _json_or_text(resp)
            if 200 <= resp.status_code < 300:
                return body
            raise error_from_payload(resp.status_code, body)

    def _put_once(self, path: str, file: Path) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._access}",
            "Content-Type": "application/octet-stream",
        }
        try:
            with file.open("rb") as fh:  # requests sends it in chunks, with Content-Length
                return self._session.put(
                    self.api(path), data=fh, headers=headers, timeout=self._long_timeout
                )
        except requests.RequestException as exc:
            raise ServerUnavailable(
                f"server {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc

    def download(self, path: str, dst: BinaryIO, *, token: str | None = None) -> int:
        """GET ``path`` as bytes into ``dst``, chunk by chunk (``token``: e.g. a container's).

        Returns the bytes written; raises the typed error the server sent.
        """
        headers = {"Authorization": f"Bearer {token or self._access}"}
        try:
            with self._session.get(
                self.api(path), headers=headers, stream=True, timeout=self._long_timeout
            ) as resp:
                if resp.status_code >= 300:
                    raise error_from_payload(resp.status_code, _json_or_text(resp))
                written = 0
                for chunk in resp.iter_content(_DOWNLOAD_CHUNK):
                    dst.write(chunk)
                    written += len(chunk)
                return written
        except requests.RequestException as exc:
            raise ServerUnavailable(
                f"server {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc

    @property
    def _long_timeout(self) -> tuple[float, float]:
        # connect quickly; allow a large body time to be written and stored before the answer
        return (self.timeout, max(self.timeout, 600.0))

    def paged(
        self, path: str, params: dict[str, Any], *, retries: int | None = 3
    ) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.request(
                "GET", path, params={**params, "page": page, "per_page": 500}, retries=retries
            )
            data = body.get("data", []) if isinstance(body, dict) else []
            items.extend(data)
            total = body.get("total", len(items)) if isinstance(body, dict) else len(items)
            if not data or len(items) >= total:
                return items
            page += 1

    def until_ok(self, fn: Callable[[], Any], what: str) -> Any:
        """Call ``fn`` until it stops raising ServerUnavailable (or the node stops)."""
        delays = backoff_delays()
        while True:
            try:
                return fn()
            except ServerUnavailable as exc:
                if self.stop.is_set():
                    raise
                delay = next(delays)
                log.warning(
                    "%s: %s; retrying in %.1f s (is the server running, and is `server_url` "
                    "in node.yaml right?)",
                    what,
                    exc,
                    delay,
                )
                if self.stop.wait(delay):
                    raise
