"""The node's socket.io link: connects with its token, reconnects forever, turns events into work."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import socketio

from vantage6nb.common import events
from vantage6nb.common.errors import V6Error

from .server_client import backoff_delays

if TYPE_CHECKING:  # pragma: no cover
    from .daemon import NodeDaemon

__all__ = ["SocketLink"]

log = logging.getLogger(__name__)

_CHECK_S = 5.0


class SocketLink:
    """Keeps one websocket connection to the server; every (re)connect triggers a re-sync.

    Reconnection is done here rather than by python-socketio so that each attempt uses a freshly
    refreshed token and a refused connection (expired token) is retried too.
    """

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon
        self.connected = threading.Event()
        self.ever_connected = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
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
        log.info("connected to %s over socket.io", self.daemon.config.server_url)
        self.daemon.request_sync()

    def _on_disconnect(self, *args: Any) -> None:
        if self.connected.is_set():
            log.warning(
                "socket.io connection to %s lost; reconnecting", self.daemon.config.server_url
            )
        self.connected.clear()
        self._wake.set()

    def _on_new_task(self, payload: Any = None) -> None:
        log.debug("new_task: %s", payload.get("task_id") if isinstance(payload, dict) else None)
        runs = _runs_in(payload)
        if runs is None:  # no runs in the event (a large input): list them
            self.daemon.request_sync()
            return
        try:
            self.daemon.start_runs(runs)
        except Exception:  # never lose a run to a bad event: the listing picks it up
            log.exception("could not start the runs of a new_task event; listing open runs")
            self.daemon.request_sync()

    def _on_kill(self, payload: Any = None) -> None:
        run_ids = payload.get("run_ids") if isinstance(payload, dict) else None
        if isinstance(run_ids, list):
            self.daemon.kill_runs([int(r) for r in run_ids if isinstance(r, int)])

    # -- connection upkeep -------------------------------------------------------------------------
    def _supervise(self) -> None:
        stop = self.daemon.stopping
        delays = backoff_delays(0.2, 5.0)
        first = True
        while not stop.is_set():
            if not self.sio.connected:
                try:
                    token = (
                        self.daemon.client.access_token if first else self.daemon.client.refresh()
                    )
                    first = False
                    self.sio.connect(
                        self.daemon.config.server_url,
                        auth={"token": token},
                        transports=["websocket"],
                        wait_timeout=10,
                    )
                    delays = backoff_delays(0.2, 5.0)
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
