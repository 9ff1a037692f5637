"""Every error as the JSON shape of docs/api.md: typed errors, HTTP errors, database conflicts, the rest."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from vantage6nb.common import errors as E

__all__ = ["error_response", "register_error_handlers"]

log = logging.getLogger("server_app.errors")

_HTTP_CODES: dict[int, tuple[type[E.V6Error], str]] = {
    400: (E.BadRequest, "Bad request."),
    401: (E.AuthenticationError, "Not authenticated."),
    403: (E.PermissionDenied, "Forbidden."),
    404: (E.NotFound, "No such endpoint: {method} {path}. See docs/api.md for the API."),
    409: (E.Conflict, "Conflict."),
    413: (
        E.PayloadTooLarge,
        "Request body too large: the server accepts at most {limit} MiB (max_body_mb).",
    ),
}


def error_response(err: E.V6Error) -> tuple[Response, int]:
    """The JSON response for a typed error."""
    return jsonify(err.to_dict()), err.status


def _rollback() -> None:
    from flask import g

    s = g.get("_v6nb_session")
    if s is not None:
        s.rollback()


def register_error_handlers(app: Flask) -> None:
    """Install the handlers; after this nothing leaves the app as HTML or a bare 500."""

    @app.errorhandler(E.V6Error)
    def _typed(err: E.V6Error) -> tuple[Response, int]:
        _rollback()
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> tuple[Response, int]:
        _rollback()
        status = err.code or 500
        if status == 405:
            allowed = sorted(
                m for m in (getattr(err, "valid_methods", None) or []) if m != "OPTIONS"
            )
            body = {
                "msg": f"Method {request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
                "errors": {},
                "code": "method_not_allowed",
            }
            resp = jsonify(body)
            resp.headers["Allow"] = ", ".join(allowed)
            return resp, 405
        cls, template = _HTTP_CODES.get(status, (E.V6Error, ""))
        limit = app.config.get("MAX_CONTENT_LENGTH", 0) // (1024 * 1024)
        msg = (
            template.format(method=request.method, path=request.path, limit=limit)
            if template
            else ""
        )
        if status == 400 and err.description:
            msg = f"Bad request: {err.description}"
        if cls is E.V6Error:
            return jsonify(
                {"msg": msg or str(err.description), "errors": {}, "code": "error"}
            ), status
        return error_response(cls(msg))

    @app.errorhandler(IntegrityError)
    def _integrity(err: IntegrityError) -> tuple[Response, int]:
        _rollback()
        log.info("integrity error on %s %s: %s", request.method, request.path, err.orig)
        return error_response(
            E.Conflict(
                "The request conflicts with existing data (a duplicate name, or rows that still depend "
                "on this one): change the values or delete the dependent rows first."
            )
        )

    @app.errorhandler(DataError)
    def _data(err: DataError) -> tuple[Response, int]:
        _rollback()
        return error_response(
            E.ValidationError("The database rejected a value: check lengths and characters.")
        )

    @app.errorhandler(OperationalError)
    def _operational(err: OperationalError) -> tuple[Response, int]:
        _rollback()
        log.error("database unavailable on %s %s: %s", request.method, request.path, err.orig)
        return error_response(
            E.ServerUnavailable("The database is busy or unavailable; retry in a moment.")
        )

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> tuple[Response, int]:
        _rollback()
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(
            {
                "msg": "Internal server error; the server log has the details.",
                "errors": {},
                "code": "error",
            }
        ), 500
