"""The Flask app factory: settings, database, tokens, socket.io and the resources under /api."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestTimeout

from vantage6nb.common.errors import NotFound, PayloadTooLarge, V6Error

from .blobs import BlobStore
from .bootstrap import ensure_root, prepare_data_dir, secret_for
from .config import load_config
from .db import Database
from .error_handlers import register_error_handlers
from .openapi import bp as openapi_bp
from .resources import BLUEPRINTS
from .sockets import SocketHub
from .state import ServerState
from .tokens import TokenService

__all__ = ["create_app"]


class _CompactJSON(DefaultJSONProvider):
    sort_keys = False  # cheaper, and keeps the documented field order
    compact = True


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the server: REST API under ``/api`` and socket.io (path ``/socket.io``) in one WSGI app.

    Parameters
    ----------
    config
        Settings (see ``server_app.config.SETTINGS``); missing keys take their defaults. The
        environment is not read here: ``load_config`` does that for the command line.

    Examples
    --------
    >>> app = create_app({"data_dir": "/tmp/v6nb-doc", "root_password": "secret-root"})  # doctest: +SKIP
    >>> app.test_client().get("/api/health").get_json()  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """
    cfg = load_config(None, environ={}, overrides=config or {})
    logging.getLogger("server_app").setLevel(cfg["log_level"])
    data_dir = prepare_data_dir(cfg)

    app = Flask("server_app")
    app.json = _CompactJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = cfg["max_body_mb"] * 1024 * 1024
    app.url_map.strict_slashes = False

    db = Database()
    db.init_app(app, cfg["database_url"], shared=bool(cfg["message_queue_url"]))
    tokens = TokenService(
        secret_for(cfg, data_dir),
        access_minutes=cfg["access_token_minutes"],
        refresh_hours=cfg["refresh_token_hours"],
        container_hours=cfg["container_token_hours"],
    )
    hub = SocketHub(
        tokens,
        db,
        message_queue_url=cfg["message_queue_url"],
        message_queue_channel=cfg["message_queue_channel"],
        max_body_bytes=app.config["MAX_CONTENT_LENGTH"],
        node_offline_s=cfg["node_offline_s"],
    )
    app.extensions["v6nb"] = ServerState(config=cfg, db=db, tokens=tokens, hub=hub)
    ensure_root(db, cfg, data_dir)
    blobs = app.extensions["v6nb_blobs"] = BlobStore.from_config(cfg, data_dir)
    with db.new_session() as s:  # files of tasks deleted by a cascade (or a crash mid-delete)
        blobs.sweep(s)

    register_error_handlers(app)

    @app.url_value_preprocessor
    def _ids_in_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
        # An id no database integer can hold names nothing: 404, not an overflow deep in the driver.
        for key, value in (values or {}).items():
            if isinstance(value, int) and not 0 < value < 2**63:
                raise NotFound(f"{key.removesuffix('_id').capitalize()} {value} does not exist.")

    _guard_bodies(app, tokens, cfg["max_unauthenticated_body_kb"] * 1024)

    for bp in BLUEPRINTS:
        app.register_blueprint(bp, url_prefix="/api")
    app.register_blueprint(openapi_bp, url_prefix="/api")  # describes the routes above
    # socket.io answers /socket.io/ on the same port; everything else goes to Flask.
    app.wsgi_app = socketio.WSGIApp(hub.sio, app.wsgi_app, socketio_path="socket.io")  # type: ignore[method-assign]
    return app


def _guard_bodies(app: Flask, tokens: TokenService, anonymous_limit: int) -> None:
    """Bodies are bounded before and while they are read: a request without a valid bearer token
    may send ``anonymous_limit`` bytes (a login), others the endpoint's limit (max_body_mb, or
    max_result_mb for binary results); a body that goes silent is a 408, not a 500."""

    @app.before_request
    def _limit_body() -> None:
        env = request.environ
        chunked = "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not request.content_length and not chunked:
            return
        limit = None if _has_valid_token(tokens) else anonymous_limit
        if limit is not None and (request.content_length or 0) > limit:
            raise PayloadTooLarge(_anonymous_msg(limit))
        env["wsgi.input"] = _GuardedInput(env["wsgi.input"], limit)


def _has_valid_token(tokens: TokenService) -> bool:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    for kind in ("access", "refresh"):
        try:
            tokens.verify(token.strip(), kind=kind)
            return True
        except V6Error:
            continue
    return False


def _anonymous_msg(limit: int) -> str:
    return (
        f"Request body too large for a request without a valid token: at most {limit // 1024} "
        "KiB (max_unauthenticated_body_kb). Log in first and send the token as "
        "'Authorization: Bearer <token>'."
    )


class _GuardedInput:
    """``wsgi.input`` that counts what it reads against ``limit`` (None: the endpoint's own
    limit applies) and turns a read that timed out (body_timeout_s) into a 408."""

    def __init__(self, stream: Any, limit: int | None) -> None:
        self._stream, self._limit, self._read = stream, limit, 0

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._limit is not None and self._read > self._limit:
            raise PayloadTooLarge(_anonymous_msg(self._limit))
        return data

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, name)(*args)
        except TimeoutError:
            raise RequestTimeout(
                "The request body stopped arriving (body_timeout_s): send it again."
            ) from None

    def read(self, *args: Any) -> bytes:
        return self._count(self._call("read", *args))

    def readline(self, *args: Any) -> bytes:
        return self._count(self._call("readline", *args))

    def readlines(self, *args: Any) -> list[bytes]:
        return [self._count(line) for line in self._call("readlines", *args)]

    def __iter__(self) -> Any:
        while line := self.readline():
            yield line
