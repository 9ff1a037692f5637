"""The server's audit log, read by administrators: ``GET /api/audit``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from vantage6nb.common.errors import ValidationError

from ..db import session
from ..models import AuditEvent
from ..permissions import require
from ..request_parsing import list_response, paginate, parse_time, query_str
from ..serializers import iso

__all__ = ["audit_event_json", "bp"]

bp = Blueprint("audit", __name__)


def audit_event_json(e: AuditEvent) -> dict[str, Any]:
    """An audit event as docs/api.md shows it."""
    return {
        "id": e.id,
        "time": iso(e.time),
        "action": e.action,
        "outcome": e.outcome,
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "actor_org_id": e.actor_org_id,
        "address": e.address,
        "target": e.target,
        "detail": e.detail or {},
    }


def _since(value: str) -> Any:
    try:
        return parse_time("since", value)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: no UTC time to compare with
        raise ValidationError(
            "'since' is out of range: send an ISO 8601 time between years 1 and 9999 in UTC.",
            errors={"since": "out of range"},
        ) from None


@bp.get("/audit")
def list_audit_events() -> Any:
    # oldest first (by id): pages stay stable while new events are appended
    require("audit", "view")
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if (action := query_str("action", 64)) is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if (since := query_str("since", 64)) is not None:
        stmt = stmt.where(AuditEvent.time >= _since(since))
    s = session()
    rows, meta = paginate(s, stmt)
    return list_response([audit_event_json(e) for e in rows], meta)
