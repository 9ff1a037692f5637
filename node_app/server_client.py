"""The node's REST client: API-key login, token refresh, retries while the server is away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import requests

from vantage6nb.common.errors import (
    AuthenticationError,
    ServerUnavailable,
    error_from_payload,
)

__all__ = ["UNTIL_STOPPED", "RetryPolicy", "ServerClient", "backoff_delays"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = (502, 503, 504)
_DOWNLOAD_CHUNK = 1024 * 1024

T = TypeVar("T")


def _json_or_text(resp: requests.Response) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return resp.text[:500]


def backoff_delays(first: float = 0.2, cap: float = 5.0) -> Iterator[float]:
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


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried while the server is away (unreachable, or answering 502/503/504).

    Parameters
    ----------
    retries
        Retries after the first try; ``None`` retries until the client's ``stop`` is set.
    first_delay, max_delay
        The backoff: ``first_delay`` seconds, doubling, capped at ``max_delay``.

    Examples
    --------
    >>> RetryPolicy(retries=2).gives_up(3), UNTIL_STOPPED.gives_up(1000)
    (True, False)
    >>> RetryPolicy.of(None) == UNTIL_STOPPED, RetryPolicy.of(5).retries
    (True, 5)
    """

    retries: int | None = 3
    first_delay: float = 0.2
    max_delay: float = 5.0

    @classmethod
    def of(cls, retries: int | None | RetryPolicy) -> RetryPolicy:
        """The policy a ``retries=`` argument names: a count, ``None`` (until stopped) or a policy."""
        return retries if isinstance(retries, RetryPolicy) else cls(retries=retries)

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failed tries in a row are too many to try again."""
        return self.retries is not None and failures > self.retries

    def delays(self) -> Iterator[float]:
        """The waits between tries."""
        return backoff_delays(self.first_delay, self.max_delay)


UNTIL_STOPPED = RetryPolicy(retries=None)


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
        return resp.status_code, _json_or_text(resp)

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

    # -- retrying -----------------------------------------------------------------------------------
    def _retrying(
        self,
        call: Callable[[], T],
        policy: RetryPolicy,
        on_retry: Callable[[Exception, float], None],
    ) -> T:
        """The one retry loop: ``call`` again while it raises ServerUnavailable, as ``policy`` says.

        Stops retrying (re-raising) when :attr:`stop` is set, also during a wait.
        """
        delays = policy.delays()
        failures = 0
        while True:
            try:
                return call()
            except ServerUnavailable as exc:
                failures += 1
                if self.stop.is_set() or policy.gives_up(failures):
                    raise
                delay = next(delays)
                on_retry(exc, delay)
                if self.stop.wait(delay):
                    raise

    def _as_node(
        self,
        once: Callable[[], tuple[int, Any]],
        method: str,
        path: str,
        retries: int | None | RetryPolicy,
    ) -> Any:
        """Send ``once`` as the node: one token refresh on 401, retries while the server is away."""
        refreshed = False

        def attempt() -> tuple[int, Any]:
            nonlocal refreshed
            while True:
                status, body = once()
                if status == 401 and not refreshed:
                    refreshed = True
                    self.refresh()
                    continue
                if status in _RETRY_STATUSES:
                    raise ServerUnavailable(f"server answered {status} for {method} {path}")
                return status, body

        def on_retry(exc: Exception, delay: float) -> None:
            log.warning("%s; retrying %s %s in %.1f s", exc, method, path, delay)

        status, body = self._retrying(attempt, RetryPolicy.of(retries), on_retry)
        if 200 <= status < 300:
            return body
        raise error_from_payload(status, body)

    # -- requests as the node ----------------------------------------------------------------------
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
            lambda: self.send(method, path, token=self._access, json=json, params=params),
            method,
            path,
            retries,
        )

    def put_file(self, path: str, file: Path, *, retries: int | None | RetryPolicy = 3) -> Any:
        """Stream ``file`` as the ``application/octet-stream`` body of a PUT, as the node.

        Retries like :meth:`request` (the whole file again: the server replaces a partial upload).
        """
        return self._as_node(lambda: self._put_once(path, file), "PUT", path, retries)

    def _put_once(self, path: str, file: Path) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self._access}",
            "Content-Type": "application/octet-stream",
        }
        try:
            with file.open("rb") as fh:  # requests sends it in chunks, with Content-Length
                resp = self._session.put(
                    self.api(path), data=fh, headers=headers, timeout=self._long_timeout
                )
        except requests.RequestException as exc:
            raise ServerUnavailable(
                f"server {self.url} unreachable: {exc.__class__.__name__}"
            ) from exc
        return resp.status_code, _json_or_text(resp)

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
        self, path: str, params: dict[str, Any], *, retries: int | None | RetryPolicy = 3
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

        return self._retrying(fn, UNTIL_STOPPED, on_retry)
