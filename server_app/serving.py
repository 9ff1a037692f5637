"""Serving the app with gunicorn: the gevent worker (with the connection limits) or gthread,
and the client's address behind trusted proxies."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "ForwardedFor",
    "TrustedProxies",
    "gunicorn_options",
    "patch_for_gevent",
    "serve_app",
]

log = logging.getLogger("server_app")

_WORKERS = {"gevent": "server_app.serving.GeventWorker", "gthread": "gthread"}


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> _IP | None:
    """An address as a proxy writes it in X-Forwarded-For (``1.2.3.4``, ``1.2.3.4:5678``,
    ``2001:db8::1``, ``[2001:db8::1]:5678``, quoted or not); None for anything else."""
    s = text.strip().strip('"')
    if s.startswith("["):
        s = s[1:].partition("]")[0]
    elif s.count(":") == 1:
        s = s.partition(":")[0]
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


class TrustedProxies:
    """The proxies whose X-Forwarded-For is believed, and the client address it gives.

    The client is the right-most address in the chain (the peer, then the header's entries
    from right to left) that is not a trusted proxy: each trusted proxy appends the address it
    was connected from, so everything to the left of the first untrusted one may be made up by
    the client (as gunicorn's ``forwarded_allow_ips`` and nginx's ``real_ip_recursive`` read
    it). When the peer is not trusted, the header is ignored.

    Examples
    --------
    >>> proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/24"])
    >>> proxies.client_address("127.0.0.1", "203.0.113.9, 10.0.0.7")
    '203.0.113.9'
    >>> proxies.client_address("127.0.0.1", "made-up, 198.51.100.4")
    '198.51.100.4'
    >>> proxies.client_address("198.51.100.4", "203.0.113.9")  # not a proxy: ignored
    '198.51.100.4'
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(str(e).strip(), strict=False) for e in entries]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | _IP | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        ip = _parse_ip(address) if isinstance(address, str) else address
        return ip is not None and any(ip in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address for a connection from ``peer`` carrying ``forwarded_for``
        (every X-Forwarded-For header of the request, joined with commas)."""
        ip = _parse_ip(peer)
        if ip is None or not forwarded_for or not self.trusts(ip):
            return peer
        for entry in reversed(forwarded_for.split(",")):
            if not self.trusts(ip):
                break
            hop = _parse_ip(entry)
            if hop is None:  # not written by a proxy: keep the last trusted hop
                break
            ip = hop
        return str(ip)


class ForwardedFor:
    """WSGI middleware: ``REMOTE_ADDR`` becomes the client's address when the peer is a trusted
    proxy (``TrustedProxies.client_address``); the peer's own address stays in
    ``environ["v6nb.peer_addr"]``. Everything that reads ``request.remote_addr`` (the login
    limit, the audit log, the logs) sees the client then.

    Examples
    --------
    >>> app = ForwardedFor(create_app(cfg), TrustedProxies(cfg["trusted_proxies"]))  # doctest: +SKIP
    """

    def __init__(self, app: Callable[..., Any], proxies: TrustedProxies) -> None:
        self.app, self.proxies = app, proxies

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        peer = str(environ.get("REMOTE_ADDR") or "")
        environ["v6nb.peer_addr"] = peer
        environ["REMOTE_ADDR"] = self.proxies.client_address(
            peer, environ.get("HTTP_X_FORWARDED_FOR")
        )
        return self.app(environ, start_response)


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
    ...     "threads": 64, "max_connections": 10000, "keepalive_s": 30.0, "log_level": "INFO",
    ...     "trusted_proxies": []})
    >>> opts["worker_class"], opts["worker_connections"], opts["keepalive"]
    ('server_app.serving.GeventWorker', 10000, 30)
    """
    trusted = [str(n) for n in TrustedProxies(cfg.get("trusted_proxies") or []).networks]
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
        # gunicorn believes X-Forwarded-Proto (and its other forwarded headers) from these peers
        # only: the same ones whose X-Forwarded-For the app believes (none by default)
        "forwarded_allow_ips": ",".join(trusted),
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

            app = create_app(cfg)
            proxies = TrustedProxies(cfg.get("trusted_proxies") or [])
            return ForwardedFor(app, proxies) if proxies else app

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
        - at most ``max_connections_per_address`` connections per client address; from a
          trusted proxy, requests in progress (and open websockets) per address of the client
          it forwards for (``TrustedProxies``), while the proxy itself is not bounded.
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

        def _proxies(self) -> TrustedProxies:
            proxies = getattr(self, "_trusted", None)
            if proxies is None:
                cfg = getattr(self, "v6nb_cfg", None) or {}
                proxies = self._trusted = TrustedProxies(cfg.get("trusted_proxies") or [])
            return proxies

        def _refuse(self, client: Any, ip: str, through: str = "") -> None:
            log.warning(
                "refused a connection from %s%s: it holds %d (max_connections_per_address)",
                ip,
                f" (through {through})" if through else "",
                self._per_address[ip],
            )
            try:
                client.settimeout(1.0)
                client.sendall(_busy_response())
            except OSError:
                pass

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            ip = addr[0] if isinstance(addr, tuple) else str(addr)
            # a trusted proxy carries many clients' requests: each is bounded by the client's
            # own address in handle_request; the proxy's connections are not
            proxies = self._proxies()
            counted = not (proxies and proxies.trusts(ip))
            bound = int(self._limit("max_connections_per_address", 0))
            if counted and bound and self._per_address[ip] >= bound:
                self._refuse(client, ip)
                client.close()
                return
            if counted:
                self._per_address[ip] += 1
            me = gevent.getcurrent()
            self._first.add(me)
            try:
                super().handle(listener, client, addr)
            finally:
                self._first.discard(me)
                if counted:
                    self._per_address[ip] -= 1
                    if self._per_address[ip] <= 0:
                        del self._per_address[ip]

        def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
            peer = addr[0] if isinstance(addr, tuple) else str(addr)
            client = ""
            proxies = self._proxies()
            if proxies and proxies.trusts(peer):
                forwarded = ",".join(v for n, v in req.headers if n == "X-FORWARDED-FOR")
                client = proxies.client_address(peer, forwarded)
                bound = int(self._limit("max_connections_per_address", 0))
                if bound and self._per_address[client] >= bound:
                    self._refuse(sock, client, through=peer)
                    raise StopIteration()  # closes the proxy's connection: the body is unread
                self._per_address[client] += 1
            try:
                return self._serve(listener_name, req, sock, addr)
            finally:
                if client:
                    self._per_address[client] -= 1
                    if self._per_address[client] <= 0:
                        del self._per_address[client]

        def _serve(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
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
