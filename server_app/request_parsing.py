"""Reading requests safely: JSON bodies, typed fields, ids, query filters, pagination and timestamps."""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import lru_cache
from typing import Any, TypeVar

from flask import request
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import BadRequest, NotFound, ValidationError
from vantage6nb.common.schemas import require_fields

__all__ = [
    "MAX_ID",
    "check_id",
    "check_str",
    "get_or_404",
    "json_body",
    "list_response",
    "paginate",
    "paginate_rows",
    "parse_time",
    "query_id",
    "query_str",
    "validated",
]

MAX_ID = 2**63 - 1  # the largest id a database integer column holds
DEFAULT_PER_PAGE, MAX_PER_PAGE = 50, 500

M = TypeVar("M")


def json_body() -> dict[str, Any]:
    """The request's JSON object; 400 when the body is missing, not JSON, or not an object."""
    data = request.get_data(cache=True)  # raises 413 past max_body_mb
    if not data.strip():
        raise BadRequest("Request body is empty: send a JSON object.", errors={"body": "required"})
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # nesting deeper than the JSON decoder's recursion limit
        raise BadRequest(
            "Request body is JSON nested too deeply: send a flatter object.",
            errors={"body": "nested too deeply"},
        ) from None
    if body is None:
        raise BadRequest("Request body is not valid JSON.", errors={"body": "invalid JSON"})
    if not isinstance(body, dict):
        raise ValidationError(
            "Request body must be a JSON object.", errors={"body": "expected an object"}
        )
    if _SURROGATE_ESCAPE.search(data):
        _check_encodable(body)
    return body


# JSON may spell a lone UTF-16 surrogate (\ud800) that no database driver can encode; only bodies
# holding such an escape (valid pairs such as emoji look alike) get the full check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_encodable(body: dict[str, Any]) -> None:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            "Request body holds a lone UTF-16 surrogate (e.g. \\ud800), which is not text: "
            "send valid Unicode.",
            errors={"body": "invalid Unicode"},
        ) from exc


def validated(
    body: dict[str, Any],
    required: dict[str, Any],
    optional: dict[str, Any] | None = None,
    *,
    ids: tuple[str, ...] = (),
    strings: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Type-check ``body`` (see ``require_fields``), then range-check ``ids`` and cap ``strings`` lengths."""
    out = require_fields(body, required, optional=optional)
    errors: dict[str, str] = {}
    for name in ids:
        if name in out and not 0 < out[name] <= MAX_ID:
            errors[name] = "must be a positive id"
    for name, limit in (strings or {}).items():
        if name in out and (problem := _string_problem(out[name], limit)):
            errors[name] = problem
    if errors:
        raise ValidationError("Invalid request: fix the fields listed in 'errors'.", errors=errors)
    return out


def _string_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def check_str(name: str, value: str, limit: int, *, allow_empty: bool = False) -> str:
    """Raise a ValidationError when ``value`` is empty (unless allowed), too long or has NULs."""
    problem = _string_problem(value, limit) or (
        None if allow_empty or value.strip() else "must not be empty"
    )
    if problem:
        raise ValidationError(f"Invalid '{name}': {problem}.", errors={name: problem})
    return value


def check_id(name: str, value: Any) -> int:
    """``value`` as a valid database id, else a ValidationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ValidationError(
            f"'{name}' must be a positive integer id.", errors={name: "expected a positive id"}
        )
    return value


def get_or_404(s: Session, model: type[M], ident: int, what: str | None = None) -> M:
    """Fetch one row by primary key or raise NotFound ("Organization 7 does not exist.")."""
    label = what or model.__name__
    if not 0 < ident <= MAX_ID:
        raise NotFound(f"{label} {ident} does not exist.")
    obj = s.get(model, ident)
    if obj is None:
        raise NotFound(f"{label} {ident} does not exist.")
    return obj


def query_id(name: str) -> int | None:
    """An id filter from the query string, or None when absent."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_ID:
        raise ValidationError(
            f"Query parameter '{name}' must be a positive integer id.",
            errors={name: "expected a positive id"},
        )
    return value


def query_str(name: str, limit: int = 255) -> str | None:
    """A string filter from the query string, or None when absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    problem = _string_problem(raw, limit)
    if problem:
        raise ValidationError(f"Query parameter '{name}': {problem}.", errors={name: problem})
    return raw


def _page_args() -> tuple[int, int]:
    errors: dict[str, str] = {}
    values = {}
    for name, default, top in (("page", 1, MAX_ID), ("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)):
        raw = request.args.get(name)
        try:
            values[name] = default if raw in (None, "") else int(raw)
        except ValueError:
            values[name] = 0
        if not 1 <= values[name] <= top:
            errors[name] = f"must be an integer from 1 to {top}"
    if not errors and (values["page"] - 1) * values["per_page"] > MAX_ID:
        errors["page"] = f"page x per_page must stay under {MAX_ID}: ask for an earlier page"
    if errors:
        raise ValidationError(
            "Invalid pagination: fix the parameters listed in 'errors'.", errors=errors
        )
    return values["page"], values["per_page"]


def paginate(s: Session, stmt: Select[Any]) -> tuple[list[Any], dict[str, int]]:
    """Run ``stmt`` for the requested page; return the rows and ``{page, per_page, total}``."""
    page, per_page = _page_args()
    offset = (page - 1) * per_page
    items = list(s.scalars(stmt.limit(per_page).offset(offset)))
    if page == 1 and len(items) < per_page:
        total = len(items)  # the whole list fits on the first page: no count query
    else:
        total = s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    return items, {"page": page, "per_page": per_page, "total": int(total)}


def paginate_rows(
    stmt: Select[Any], params: dict[str, Any] | None = None
) -> tuple[list[Any], dict[str, int]]:
    """Like :func:`paginate` for a Core select of columns: rows as mappings, no ORM (the hot read path).

    ``params`` fill the statement's bound parameters. Pass a statement built once and reused (with
    bound parameters): its paginated form is cached too, so no per-request statement building.
    """
    from flask import current_app

    page, per_page = _page_args()
    values = dict(params or {}, v6nb_limit=per_page, v6nb_offset=(page - 1) * per_page)
    with current_app.extensions["v6nb_db"].engine.connect() as conn:
        rows = list(conn.execute(_paged(stmt), values).mappings())
        if page == 1 and len(rows) < per_page:
            total = len(rows)
        else:
            total = conn.scalar(_counted(stmt), values) or 0
    return rows, {"page": page, "per_page": per_page, "total": int(total)}


@lru_cache(maxsize=4096)
def _paged(stmt: Select[Any]) -> Select[Any]:
    return stmt.limit(bindparam("v6nb_limit")).offset(bindparam("v6nb_offset"))


@lru_cache(maxsize=4096)
def _counted(stmt: Select[Any]) -> Select[Any]:
    return select(func.count()).select_from(stmt.order_by(None).subquery())


def list_response(data: list[Any], meta: dict[str, int]) -> dict[str, Any]:
    """The list envelope: ``{"data", "page", "per_page", "total"}``."""
    return {"data": data, **meta}


def parse_time(name: str, value: Any) -> dt.datetime:
    """An ISO 8601 timestamp (``Z`` or offset allowed) as a naive UTC datetime."""
    if not isinstance(value, str):
        raise ValidationError(
            f"'{name}' must be an ISO 8601 timestamp.", errors={name: "expected an ISO timestamp"}
        )
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"'{name}' must be an ISO 8601 timestamp.", errors={name: "expected an ISO timestamp"}
        ) from exc
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past the last date
            raise ValidationError(
                f"'{name}' is out of range once converted to UTC: send a time in UTC.",
                errors={name: "out of range"},
            ) from exc
    return parsed
