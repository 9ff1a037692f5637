"""The database extension: engine (SQLite tuned for concurrency, or any SQLAlchemy URL) and per-request sessions."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g
from sqlalchemy import create_engine, event, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from . import migrations
from .models import Node

__all__ = ["Database", "make_engine", "make_psycopg2_cooperative", "session"]

log = logging.getLogger("server_app")

_SQLITE_BUSY_MS = 10_000


class Database:
    """SQLAlchemy engine plus a session per request (closed at teardown).

    Examples
    --------
    >>> db = Database()
    >>> db.init_app(app, "sqlite:////tmp/x.sqlite")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.sessions: sessionmaker[Session] | None = None

    def init_app(self, app: Flask, url: str, *, shared: bool = False) -> None:
        """Create the engine, upgrade the schema to head, mark every node offline, and register
        the teardown.

        The upgrade (server_app.migrations) creates the tables of an empty database, and brings an
        older one to this release's schema under a lock, so instances starting together take
        turns; it raises ``migrations.UpgradeFailed`` with what to do when it cannot.

        ``shared``: other server instances use this database too (a message queue is set), so
        node status is left alone: their nodes are still connected.
        """
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            before, after = migrations.upgrade(self.engine)
        except migrations.UpgradeFailed as exc:
            log.error("the server cannot start: %s", exc)
            self.engine.dispose()
            raise
        if before.revision != after.revision:
            log.info(
                "database schema %s -> %s",
                "(new)" if before.empty else before.revision or f"{migrations.FIRST} (stamped)",
                after.revision,
            )
        if not shared:
            # Nobody is connected to a server that just started.
            with self.sessions.begin() as s:
                s.execute(update(Node).where(Node.status != "offline").values(status="offline"))
        app.extensions["v6nb_db"] = self
        app.teardown_appcontext(self._teardown)

    def new_session(self) -> Session:
        """A session outside a request (socket.io handlers, start-up); the caller closes it."""
        assert self.sessions is not None, "Database.init_app was not called"
        return self.sessions()

    def request_session(self) -> Session:
        """The current request's session, created on first use."""
        s = g.get("_v6nb_session")
        if s is None:
            s = g._v6nb_session = self.new_session()
        return s

    @staticmethod
    def _teardown(_exc: BaseException | None) -> None:
        s = g.pop("_v6nb_session", None)
        if s is not None:
            s.close()


def session() -> Session:
    """The current request's database session."""
    from flask import current_app

    return current_app.extensions["v6nb_db"].request_session()


def make_engine(url: str) -> Engine:
    """The engine for ``url``: SQLite with WAL, a busy timeout and foreign keys; others pre-pinged."""
    kwargs: dict[str, Any] = {}
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": _SQLITE_BUSY_MS / 1000}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
    else:
        kwargs["pool_pre_ping"] = True
        if _gevent_patched():
            # Many greenlets share the pool: more connections, and waiting for one yields.
            kwargs.update(pool_size=10, max_overflow=20)
            if url.startswith("postgresql"):
                make_psycopg2_cooperative()
    engine = create_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def make_psycopg2_cooperative() -> None:
    """Let psycopg2 wait for PostgreSQL through gevent, so a query blocks its greenlet only.

    psycopg2 is C and talks to libpq's socket itself, which gevent's patching cannot reach; its
    wait callback (psycopg2's documented hook, what psycogreen installs) hands every wait to
    ``gevent.socket.wait_read``/``wait_write``. Called under the gevent worker only.

    Examples
    --------
    >>> make_psycopg2_cooperative()  # doctest: +SKIP
    """
    import psycopg2.extensions as ext

    if ext.get_wait_callback() is _gevent_wait:
        return
    ext.set_wait_callback(_gevent_wait)


def _gevent_wait(conn: Any, timeout: float | None = None) -> None:
    import psycopg2.extensions as ext
    from gevent.socket import wait_read, wait_write

    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            wait_read(conn.fileno(), timeout=timeout)
        elif state == ext.POLL_WRITE:
            wait_write(conn.fileno(), timeout=timeout)
        else:
            raise ext.OperationalError(f"bad state from poll: {state}")
