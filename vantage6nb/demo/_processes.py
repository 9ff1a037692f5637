"""Child processes of a demo network: start them, wait for them, stop them, and never leave one behind."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..common.errors import ServerUnavailable

__all__ = ["ManagedProcess", "free_port", "forget_at_exit", "stop_at_exit", "wait_until"]

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()
#: networks started in this process and not stopped yet: stopped (and their folders removed, when
#: they made them) when the interpreter or the notebook kernel exits
_NETWORKS: dict[int, Any] = {}
#: at exit, how long the processes get to stop together before they are killed: a kernel that
#: shuts down has some 5 s (jupyter_client's shutdown_wait_time) before it is killed itself
EXIT_GRACE_S = 3.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Examples
    --------
    >>> 1024 <= free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    check: Callable[[], None] | None = None,
    interval: float = 0.05,
    max_interval: float = 0.5,
    error: type[Exception] = ServerUnavailable,
) -> object:
    """Poll ``predicate`` until it returns something truthy (returned); raise ``error`` after ``timeout``.

    ``check`` runs before every poll and may raise (e.g. when a process died). The pause between
    polls grows from ``interval`` to ``max_interval``. The message names ``what`` and, when it
    was not just False or None, the last value seen.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            last = "" if value in (None, False) else f" (last: {value!r:.300})"
            raise error(f"Timed out after {timeout:g} s waiting for {what}{last}.")
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)


class ManagedProcess:
    """A ``python -m <module> ...`` child in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = [sys.executable, *args]
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the process (a no-op when it is running)."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: we stop its children too
            )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise ServerUnavailable with the log tail when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerUnavailable(
                f"{self.name} exited with code {self.proc.returncode}; last lines of "
                f"{self.log_path}:\n{self.log_tail()}",
                errors={"process": self.name},
            )

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the process and its children: SIGTERM (SIGKILL when ``kill`` or after ``timeout``)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=timeout)
        # children of a stopped node (algorithm runs) may outlive it in the group
        self._signal(signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM to its group) without waiting for it."""
        if self.running:
            self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)  # the group this process leads, nothing else
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        try:
            proc.stop(timeout=5.0)
        except Exception:  # best effort at interpreter exit
            pass


def stop_at_exit(network: Any) -> None:
    """Stop ``network`` (its ``stop()``) when the interpreter or notebook kernel exits, unless it
    was stopped before (:func:`forget_at_exit`)."""
    _NETWORKS[id(network)] = network


def forget_at_exit(network: Any) -> None:
    """``network`` was stopped: nothing left to do for it at exit."""
    _NETWORKS.pop(id(network), None)


@atexit.register  # registered after _stop_all, so it runs before it
def _stop_networks() -> None:
    """Stop what is still running: every process at once (their shutdowns overlap), those not
    gone after :data:`EXIT_GRACE_S` killed, then each network's ``stop()`` removes its folder."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        proc.terminate()
    deadline = time.monotonic() + EXIT_GRACE_S
    for proc in live:
        if proc.proc is not None:
            try:
                proc.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc._signal(signal.SIGKILL)
    for network in list(_NETWORKS.values()):
        try:
            network.stop()
        except Exception:  # best effort at interpreter exit
            pass
