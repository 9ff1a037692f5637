"""The node's socket.io link: connects with its token, reconnects forever, turns events into work."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import socketio

from vantage6nb.common import events
from vantage6nb.common.errors import V6Error

from .server_client import backoff_delays

__all__ = ["SocketLink"]

log = logging.getLogger(__name__)

_CHECK_S = 5.0
_WARN_AFTER_S = 60.0  # a reconnect is routine; only one that keeps failing this long is a warning


# what engine.io logs (at ERROR or WARNING) each time a server goes away or restarts
_ROUTINE = frozenset(
    {
        "packet queue is empty, aborting",
        "Server has stopped communicating, aborting",
        "WebSocket connection was closed, aborting",
        "WebSocket connection is closing, aborting",
        "Connection refused by the server, aborting",
    }
)


class _EngineIOLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """engine.io's log with a connection's routine end at DEBUG: :meth:`SocketLink._on_disconnect`
    reports it once, at INFO, and reconnects."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("node_app.engineio"), {})

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)  # a line per packet: DEBUG, as engine.io means it

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        (self.debug if msg in _ROUTINE else super().error)(msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        (self.debug if msg in _ROUTINE else super().warning)(msg, *args, **kwargs)


class SocketLink:
    """Keeps one websocket connection to the server; every (re)connect triggers a re-sync.

    Reconnection is done here rather than by python-socketio so that each attempt uses a freshly
    refreshed token and a refused connection (expired token) is retried too.

    Parameters
    ----------
    server_url
        The server to connect to.
    stopping
        Set when the node shuts down: the link stops reconnecting.
    access_token, refresh_token
        The node's current access token (for the first connect), and a fresh one (for every
        reconnect; may raise a V6Error while the server is away).
    on_new_runs
        Called with the open runs a ``new_task`` event carries (each with its ``task``).
    on_kill
        Called with the run ids a ``kill`` event names.
    request_sync
        Asks for a listing of open runs: on every (re)connect, and for events without runs.

    Examples
    --------
    >>> seen = []
    >>> link = SocketLink(
    ...     "http://127.0.0.1:7601",
    ...     stopping=threading.Event(),
    ...     access_token=lambda: None,
    ...     refresh_token=lambda: "t",
    ...     on_new_runs=seen.append,
    ...     on_kill=seen.append,
    ...     request_sync=lambda: seen.append("sync"),
    ... )
    >>> link._on_kill({"run_ids": [3, "x"]}); link._on_new_task({"task_id": 1}); seen
    [[3], 'sync']
    """

    def __init__(
        self,
        server_url: str,
        *,
        stopping: threading.Event,
        access_token: Callable[[], str | None],
        refresh_token: Callable[[], str],
        on_new_runs: Callable[[list[dict[str, Any]]], object],
        on_kill: Callable[[list[int]], object],
        request_sync: Callable[[], object],
    ) -> None:
        self.server_url = server_url
        self.stopping = stopping
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._new_runs = on_new_runs
        self._kill_runs = on_kill
        self._request_sync = request_sync
        self.connected = threading.Event()
        self.ever_connected = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sio = socketio.Client(
            reconnection=False, handle_sigint=False, engineio_logger=_EngineIOLog()
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(events.NEW_TASK, self._on_new_task)
        self.sio.on(events.KILL, self._on_kill)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="v6nb-socket", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._wake.set()
        try:
            self.sio.disconnect()
        except Exception:  # already gone
            pass
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- events ------------------------------------------------------------------------------------
    def _on_connect(self) -> None:
        self.connected.set()
        self.ever_connected.set()
        log.info("connected to %s over socket.io", self.server_url)
        self._request_sync()

    def _on_disconnect(self, *args: Any) -> None:
        if self.connected.is_set():  # a normal event (server restart, balancer switch): INFO
            why = f" ({args[0]})" if args and args[0] else ""
            log.info("socket.io connection to %s lost%s; reconnecting", self.server_url, why)
        self.connected.clear()
        self._wake.set()

    def _on_new_task(self, payload: Any = None) -> None:
        log.debug("new_task: %s", payload.get("task_id") if isinstance(payload, dict) else None)
        runs = _runs_in(payload)
        if runs is None:  # no runs in the event (a large input): list them
            self._request_sync()
            return
        try:
            self._new_runs(runs)
        except Exception:  # never lose a run to a bad event: the listing picks it up
            log.exception("could not start the runs of a new_task event; listing open runs")
            self._request_sync()

    def _on_kill(self, payload: Any = None) -> None:
        run_ids = payload.get("run_ids") if isinstance(payload, dict) else None
        if isinstance(run_ids, list):
            self._kill_runs([int(r) for r in run_ids if isinstance(r, int)])

    # -- connection upkeep -------------------------------------------------------------------------
    def _supervise(self) -> None:
        stop = self.stopping
        delays = backoff_delays(0.2, 5.0)
        first = True
        failing_since: float | None = None
        warned = False
        while not stop.is_set():
            if not self.sio.connected:
                if failing_since is None:
                    failing_since, warned = time.monotonic(), False
                elif not warned and time.monotonic() - failing_since > _WARN_AFTER_S:
                    warned = True
                    log.warning(
                        "no socket.io connection to %s for %.0f s; still retrying (runs are "
                        "also picked up by listing)",
                        self.server_url,
                        time.monotonic() - failing_since,
                    )
                try:
                    token = self._access_token() if first else self._refresh_token()
                    first = False
                    self.sio.connect(
                        self.server_url,
                        auth={"token": token},
                        transports=["websocket"],
                        wait_timeout=10,
                    )
                    delays = backoff_delays(0.2, 5.0)
                    failing_since = None
                except (socketio.exceptions.ConnectionError, V6Error, ValueError) as exc:
                    delay = next(delays)
                    log.debug("socket.io connect failed (%s); retrying in %.1f s", exc, delay)
                    try:
                        self.sio.disconnect()
                    except Exception:  # nothing to tear down
                        pass
                    if stop.wait(delay):
                        return
                    continue
            self._wake.wait(_CHECK_S)
            self._wake.clear()


def _runs_in(payload: Any) -> list[dict[str, Any]] | None:
    """The runs a ``new_task`` event carries, each with the event's task; None when it has none."""
    if not isinstance(payload, dict):
        return None
    task, runs = payload.get("task"), payload.get("runs")
    if not isinstance(task, dict) or not isinstance(runs, list) or not runs:
        return None
    out = []
    for run in runs:
        if not isinstance(run, dict) or not isinstance(run.get("id"), int):
            return None
        out.append({**run, "task": task})
    return out
