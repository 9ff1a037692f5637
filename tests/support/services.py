"""The services some tests need (PostgreSQL, RabbitMQ, a Docker engine): skip, or fail under
``V6NB_REQUIRE_ALL=1``, when one is absent; a fresh PostgreSQL database per use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

__all__ = [
    "AMQP_URL",
    "PG_URL",
    "docker_engine",
    "fresh_database",
    "require_postgres",
    "require_rabbitmq",
    "unavailable",
]

# The defaults scripts/setup-services.sh creates; override with V6NB_PG_URL / V6NB_AMQP_URL.
PG_URL = os.environ.get("V6NB_PG_URL", "postgresql+psycopg2://v6nb:v6nb@127.0.0.1:5432/v6nb_test")
AMQP_URL = os.environ.get("V6NB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
_HOW = "start it with `sudo bash scripts/setup-services.sh`"


def unavailable(why: str) -> NoReturn:
    """Skip (a test, or a module at import), or fail when every service-dependent test must run
    (``V6NB_REQUIRE_ALL=1``, as ``.ci/run`` sets)."""
    if os.environ.get("V6NB_REQUIRE_ALL") == "1":
        pytest.fail(f"{why} (V6NB_REQUIRE_ALL=1)")
    pytest.skip(why, allow_module_level=True)


def require_postgres(url: str = PG_URL) -> None:
    """Go on only when PostgreSQL at ``url`` accepts a login (:func:`unavailable` otherwise)."""
    try:
        import psycopg2
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        unavailable(f"PostgreSQL is not reachable (psycopg2 missing: {exc}); {_HOW}")
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
        where = f"{u.host}:{u.port or 5432}"
        unavailable(f"PostgreSQL at {where} is not reachable ({str(exc).strip()}); {_HOW}")


def require_rabbitmq(url: str = AMQP_URL) -> None:
    """Go on only when RabbitMQ at ``url`` accepts a connection (:func:`unavailable` otherwise)."""
    import kombu

    try:
        with kombu.Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises several unrelated types
        unavailable(f"RabbitMQ is not reachable ({type(exc).__name__}: {exc}); {_HOW}")


def docker_engine(timeout: int = 300) -> Any:
    """A client of the Docker engine that answers (:func:`unavailable` when none does)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # no engine, no socket, no permission: all mean "absent"
        unavailable(f"no Docker engine answers ({exc}): run scripts/setup-docker.sh")
    return client


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
    conn = psycopg2.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database
    )
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
