"""The node's REST client: API-key login, token refresh, retries while the server is away.

A thin node-side use of the shared REST core (:mod:`vantage6nb.common.rest`), which owns the retry
policy, the one retry loop, URLs, the bearer header and the typed errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import requests

from vantage6nb.common.errors import AuthenticationError, ServerUnavailable, error_from_payload
from vantage6nb.common.rest import (
    UNTIL_STOPPED,
    PooledTransport,
    RestCore,
    RetryPolicy,
    Transport,
    backoff_delays,
    collect_pages,
    exchange,
    long_timeout,
    read_body,
    retrying,
)

__all__ = ["UNTIL_STOPPED", "RetryPolicy", "ServerClient", "backoff_delays", "node_transport"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = (502, 503, 504)
_TEXT_LIMIT = 500  # characters of a non-JSON answer kept

T = TypeVar("T")


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only: never route through an environment proxy
    return s


def _reconnected(exc: OSError) -> None:
    # a kept-alive connection the server had closed: no outage, the request goes out again
    log.debug("reconnecting: the server had closed an idle connection (%s)", exc)


def node_transport() -> PooledTransport:
    """The node's transport: one ``requests.Session`` per thread, ignoring environment proxies,
    whose idle keep-alive connections are never reused once the server may close them
    (:class:`~vantage6nb.common.rest.PooledTransport`).

    Examples
    --------
    >>> node_transport().idle_s
    15.0
    """
    return PooledTransport(_session, on_reconnect=_reconnected)


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
    transport
        Sends the requests (:class:`vantage6nb.common.rest.Transport`); by default
        :func:`node_transport`.

    Examples
    --------
    >>> client = ServerClient("http://127.0.0.1:7601", "key")
    >>> client.api("/run")
    'http://127.0.0.1:7601/api/run'
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        stop: threading.Event | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.node: dict[str, Any] = {}
        self._access: str | None = None
        self._refresh: str | None = None
        self._auth_lock = threading.Lock()
        self.rest = RestCore(
            self.url + "/api",
            transport or node_transport(),
            timeout=timeout,
            on_failure=self._unreachable,
            stop=self.stop,
        )

    def api(self, path: str) -> str:
        """Absolute URL of an API path."""
        return self.rest.url(path)

    def _unreachable(self, exc: OSError) -> None:
        raise ServerUnavailable(f"server {self.url} unreachable: {exc.__class__.__name__}") from exc

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
        resp = self.rest.send(method, path, token=token, json=json, params=params)
        return resp.status_code, read_body(resp, limit=_TEXT_LIMIT)

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
    def _as_node(
        self,
        once: Callable[[str | None], tuple[int, Any]],
        method: str,
        path: str,
        retries: int | None | RetryPolicy,
    ) -> Any:
        """Send ``once`` as the node: one token refresh on 401, retries while the server is away."""

        def on_retry(exc: Exception, delay: float) -> None:
            log.warning("%s; retrying %s %s in %.1f s", exc, method, path, delay)

        status, body = exchange(
            once,
            status=lambda answer: answer[0],
            token=lambda: self._access,
            refresh=lambda _stale: self.refresh(),
            unavailable=_RETRY_STATUSES,
            what=f"{method} {path}",
            policy=RetryPolicy.of(retries),
            stop=self.stop,
            on_retry=on_retry,
        )
        if 200 <= status < 300:
            return body
        raise error_from_payload(status, body)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retries: int | None | RetryPolicy = 3,
    ) -> Any:
        """A request as the node; refreshes an expired token, retries while the server is away.

        ``retries=None`` retries until :attr:`stop` is set (a :class:`RetryPolicy` also serves).
        Raises the typed error the server sent.
        """
        return self._as_node(
            lambda token: self.send(method, path, token=token, json=json, params=params),
            method,
            path,
            retries,
        )

    def put_file(self, path: str, file: Path, *, retries: int | None | RetryPolicy = 3) -> Any:
        """Stream ``file`` as the ``application/octet-stream`` body of a PUT, as the node.

        Retries like :meth:`request` (the whole file again: the server replaces a partial upload).
        """
        return self._as_node(lambda _token: self._put_once(path, file), "PUT", path, retries)

    def _put_once(self, path: str, file: Path) -> tuple[int, Any]:
        with file.open("rb") as fh:  # requests sends it in chunks, with Content-Length
            resp = self.rest.send(
                "PUT",
                path,
                token=self._access,
                data=fh,
                headers={"Content-Type": "application/octet-stream"},
                timeout=long_timeout(self.timeout),
            )
        return resp.status_code, read_body(resp, limit=_TEXT_LIMIT)

    def post_file(
        self, path: str, file: Path, *, token: str, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """POST ``file`` as an ``application/octet-stream`` body, streamed, with ``token`` (a
        container's: the proxy uploads a subtask's large input); returns ``(status, body)``."""
        with file.open("rb") as fh:  # requests sends it in chunks, with Content-Length
            resp = self.rest.send(
                "POST",
                path,
                token=token,
                params=params,
                data=fh,
                headers={"Content-Type": "application/octet-stream"},
                timeout=long_timeout(self.timeout),
            )
        return resp.status_code, read_body(resp, limit=_TEXT_LIMIT)

    def download(self, path: str, dst: BinaryIO, *, token: str | None = None) -> int:
        """GET ``path`` as bytes into ``dst``, chunk by chunk (``token``: e.g. a container's).

        Returns the bytes written; raises the typed error the server sent.
        """
        return self.rest.download(
            path, dst, token=lambda: token or self._access, error_from=300, error_empty=None
        )

    def report_columns(self, node_id: int, databases: list[dict[str, Any]] | None) -> None:
        """Put this node's column report (names and types per database label); None: have the
        server forget it (``report_columns: false``)."""
        path = f"/node/{node_id}/columns"
        if databases is None:
            self.request("DELETE", path)
        else:
            self.request("PUT", path, json={"databases": databases})

    def paged(
        self, path: str, params: dict[str, Any], *, retries: int | None | RetryPolicy = 3
    ) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint."""
        return collect_pages(
            lambda query: self.request("GET", path, params=query, retries=retries), params
        )

    def until_ok(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` until it stops raising ServerUnavailable (or the node stops)."""

        def on_retry(exc: Exception, delay: float) -> None:
            log.warning(
                "%s: %s; retrying in %.1f s (is the server running, and is `server_url` "
                "in node.yaml right?)",
                what,
                exc,
                delay,
            )

        return retrying(fn, UNTIL_STOPPED, stop=self.stop, on_retry=on_retry)
