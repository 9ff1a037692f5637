"""The one REST core every HTTP client uses: URLs, bearer header, typed errors, refresh, retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter, methodcaller
from typing import Any, BinaryIO, Protocol, TypeVar

from .errors import ServerUnavailable, V6Error, error_from_payload

__all__ = [
    "IDLE_CONNECTION_S",
    "NO_RETRIES",
    "PAGE_SIZE",
    "UNTIL_STOPPED",
    "PooledTransport",
    "Response",
    "RestCore",
    "RetryPolicy",
    "Transport",
    "backoff_delays",
    "bearer",
    "collect_pages",
    "exchange",
    "join_url",
    "long_timeout",
    "read_body",
    "result",
    "retrying",
    "stale_connection",
]

T = TypeVar("T")
R = TypeVar("R")

#: items asked for per page of a list endpoint (the server's maximum)
PAGE_SIZE = 500
DOWNLOAD_CHUNK = 1024 * 1024

Timeout = float | tuple[float, float] | None
#: turns a transport failure into the typed error (by raising it); returning lets it propagate
OnFailure = Callable[[OSError], None]


class Response(Protocol):
    """What a transport answers: the part of ``requests.Response`` the clients read."""

    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def json(self) -> Any: ...

    def iter_content(self, chunk_size: int) -> Iterable[bytes]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Sends one HTTP request, as ``requests.Session.request`` does: the core itself does no I/O.

    A ``requests.Session`` needs no adapter; ``vantage6nb.testing.FlaskTransport`` sends to a Flask
    app in this process. A failure is any ``OSError`` (``requests``' exceptions derive from it),
    so the core never imports requests.
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = ...,
        json: Any = ...,
        params: Mapping[str, Any] | None = ...,
        data: Any = ...,
        timeout: Timeout = ...,
        stream: bool = ...,
    ) -> Response: ...


# -- pooled connections -----------------------------------------------------------------------------
#: seconds a pooled keep-alive connection may sit idle before it is dropped rather than reused:
#: under the server's keep-alive timeout (gunicorn's 30 s here; nginx 75 s), so a request never
#: goes out on a connection the server is closing at that very moment
IDLE_CONNECTION_S = 15.0

_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def stale_connection(exc: BaseException) -> bool:
    """Whether a transport failure is a kept-alive connection the server had closed (reset, broken
    pipe, closed without an answer), rather than a server that cannot be reached (refused,
    timed out, unknown host).

    ``requests`` wraps the socket's error (``ConnectionError(ProtocolError('Connection aborted.',
    RemoteDisconnected(...)))``); the causes and arguments are searched for it.

    Examples
    --------
    >>> import http.client
    >>> stale_connection(OSError("Connection aborted.", http.client.RemoteDisconnected("closed")))
    True
    >>> stale_connection(OSError("Max retries", ConnectionRefusedError(111, "refused")))
    False
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, (ConnectionRefusedError, TimeoutError)):
            return False
        if isinstance(err, _STALE):
            return True
        todo += [
            a for a in (*err.args, err.__cause__, err.__context__) if isinstance(a, BaseException)
        ]
    return False


class PooledTransport:
    """A :class:`Transport` over one session per thread (a ``requests.Session`` is not
    thread-safe) whose kept-alive connections never go stale under a request.

    A server closes a keep-alive connection that sat idle for its timeout; a request sent on it at
    that moment fails with a reset, which is no outage. So a thread's pooled connections idle for
    more than ``idle_s`` are dropped before its next request, and a request that fails on a reused
    connection as :func:`stale_connection` says is sent once more, at once, on a new connection
    (``on_reconnect`` is told). Only that second failure is the caller's: a server that is down
    refuses the new connection, and its retries and warnings go on as before.

    Parameters
    ----------
    new_session
        Makes a thread's session (``requests.Session`` or alike: ``request`` and ``close``).
    idle_s
        How long a pooled connection may idle before it is not reused.
    on_reconnect
        Called with the failure before the request is sent again.

    Examples
    --------
    >>> import requests  # doctest: +SKIP
    >>> transport = PooledTransport(requests.Session)  # doctest: +SKIP
    >>> RestCore("http://127.0.0.1:7601/api", transport).call("GET", "/health")  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(
        self,
        new_session: Callable[[], Any],
        *,
        idle_s: float = IDLE_CONNECTION_S,
        on_reconnect: Callable[[OSError], None] | None = None,
    ) -> None:
        self.new_session = new_session
        self.idle_s = idle_s
        self.on_reconnect = on_reconnect
        self._local = threading.local()

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        local = self._local
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = self.new_session()
            local.last = None
        elif local.last is not None and time.monotonic() - local.last >= self.idle_s:
            session.close()  # drops its pooled connections; the session stays usable
            local.last = None
        reused = local.last is not None
        body: Any = kwargs.get("data")
        start = body.tell() if hasattr(body, "tell") and hasattr(body, "seek") else None
        try:
            return session.request(method, url, **kwargs)  # type: ignore[no-any-return]
        except OSError as exc:
            replayable = body is None or isinstance(body, bytes | str) or start is not None
            if not (reused and replayable and stale_connection(exc)):
                raise
            if self.on_reconnect is not None:
                self.on_reconnect(exc)
            session.close()
            if start is not None:
                body.seek(start)
            return session.request(method, url, **kwargs)  # type: ignore[no-any-return]
        finally:
            local.last = time.monotonic()


# -- retries --------------------------------------------------------------------------------------
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
    """How a call is retried while the server is away (it raised :class:`ServerUnavailable`).

    Parameters
    ----------
    retries
        Retries after the first try; ``None`` retries until the caller's ``stop`` is set.
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
NO_RETRIES = RetryPolicy(retries=0)


def retrying(
    call: Callable[[], T],
    policy: RetryPolicy = NO_RETRIES,
    *,
    stop: threading.Event | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T:
    """The one retry loop: ``call`` again while it raises ServerUnavailable, as ``policy`` says.

    Re-raises when the policy gives up or ``stop`` is set (also during a wait).

    Examples
    --------
    >>> answers = [ServerUnavailable("down"), "ok"]
    >>> def call():
    ...     answer = answers.pop(0)
    ...     if isinstance(answer, Exception):
    ...         raise answer
    ...     return answer
    >>> retrying(call, RetryPolicy(retries=1, first_delay=0.0))
    'ok'
    """
    stop = stop if stop is not None else threading.Event()
    delays = policy.delays()
    failures = 0
    while True:
        try:
            return call()
        except ServerUnavailable as exc:
            failures += 1
            if stop.is_set() or policy.gives_up(failures):
                raise
            delay = next(delays)
            if on_retry is not None:
                on_retry(exc, delay)
            if stop.wait(delay):
                raise


def exchange(
    once: Callable[[str | None], R],
    *,
    status: Callable[[R], int],
    token: Callable[[], str | None] = lambda: None,
    refresh: Callable[[str | None], str] | None = None,
    release: Callable[[R], None] | None = None,
    unavailable: Collection[int] = (),
    what: str = "",
    policy: RetryPolicy = NO_RETRIES,
    stop: threading.Event | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> R:
    """One call: ``once(token())``, again with ``refresh(token)`` on the first 401, retried by ``policy``.

    At most one refresh per call, across retries. An answer with a status in ``unavailable``
    (e.g. 502/503/504) raises :class:`ServerUnavailable` ("server answered 503 for ``what``"),
    so it is retried like a transport failure. ``release`` frees an answer that is not returned.

    Examples
    --------
    >>> answers = {"old": (401, None), "new": (200, "data")}
    >>> exchange(answers.get, status=lambda a: a[0], token=lambda: "old", refresh=lambda t: "new")
    (200, 'data')
    """
    refreshed = False

    def attempt() -> R:
        nonlocal refreshed
        sent = token()
        answer = once(sent)
        if status(answer) == 401 and refresh is not None and not refreshed:
            refreshed = True
            if release is not None:
                release(answer)
            answer = once(refresh(sent))
        code = status(answer)
        if code in unavailable:
            if release is not None:
                release(answer)
            raise ServerUnavailable(f"server answered {code} for {what}")
        return answer

    return retrying(attempt, policy, stop=stop, on_retry=on_retry)


# -- requests and answers ---------------------------------------------------------------------------
def join_url(base: str, path: str) -> str:
    """``base`` and an API ``path`` with one slash between.

    Examples
    --------
    >>> join_url("http://127.0.0.1:7601/api/", "/run"), join_url("http://h/api", "run")
    ('http://127.0.0.1:7601/api/run', 'http://h/api/run')
    """
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token`` (none without a token).

    Examples
    --------
    >>> bearer("abc"), bearer(None)
    ({'Authorization': 'Bearer abc'}, {})
    """
    return {"Authorization": f"Bearer {token}"} if token else {}


def long_timeout(timeout: float) -> tuple[float, float]:
    """Connect within ``timeout``; give a large body ten minutes to be written and stored."""
    return (timeout, max(timeout, 600.0))


def read_body(resp: Response, *, empty: Any = None, limit: int | None = None) -> Any:
    """The decoded JSON of ``resp``, else its text (its first ``limit`` characters); ``empty`` if none."""
    if not resp.content:
        return empty
    try:
        return resp.json()
    except ValueError:
        text = getattr(resp, "text", None)
        if not isinstance(text, str):
            text = resp.content.decode("utf-8", "replace")
        return text if limit is None else text[:limit]


def result(resp: Response, *, empty: Any = None) -> Any:
    """The body of a successful answer (``empty`` for none), or the typed error it carries (raised)."""
    if resp.status_code >= 400:
        raise _error_of(resp)
    return read_body(resp, empty=empty)


def _error_of(resp: Response, *, empty: Any = "") -> V6Error:
    return error_from_payload(resp.status_code, read_body(resp, empty=empty))


def collect_pages(
    get: Callable[[dict[str, Any]], Any], params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every item of a paginated list endpoint: ``get(query)`` page by page until ``total``.

    Parameters left ``None`` are not sent.

    Examples
    --------
    >>> pages = {1: {"data": [1, 2], "total": 3}, 2: {"data": [3], "total": 3}}
    >>> collect_pages(lambda q: pages[q["page"]], {"task_id": 4, "status": None})
    [1, 2, 3]
    """
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        query.update(page=page, per_page=PAGE_SIZE)
        body = get(query)
        data = body.get("data", []) if isinstance(body, dict) else list(body or [])
        items.extend(data)
        total = body.get("total") if isinstance(body, dict) else None
        if not data or total is None or len(items) >= int(total):
            return items
        page += 1


_status: Callable[[Response], int] = attrgetter("status_code")
_close: Callable[[Response], None] = methodcaller("close")


class RestCore:
    """One server API (``base_url``) over one transport, as every client of it talks to it.

    Parameters
    ----------
    base_url
        Where the API paths start, e.g. ``http://127.0.0.1:7601/api``.
    transport
        Sends the requests (:class:`Transport`), e.g. a ``requests.Session``.
    timeout
        Seconds per request.
    on_failure
        Raises the client's typed error for a transport failure (``OSError``); when it returns,
        the failure propagates as it is.
    retry, stop, on_retry
        The default :class:`RetryPolicy` of :meth:`call`, what ends endless retries, and what
        to say before each wait.

    Examples
    --------
    >>> import requests  # doctest: +SKIP
    >>> RestCore("http://127.0.0.1:7601/api", requests.Session()).call("GET", "/health")  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(
        self,
        base_url: str,
        transport: Transport,
        *,
        timeout: float = 30.0,
        on_failure: OnFailure | None = None,
        retry: RetryPolicy = NO_RETRIES,
        stop: threading.Event | None = None,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.timeout = timeout
        self.on_failure = on_failure
        self.retry = retry
        self.stop = stop if stop is not None else threading.Event()
        self.on_retry = on_retry

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return join_url(self.base_url, path)

    def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout = None,
        stream: bool = False,
        on_failure: OnFailure | None = None,
    ) -> Response:
        """Send one request; a transport failure goes to ``on_failure`` (default: the core's)."""
        try:
            return self.transport.request(
                method,
                self.url(path),
                headers={**bearer(token), **(headers or {})},
                json=json,
                params=params,
                data=data,
                timeout=self.timeout if timeout is None else timeout,
                stream=stream,
            )
        except OSError as exc:
            _fail(exc, on_failure or self.on_failure)
            raise

    def call(
        self,
        method: str,
        path: str,
        *,
        token: Callable[[], str | None] = lambda: None,
        refresh: Callable[[str | None], str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        empty: Any = None,
        send: Callable[..., Response] | None = None,
    ) -> Any:
        """A request answered with its decoded body, or the typed error (raised); see :func:`exchange`.

        ``send`` replaces :meth:`send` (same keywords), e.g. for a client's own hook.
        """
        send = send or self.send
        resp = exchange(
            lambda t: send(method, path, params=params, json=json, token=t),
            status=_status,
            token=token,
            refresh=refresh,
            release=_close,
            what=f"{method} {path}",
            policy=self.retry,
            stop=self.stop,
            on_retry=self.on_retry,
        )
        return result(resp, empty=empty)

    def download(
        self,
        path: str,
        dst: BinaryIO,
        *,
        token: Callable[[], str | None],
        refresh: Callable[[str | None], str] | None = None,
        on_failure: OnFailure | None = None,
        on_broken: OnFailure | None = None,
        error_from: int = 400,
        error_empty: Any = "",
    ) -> int:
        """GET ``path`` as bytes into ``dst``, chunk by chunk; returns the bytes written.

        ``on_failure`` words a failure to connect, ``on_broken`` one mid-body (both default to
        the core's); an answer from status ``error_from`` on raises the typed error it carries
        (``error_empty`` standing for an empty body).
        """
        resp = exchange(
            lambda t: self.send(
                "GET",
                path,
                token=t,
                stream=True,
                timeout=long_timeout(self.timeout),
                on_failure=on_failure,
            ),
            status=_status,
            token=token,
            refresh=refresh,
            release=_close,
        )
        try:
            if resp.status_code >= error_from:
                raise _error_of(resp, empty=error_empty)
            return _copy_body(resp, dst, on_failure=on_broken or on_failure or self.on_failure)
        finally:
            resp.close()


def _copy_body(resp: Response, dst: BinaryIO, *, on_failure: OnFailure | None) -> int:
    # only a failure reading the answer goes to on_failure; one writing dst (disk full) propagates
    chunks = iter(resp.iter_content(DOWNLOAD_CHUNK))
    written = 0
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return written
        except OSError as exc:
            _fail(exc, on_failure)
            raise
        dst.write(chunk)
        written += len(chunk)


def _fail(exc: OSError, on_failure: OnFailure | None) -> None:
    if on_failure is not None:
        on_failure(exc)
