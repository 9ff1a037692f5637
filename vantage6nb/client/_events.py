"""One socket.io connection per Client, with a small subscription API for tasks and widgets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import socketio

__all__ = ["CONNECTED", "DISCONNECTED", "RECONNECTED", "EventStream"]

log = logging.getLogger(__name__)

# Synthetic, local events (never sent by the server): subscribers re-fetch state on RECONNECTED,
# because events emitted while the connection was down are lost.
CONNECTED = "connected"
RECONNECTED = "reconnected"
DISCONNECTED = "disconnected"

Callback = Callable[[Any], object]


class EventStream:
    """Server events for one researcher, pushed over socket.io.

    The connection is opened lazily, on the first :meth:`on` (or :meth:`connect`), authenticates
    with the client's current access token, reconnects by itself and re-authenticates with a
    fresh token. Callbacks run in the socket.io thread: keep them short; an exception in one is
    logged and never breaks the connection or the other callbacks.

    Examples
    --------
    >>> unsubscribe = client.events.on("run_status", lambda ev: print(ev["status"]))  # doctest: +SKIP
    >>> client.events.connected  # doctest: +SKIP
    True
    >>> unsubscribe()  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        token: Callable[[], str | None],
        refresh: Callable[[], str],
        *,
        verify: bool | str = True,
        connect_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._token = token
        self._refresh = refresh
        self._verify = verify
        self._connect_timeout = connect_timeout
        self._callbacks: dict[str, list[Callback]] = {}
        self._cb_lock = threading.Lock()  # guards _callbacks; taken in the socket.io thread
        self._conn_lock = threading.Lock()  # serialises connect/close; never taken by handlers
        self._sio: socketio.Client | None = None
        self._ever_connected = False
        self._up = False
        self.generation = 0  # counts connections: equal values mean no event was missed between
        self._auth_failed = False
        self.last_error: str | None = None

    # -- subscriptions --------------------------------------------------------------------------
    def on(self, event: str, callback: Callback, *, connect: bool = True) -> Callable[[], None]:
        """Call ``callback(payload)`` for every ``event``; returns a function that unsubscribes.

        ``event`` is a server event name (:mod:`vantage6nb.common.events`), ``"*"`` for every
        event (the callback then gets ``(name, payload)``), or one of the local events
        ``"connected"``, ``"reconnected"``, ``"disconnected"``.
        """
        with self._cb_lock:
            self._callbacks.setdefault(event, []).append(callback)
        if connect:
            self.ensure_connected()

        def unsubscribe() -> None:
            with self._cb_lock:
                handlers = self._callbacks.get(event, [])
                if callback in handlers:
                    handlers.remove(callback)

        return unsubscribe

    @property
    def connected(self) -> bool:
        """True while the socket.io connection is up."""
        # Our own flag: python-socketio sets Client.connected only after the connect handlers ran,
        # and subscribers to "connected"/"reconnected" must already see True.
        return self._up and self._sio is not None

    # -- connection -----------------------------------------------------------------------------
    def ensure_connected(self) -> bool:
        """Connect when not connected (and not already reconnecting); returns :attr:`connected`.

        A failure is logged and kept in :attr:`last_error`, never raised: waiters fall back to
        their slow safety re-fetch.
        """
        with self._conn_lock:
            if self.connected:
                return True
            if self._sio is not None and self._reconnecting():
                return False
            if self._token() is None:
                self.last_error = "not logged in"
                return False
            for attempt in (1, 2):  # a refused token is refreshed, then tried once more
                self._sio, self.last_error = self._make_client(), None
                try:
                    self._sio.connect(
                        self._url,
                        auth=self._auth,
                        transports=["websocket"],
                        socketio_path="socket.io",
                        wait_timeout=self._connect_timeout,
                    )
                    return self.connected
                except socketio.exceptions.ConnectionError as exc:
                    self.last_error = self.last_error or str(exc) or type(exc).__name__
                    try:  # a half-open client cannot connect again: start afresh next time
                        self._sio.disconnect()
                    except Exception:  # noqa: BLE001 - best effort cleanup
                        pass
                    self._sio, self._up = None, False
                    if not (attempt == 1 and self._auth_failed):
                        break
            log.warning("socket.io connection to %s failed: %s", self._url, self.last_error)
            return False

    def connect(self) -> bool:
        """Open the connection now (instead of on first use); returns :attr:`connected`."""
        return self.ensure_connected()

    def close(self) -> None:
        """Disconnect for good (a later :meth:`on` connects again)."""
        with self._conn_lock:
            sio, self._sio = self._sio, None
            self._up = False
        if sio is not None:
            try:
                sio.disconnect()
            except Exception:  # noqa: BLE001 - closing must not raise
                log.debug("socket.io disconnect failed", exc_info=True)

    def _reconnecting(self) -> bool:
        task = getattr(self._sio, "_reconnect_task", None)
        return task is not None and getattr(task, "is_alive", lambda: False)()

    def _auth(self) -> dict[str, str]:
        # Called by python-socketio on every (re)connection attempt: always the freshest token,
        # refreshed first when the server refused the previous one.
        if self._auth_failed:
            self._auth_failed = False
            try:
                self._refresh()
            except Exception as exc:  # noqa: BLE001 - reported through last_error
                self.last_error = f"token refresh failed: {exc}"
        return {"token": self._token() or ""}

    def _make_client(self) -> socketio.Client:
        sio = socketio.Client(
            reconnection=True,
            reconnection_delay=0.5,
            reconnection_delay_max=5,
            ssl_verify=bool(self._verify),
            logger=False,
            engineio_logger=False,
        )
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("connect_error", self._on_connect_error)
        sio.on("*", self._on_any)
        return sio

    def _on_connect(self) -> None:
        self.last_error = None
        self.generation += 1
        self._up = True
        again = self._ever_connected
        self._ever_connected = True
        self._dispatch(CONNECTED, {})
        if again:
            self._dispatch(RECONNECTED, {})

    def _on_disconnect(self, reason: Any = None) -> None:
        self._up = False
        self._dispatch(DISCONNECTED, {"reason": str(reason) if reason is not None else None})

    def _on_connect_error(self, data: Any = None) -> None:
        self.last_error = str(data.get("message", data) if isinstance(data, dict) else data)
        # The server refuses a bad or expired token with {"message": ...}; transport failures
        # (server down) come as plain strings and need no new token.
        self._auth_failed = isinstance(data, dict)

    def _on_any(self, event: str, data: Any = None) -> None:
        self._dispatch(event, data)

    def _dispatch(self, event: str, data: Any) -> None:
        with self._cb_lock:
            handlers = list(self._callbacks.get(event, []))
            catch_all = list(self._callbacks.get("*", [])) if event not in _LOCAL else []
        for cb in handlers:
            try:
                cb(data)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not kill the connection
                log.exception("event callback %r for %r raised", cb, event)
        for cb in catch_all:
            try:
                cb(event, data)  # type: ignore[call-arg]
            except Exception:  # noqa: BLE001
                log.exception("event callback %r for '*' raised", cb)


_LOCAL = frozenset({CONNECTED, RECONNECTED, DISCONNECTED})
