"""Serving the app with gunicorn: the gevent worker (with the connection limits) or gthread."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

__all__ = ["gunicorn_options", "patch_for_gevent", "serve_app"]

log = logging.getLogger("server_app")

_WORKERS = {"gevent": "server_app.serving.GeventWorker", "gthread": "gthread"}


def patch_for_gevent() -> bool:
    """Make the standard library cooperative (gevent's monkey patching) before anything else runs.

    Called in gunicorn's master before the worker is forked, so the modules imported afterwards
    (SQLAlchemy's pool, kombu, the socket sweep's ``threading`` and ``time.sleep``) use gevent's
    locks, sockets and sleeps. Returns whether the process is patched now.

    Examples
    --------
    >>> patch_for_gevent()  # doctest: +SKIP
    True
    """
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    return True


def gunicorn_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """The gunicorn settings for ``cfg``: one worker (socket.io state is in-process).

    Examples
    --------
    >>> opts = gunicorn_options({"host": "127.0.0.1", "port": 7601, "worker_class": "gevent",
    ...     "threads": 64, "max_connections": 10000, "keepalive_s": 30.0, "log_level": "INFO"})
    >>> opts["worker_class"], opts["worker_connections"], opts["keepalive"]
    ('server_app.serving.GeventWorker', 10000, 30)
    """
    return {
        "bind": f"{cfg['host']}:{cfg['port']}",
        "workers": 1,
        "worker_class": _WORKERS[cfg["worker_class"]],
        "threads": cfg["threads"],
        "worker_connections": cfg["max_connections"],
        "keepalive": max(1, round(cfg["keepalive_s"])),
        "timeout": 60,
        "graceful_timeout": 5,
        "backlog": 2048,
        "loglevel": cfg["log_level"].lower(),
        "accesslog": None,
        "errorlog": "-",
        # The app is built in the worker: the master stays small (idle RSS) and owns no database
        # connection or socket.io state; a failing start shows its traceback and exits non-zero.
        "preload_app": False,
        "proc_name": "v6nb-server",
    }


def serve_app(cfg: dict[str, Any], ready_line: str) -> None:
    """Run gunicorn in this process until it is stopped (raises ``SystemExit`` like gunicorn).

    Examples
    --------
    >>> serve_app(load_config("server.yaml"), "listening")  # doctest: +SKIP
    """
    if cfg["worker_class"] == "gevent":
        patch_for_gevent()
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(cfg)

    def post_worker_init(worker: Any) -> None:
        worker.v6nb_cfg = cfg
        print(ready_line, flush=True)

    options["post_worker_init"] = post_worker_init

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from .app import create_app

            return create_app(cfg)

    _Server().run()


# The gevent worker ------------------------------------------------------------------------------
# Imported by gunicorn by its dotted name, only when worker_class is gevent.


def _busy_response() -> bytes:
    body = (
        b'{"msg": "Too many connections from your address: close some, or ask the server\'s '
        b'administrator to raise max_connections_per_address.", "errors": {}, '
        b'"code": "too_many_connections"}'
    )
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _is_websocket(req: Any) -> bool:
    return any(n == "UPGRADE" and v.lower() == "websocket" for n, v in req.headers)


def _body_left(req: Any) -> bool:
    """Whether part of the request body is still unread (then the connection is closed, not
    drained: a refused 200 MiB body is never read)."""
    body = getattr(req, "body", None)
    reader = getattr(body, "reader", None)
    if reader is None:
        return False
    if hasattr(reader, "length"):  # LengthReader
        return bool(reader.length)
    return getattr(reader, "parser", None) is not None  # ChunkedReader not at its end


try:  # the worker exists only where gevent is installed
    import gevent
    from gunicorn.workers.ggevent import GeventWorker as _GeventWorker
except ImportError:  # pragma: no cover - gevent is a dependency
    pass
else:

    class GeventWorker(_GeventWorker):  # type: ignore[misc,valid-type]
        """gunicorn's gevent worker with the server's connection limits.

        - a new connection has ``header_timeout_s`` for its first request head; a kept-alive one
          ``keepalive_s`` for the next (gunicorn's own worker gives both the keep-alive time);
        - a body (and a response) may go silent for at most ``body_timeout_s`` (websockets
          excepted); a request whose body was left unread closes its connection;
        - at most ``max_connections_per_address`` connections per client address.
        """

        v6nb_cfg: dict[str, Any]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._per_address: Counter[str] = Counter()
            self._first: set[Any] = set()

        def _limit(self, key: str, default: float) -> float:
            cfg = getattr(self, "v6nb_cfg", None) or {}
            return float(cfg.get(key, default))

        def timeout_ctx(self) -> Any:
            me = gevent.getcurrent()
            if me in self._first:
                self._first.discard(me)
                return gevent.Timeout(self._limit("header_timeout_s", 10.0), False)
            return gevent.Timeout(self._limit("keepalive_s", 30.0), False)

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            ip = addr[0] if isinstance(addr, tuple) else str(addr)
            bound = int(self._limit("max_connections_per_address", 0))
            if bound and self._per_address[ip] >= bound:
                log.warning(
                    "refused a connection from %s: it holds %d (max_connections_per_address)",
                    ip,
                    self._per_address[ip],
                )
                try:
                    client.settimeout(1.0)
                    client.sendall(_busy_response())
                except OSError:
                    pass
                finally:
                    client.close()
                return
            self._per_address[ip] += 1
            me = gevent.getcurrent()
            self._first.add(me)
            try:
                super().handle(listener, client, addr)
            finally:
                self._first.discard(me)
                self._per_address[ip] -= 1
                if self._per_address[ip] <= 0:
                    del self._per_address[ip]

        def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
            websocket = _is_websocket(req)
            sock.settimeout(None if websocket else self._limit("body_timeout_s", 30.0))
            try:
                result = super().handle_request(listener_name, req, sock, addr)
            finally:
                try:
                    sock.settimeout(None)
                except OSError:
                    pass
            if not websocket and _body_left(req):
                raise StopIteration()  # gunicorn closes the connection instead of draining it
            return result
