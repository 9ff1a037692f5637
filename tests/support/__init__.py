"""What the tests share: child processes (a server, a node), free loopback ports, waiting for a
state with a deadline, and the checks that skip a test whose service is missing.

- :func:`free_port` - a TCP port on 127.0.0.1 that nothing listens on (the library's own helper);
- :func:`wait_for` - poll until a state another process or thread reaches holds, or fail;
- :class:`ServerProcess`, :class:`NodeProcess` (:class:`ChildProcess`) - ``python -m server_app
  start`` / ``python -m node_app start`` on loopback: start, stop, restart, read the log tail;
  :func:`pid_alive` for processes they leave;
- :func:`unavailable`, :func:`require_postgres`, :func:`require_rabbitmq`, :func:`docker_engine` -
  skip (or fail under ``V6NB_REQUIRE_ALL=1``) when a service is absent.
"""

from __future__ import annotations

from vantage6nb.demo import free_port

from .processes import ChildProcess, NodeProcess, ServerProcess, bearer, pid_alive
from .services import (
    AMQP_URL,
    PG_URL,
    docker_engine,
    fresh_database,
    require_postgres,
    require_rabbitmq,
    unavailable,
)
from .waiting import wait_for

__all__ = [
    "AMQP_URL",
    "PG_URL",
    "ChildProcess",
    "NodeProcess",
    "ServerProcess",
    "bearer",
    "docker_engine",
    "free_port",
    "fresh_database",
    "pid_alive",
    "require_postgres",
    "require_rabbitmq",
    "unavailable",
    "wait_for",
]
