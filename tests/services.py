"""Test helpers for the production services: PostgreSQL databases, RabbitMQ, and real server processes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

__all__ = [
    "AMQP_URL",
    "PG_URL",
    "ServerProcess",
    "bearer",
    "fresh_database",
    "require_postgres",
    "require_rabbitmq",
]

# The defaults scripts/setup-services.sh creates; override with V6NB_PG_URL / V6NB_AMQP_URL.
PG_URL = os.environ.get("V6NB_PG_URL", "postgresql+psycopg2://v6nb:v6nb@127.0.0.1:5432/v6nb_test")
AMQP_URL = os.environ.get("V6NB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
_HOW = "start it with `sudo bash scripts/setup-services.sh`"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def _unavailable(what: str, why: str) -> None:
    msg = f"{what} is not reachable ({why}); {_HOW}"
    if os.environ.get("V6NB_REQUIRE_ALL"):
        pytest.fail(f"V6NB_REQUIRE_ALL is set but {msg}")
    pytest.skip(msg)


def require_postgres(url: str = PG_URL) -> None:
    """Skip (or fail under ``V6NB_REQUIRE_ALL``) unless PostgreSQL at ``url`` accepts a login."""
    try:
        import psycopg2
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - dev extra installs it
        _unavailable("PostgreSQL", f"psycopg2 missing: {exc}")
        return
    u = make_url(url)
    try:
        psycopg2.connect(
            host=u.host,
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            connect_timeout=5,
        ).close()
    except psycopg2.Error as exc:
        _unavailable(f"PostgreSQL at {u.host}:{u.port or 5432}", str(exc).strip())


def require_rabbitmq(url: str = AMQP_URL) -> None:
    """Skip (or fail under ``V6NB_REQUIRE_ALL``) unless RabbitMQ at ``url`` accepts a connection."""
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises several unrelated types
        _unavailable("RabbitMQ", f"{type(exc).__name__}: {exc}")


@contextmanager
def fresh_database(base_url: str = PG_URL) -> Iterator[str]:
    """Create an empty database next to ``base_url``'s (the role needs CREATEDB); drop it afterwards.

    Examples
    --------
    >>> with fresh_database() as url:  # doctest: +SKIP
    ...     url
    'postgresql+psycopg2://v6nb:v6nb@127.0.0.1:5432/v6nb_t_3f2a...'
    """
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(base_url)
    name = f"v6nb_t_{uuid.uuid4().hex[:12]}"
    params = {
        "host": u.host,
        "port": u.port or 5432,
        "user": u.username,
        "password": u.password,
        "dbname": u.database,
    }
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield u.set(database=name).render_as_string(hide_password=False)
    finally:
        with conn.cursor() as cur:
            # Servers are stopped by now; WITH (FORCE) ends any connection a crashed one left behind.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m server_app start`` on loopback with a YAML configuration; start, stop, restart.

    Examples
    --------
    >>> srv = ServerProcess(tmp_path, {"database_url": url, "root_password": "pw"})  # doctest: +SKIP
    >>> srv.start(); srv.get("/api/health").json()  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(self, folder: Path, settings: dict[str, Any], *, name: str = "server") -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = folder / f"{name}.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        values = {
            "port": self.port,
            "data_dir": f"{name}-data",
            "log_level": "WARNING",
            **settings,
        }
        self.config_path.write_text(yaml.safe_dump(values), encoding="utf-8")
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait for its "listening" line; fail with its output otherwise."""
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server_app", "start", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(stream: Any) -> None:
            for line in stream:
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        want = f"vantage6nb server listening on {self.url}"
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                self.stop()
                pytest.fail(f"server did not start within {timeout} s:\n{self.log()}")
            if line is None:
                pytest.fail(f"server exited with {self.proc.wait()}:\n{self.log()}")
            if line.strip() == want:
                return

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after 30 s); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.output)

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
