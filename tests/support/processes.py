"""Server and node processes on loopback for the tests: start, stop, restart, read the log tail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from vantage6nb.demo import free_port

from .waiting import wait_for

_P = TypeVar("_P", bound="ChildProcess")

__all__ = ["REPO", "ChildProcess", "NodeProcess", "ServerProcess", "bearer", "pid_alive"]

REPO = Path(__file__).resolve().parents[2]
# hang guards, not speed assertions
START_S = 120.0
STOP_S = 30.0


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _child_env() -> dict[str, str]:
    # a child reads its settings from its configuration file only, never from our V6NB_* variables
    env = {k: v for k, v in os.environ.items() if not k.startswith("V6NB_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChildProcess:
    """``python <args>`` started in the repository root, its output appended to ``log_path``;
    ``env`` is added to this environment without its ``V6NB_*`` variables.

    The lines of the current start are also kept in memory (:meth:`output`, :meth:`wait_for_line`).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = [sys.executable, *args]
        self.log_path = log_path
        self.env = dict(env or {})  # over this environment without its V6NB_* variables
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self, ready: str | None = None, timeout: float = START_S) -> None:
        """Start (or start again); with ``ready``, wait for a line that contains it.

        Fails (``AssertionError``, with the log tail) when the process exits or ``timeout`` passes
        first; the process is stopped then.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.lines = []
        self.proc = subprocess.Popen(
            self.args,
            cwd=REPO,
            env={**_child_env(), **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(
            target=self._read, args=(self.proc, self.lines), name=f"{self.name}-log", daemon=True
        )
        self._reader.start()
        if ready is not None:
            try:
                self.wait_for_line(ready, timeout)
            except BaseException:
                self.stop()
                raise

    def _read(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                log.flush()

    def wait_for_line(self, needle: str, timeout: float = START_S) -> str:
        """The first line of this start that contains ``needle``, waiting for it to be printed."""

        def seen() -> str | None:
            return next((line for line in list(self.lines) if needle in line), None)

        def alive() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(5)  # the last lines may still be in the pipe
                if seen() is None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}")

        try:
            return str(
                wait_for(
                    seen, timeout, f"{self.name} to print {needle!r}", interval=0.05, check=alive
                )
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its last lines:\n{self.log_tail()}") from None

    def output(self) -> str:
        """Everything the process printed since its last start."""
        return "".join(self.lines)

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log file (every start)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_S) -> int | None:
        """Send ``sig`` (SIGKILL when it has not exited after ``timeout`` s); the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
            if not self._reader.is_alive() and proc.stdout is not None:
                proc.stdout.close()
        return proc.returncode

    def __enter__(self: _P) -> _P:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ChildProcess):
    """``python -m server_app start`` on a free loopback port, configured by ``<folder>/<name>.yaml``.

    ``settings`` go over the defaults (``<folder>/<name>-data``, 16 threads, WARNING); a restart
    keeps the port and the data. As a context manager: started, and stopped at the end.

    Examples
    --------
    >>> with ServerProcess(tmp_path, {"root_password": "pw"}) as srv:  # doctest: +SKIP
    ...     srv.get("/api/health").json()
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(
        self, folder: Path, settings: Mapping[str, Any] | None = None, *, name: str = "server"
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = folder / f"{name}.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        values = {
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(folder / f"{name}-data"),
            "threads": 16,
            "log_level": "WARNING",
            **(settings or {}),
        }
        self.config_path.write_text(yaml.safe_dump(values), encoding="utf-8")
        args = ["-m", "server_app", "start", "--config", str(self.config_path)]
        super().__init__(name, args, folder / f"{name}.log")

    def start(self, ready: str | None = None, timeout: float = START_S) -> None:
        """Start (again) and wait for its "listening" line."""
        super().start(ready or f"vantage6nb server listening on {self.url}", timeout)

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        """An HTTP request to this server (``requests.Response``)."""
        headers = {**(bearer(token) if token else {}), **kw.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> Any:
        """GET ``path``."""
        return self.request("GET", path, token, **kw)

    def ok(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        """The JSON of a request that must succeed (2xx); fails the test with the body otherwise."""
        r = self.request(method, path, token, **kw)
        assert 200 <= r.status_code < 300, f"{method} {path} -> {r.status_code}: {r.text}"
        return r.json() if r.content else None

    def login(self, username: str, password: str) -> str:
        """A user's access token."""
        body = {"username": username, "password": password}
        return str(self.ok("POST", "/api/token/user", json=body)["access_token"])


class NodeProcess(ChildProcess):
    """``python -m node_app start`` with ``<folder>/node.yaml`` written from ``settings``.

    ``settings`` hold at least ``server_url`` and ``api_key``; relative paths in them are resolved
    against ``folder``. The node trusts the diagnostics image and the tests' probe images for
    untyped output (as the demo's nodes trust diagnostics) unless ``settings`` give a ``disclosure`` policy. :meth:`start` waits until the
    node says it is connected.
    """

    def __init__(self, folder: Path, settings: Mapping[str, Any]) -> None:
        self.folder = folder
        self.config_path = folder / "node.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        trusted = ["v6nb/diagnostics", "test/*", "v6nb-test/*"]  # the tests' probes: plain JSON
        values = {"disclosure": {"untyped_images": trusted}, **settings}
        self.config_path.write_text(yaml.safe_dump(values), encoding="utf-8")
        args = ["-m", "node_app", "start", "--config", str(self.config_path)]
        super().__init__(str(settings.get("name", folder.name)), args, folder / "node.log")

    def start(self, ready: str | None = None, timeout: float = START_S) -> None:
        """Start (again) and wait until it is connected to its server."""
        super().start(ready or "connected to", timeout)
