"""socket.io fan-out across server instances through RabbitMQ: a kombu client manager made thread-safe."""

from __future__ import annotations

import threading
from typing import Any

import socketio

from vantage6nb.common.errors import ConfigurationError

__all__ = ["QueueManager"]


class QueueManager(socketio.KombuManager):  # type: ignore[misc]
    """``socketio.KombuManager`` fit for a threaded server that must not lose events.

    Three changes to the stock manager:

    - publishing is serialized: the stock manager shares one AMQP connection between all request
      threads, and concurrent publishes on it interleave frames and drop events;
    - this process's queue is declared and bound by :meth:`start` before the server accepts
      requests (the stock manager does it lazily on the first socket.io connection, in a background
      thread, so events published in between are lost);
    - the queue keeps one name for the life of the process, so a reconnect after a broker restart
      binds the same queue again.

    Examples
    --------
    >>> manager = QueueManager("amqp://guest:guest@127.0.0.1:5672//")  # doctest: +SKIP
    >>> sio = socketio.Server(async_mode="threading", client_manager=manager)  # doctest: +SKIP
    >>> manager.start()  # doctest: +SKIP
    """

    def __init__(self, url: str, channel: str = "vantage6nb") -> None:
        super().__init__(url, channel=channel, connection_options={"connect_timeout": 10})
        self._publish_lock = threading.Lock()
        self._reader_queue = super()._queue()

    def _queue(self) -> Any:
        return self._reader_queue

    def _publish(self, data: Any) -> None:
        with self._publish_lock:
            super()._publish(data)

    def start(self) -> None:
        """Declare and bind this process's queue, then start listening; fail clearly when unreachable.

        Raises
        ------
        ConfigurationError
            RabbitMQ does not answer at the configured URL.
        """
        try:
            with self._connection() as conn:
                conn.connect()
                self._reader_queue(conn.default_channel).declare()
        except Exception as exc:  # kombu/amqp raise many unrelated types for one cause
            raise ConfigurationError(
                f"Cannot reach the message queue at {_safe(self.url)} ({type(exc).__name__}: {exc}). "
                "Start RabbitMQ (scripts/setup-services.sh does it locally) or fix message_queue_url.",
                errors={"message_queue_url": "unreachable"},
            ) from exc
        self.server.manager_initialized = True
        self.initialize()


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))
