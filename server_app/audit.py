"""The server's audit log: one writer of security-relevant acts (logins, key changes, deletions, ...).

Each act becomes an ``AuditEvent`` row (``GET /api/audit``, docs/security.md) and an INFO line on the
``v6nb.audit`` logger. ``detail`` must never hold a secret: no passwords, tokens, API keys or private
keys (public-key fingerprints are fine).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import has_request_context, request
from sqlalchemy.orm import Session

from .models import AuditEvent, utcnow

if TYPE_CHECKING:
    from .db import Database
    from .permissions import Identity

__all__ = ["ACTIONS", "record", "record_now"]

_log = logging.getLogger("v6nb.audit")

# every action the server records (docs/security.md lists what each means)
ACTIONS = (
    "admin_changed",
    "collaboration_created",
    "collaboration_deleted",
    "encryption_changed",
    "key_replaced",
    "login",
    "login_failed",
    "logout",
    "node_created",
    "node_deleted",
    "organization_created",
    "organization_deleted",
    "password_changed",
    "role_assigned",
    "role_changed",
    "role_created",
    "role_deleted",
    "role_removed",
    "rule_granted",
    "rule_revoked",
    "sessions_revoked",
    "task_deleted",
    "token_reuse",
    "totp_enabled",
    "user_created",
    "user_deleted",
    "user_updated",
)

# keys whose values are never stored, whatever a caller passes by mistake
_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "private_key",
        "secret",
        "totp",
        "totp_secret",
    }
)


def _event(
    action: str,
    actor: Identity | None,
    target: str,
    outcome: str,
    detail: dict[str, Any] | None,
    address: str | None,
) -> AuditEvent:
    if address is None and has_request_context():
        address = request.remote_addr
    clean = {k: v for k, v in (detail or {}).items() if k.lower() not in _SECRET_KEYS}
    event = AuditEvent(
        time=utcnow(),
        action=action[:64],
        outcome=outcome[:16],
        actor_type=actor.type if actor is not None else None,
        actor_id=actor.id if actor is not None else None,
        actor_org_id=actor.org_id if actor is not None else None,
        address=(address or None) and address[:64],
        target=str(target)[:255],
        detail=clean,
    )
    _log.info(
        "%s %s by %s from %s on %r %s",
        action,
        outcome,
        actor.label if actor is not None else "-",
        address or "-",
        event.target,
        clean,
    )
    return event


def record(
    s: Session,
    action: str,
    *,
    actor: Identity | None = None,
    target: str = "",
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    address: str | None = None,
) -> AuditEvent:
    """Add an audit event to session ``s``: it is committed (or rolled back) with the request's work.

    ``actor`` is the caller (None: anonymous, e.g. a failed login); ``address`` defaults to the
    request's client address. Never pass secrets in ``detail``.

    Examples
    --------
    >>> record(s, "node_deleted", actor=ident, target="node 3", detail={"name": "a @ ab"})  # doctest: +SKIP
    """
    event = _event(action, actor, target, outcome, detail, address)
    s.add(event)
    return event


def record_now(
    db: Database,
    action: str,
    *,
    actor: Identity | None = None,
    target: str = "",
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    address: str | None = None,
) -> None:
    """Write an audit event at once in its own session (for failures whose request rolls back).

    ``db`` is the server's :class:`~server_app.db.Database` (``state().db``).

    Examples
    --------
    >>> record_now(state().db, "login_failed", target="user alice", outcome="denied")  # doctest: +SKIP
    """
    event = _event(action, actor, target, outcome, detail, address)
    with db.new_session() as s:
        s.add(event)
        s.commit()
