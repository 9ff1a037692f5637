"""User accounts: list, create, read (including ``/user/me``), update, delete and revoke sessions."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import Conflict, PermissionDenied, ValidationError

from ..audit import record, record_now
from ..bootstrap import hash_password, verify_password
from ..db import session
from ..login_limits import address_error
from ..models import Organization, User, username_key
from ..passwords import MIN_LENGTH, check_password
from ..permissions import can_edit_user, require_admin, require_type, scoped_users, visible_user
from ..request_parsing import (
    get_or_404,
    json_body,
    list_response,
    paginate,
    query_id,
    query_str,
    validated,
)
from ..serializers import user_json
from ..sessions import end_sessions, forget_after_commit
from ..state import audit, state
from .auth import issue_user_tokens, login_guard

__all__ = ["MIN_PASSWORD", "bp"]

bp = Blueprint("users", __name__)
log = logging.getLogger("server_app.users")

MIN_PASSWORD = MIN_LENGTH


def _username(value: str, s: Session, *, except_id: int | None = None) -> str:
    """A stripped, non-empty username no other account has in any case (409 otherwise)."""
    name = value.strip()
    if not name:
        raise ValidationError(
            "username must not be empty.", errors={"username": "must not be empty"}
        )
    other = s.scalar(select(User).where(User.username_key == username_key(name)))
    if other is not None and other.id != except_id:
        raise Conflict(
            f"A user named '{name}' exists already (names are compared without case): "
            "choose another username.",
            errors={"username": "exists already"},
        )
    return name


@bp.get("/user")
def list_users() -> Any:
    ident = require_type("user")
    s = session()
    stmt = scoped_users(ident).order_by(User.id)
    if (oid := query_id("organization_id")) is not None:
        stmt = stmt.where(User.organization_id == oid)
    if (name := query_str("username")) is not None:
        stmt = stmt.where(User.username_key == username_key(name.strip()))
    rows, meta = paginate(s, stmt)
    return list_response([user_json(u) for u in rows], meta)


@bp.post("/user")
def create_user() -> Any:
    ident = require_admin()
    body = validated(
        json_body(),
        {"username": str, "password": str, "organization_id": int},
        {"is_admin": bool, "email": str},
        ids=("organization_id",),
        strings={"username": 255, "password": 1024, "email": 255},
    )
    s = session()
    name = _username(body["username"], s)
    check_password(body["password"], username=name)
    get_or_404(s, Organization, body["organization_id"])
    user = User(
        username=name,
        password_hash=hash_password(body["password"]),
        organization_id=body["organization_id"],
        is_admin=body.get("is_admin", False),
        email=body.get("email"),
    )
    s.add(user)
    s.flush()
    record(
        s,
        "user_created",
        actor=ident,
        target=f"user {user.id}",
        detail={
            "username": user.username,
            "organization_id": user.organization_id,
            "is_admin": user.is_admin,
        },
    )
    s.commit()
    audit(
        "user %s (%s, admin=%s) created by %s", user.id, user.username, user.is_admin, ident.label
    )
    return user_json(user), 201


@bp.get("/user/me")
def me() -> Any:
    ident = require_type("user")
    s = session()
    user = get_or_404(s, User, ident.id)
    org = s.get(Organization, user.organization_id)
    return {**user_json(user), "organization_name": org.name if org else None}


@bp.get("/user/<int:user_id>")
def get_user(user_id: int) -> Any:
    return user_json(visible_user(session(), require_type("user"), user_id))


def _check_current_password(user: User, body: dict[str, Any]) -> None:
    """Changing one's own password needs the current one (a stolen token is not enough)."""
    if "current_password" not in body:
        raise ValidationError(
            "To change your own password, send your current password as 'current_password' too.",
            errors={"current_password": "required to change your own password"},
        )
    address = request.remote_addr or "unknown"
    if (wait := login_guard().address_wait(address)) is not None:
        raise address_error(wait)
    if not verify_password(user.password_hash, body["current_password"]):
        login_guard().address_failed(address)
        log.warning("wrong current password for user %s from %s", user.id, address)
        record_now(
            state().db,
            "password_changed",
            target=f"user {user.id}",
            outcome="denied",
            detail={"reason": "wrong current password"},
            address=address,
        )
        raise PermissionDenied(
            "The current password is wrong: send your present password as 'current_password' "
            "(forgotten? ask an administrator to set a new one).",
            errors={"current_password": "wrong"},
        )


@bp.patch("/user/<int:user_id>")
def update_user(user_id: int) -> Any:
    ident = require_type("user")
    s = session()
    user = visible_user(s, ident, user_id)
    if not can_edit_user(ident, user_id):
        raise PermissionDenied("You may only change your own account.")
    body = validated(
        json_body(),
        {},
        {
            "password": str,
            "current_password": str,
            "email": str,
            "username": str,
            "is_admin": bool,
            "organization_id": int,
        },
        ids=("organization_id",),
        strings={"username": 255, "password": 1024, "current_password": 1024, "email": 255},
    )
    admin_only = sorted({"username", "is_admin", "organization_id"} & set(body))
    if admin_only and not ident.is_admin:
        raise PermissionDenied(f"Only an administrator may change {', '.join(admin_only)}.")
    if body.get("is_admin") is False and user.id == ident.id and user.is_admin:
        # else the last administrator can lock everyone out (a restart does not restore it)
        raise Conflict(
            "You cannot remove your own administrator rights: ask another administrator.",
            errors={"is_admin": "own account"},
        )
    own = user.id == ident.id
    changed: list[str] = []
    if "username" in body:
        name = _username(body["username"], s, except_id=user.id)
        if name != user.username:
            user.username = name
            changed.append("username")
    if "password" in body:
        if own:
            _check_current_password(user, body)
        check_password(body["password"], username=user.username)
        user.password_hash = hash_password(body["password"])
        end_sessions(s, user)  # every token of the account, the caller's own included
        record(s, "password_changed", actor=ident, target=f"user {user.id}")
    if "email" in body and body["email"] != user.email:
        user.email = body["email"]
        changed.append("email")
    if "organization_id" in body and body["organization_id"] != user.organization_id:
        user.organization_id = get_or_404(s, Organization, body["organization_id"]).id
        end_sessions(s, user)  # tokens name the organization
        changed.append("organization_id")
    if "is_admin" in body and body["is_admin"] != user.is_admin:
        user.is_admin = body["is_admin"]
        end_sessions(s, user)  # tokens carry the rights they were issued with
        record(
            s,
            "admin_changed",
            actor=ident,
            target=f"user {user.id}",
            detail={"is_admin": user.is_admin},
        )
        audit(
            "user %s (%s) is_admin=%s set by %s", user.id, user.username, user.is_admin, ident.label
        )
    if changed:
        record(s, "user_updated", actor=ident, target=f"user {user.id}", detail={"fields": changed})
    out = user_json(user)
    if own and "password" in body:
        # the caller's session ended with the others: here is a new one
        out.update(issue_user_tokens(s, user))
    s.commit()
    return out


@bp.post("/user/<int:user_id>/revoke")
def revoke_user(user_id: int) -> Any:
    ident = require_admin()
    s = session()
    user = get_or_404(s, User, user_id)
    end_sessions(s, user)
    record(s, "sessions_revoked", actor=ident, target=f"user {user.id}")
    s.commit()
    audit("sessions of user %s (%s) revoked by %s", user.id, user.username, ident.label)
    return {
        "msg": f"Every session of user {user_id} ({user.username}) has ended: their tokens no "
        "longer work, and they must log in again."
    }


@bp.delete("/user/<int:user_id>")
def delete_user(user_id: int) -> Any:
    ident = require_admin()
    s = session()
    user = get_or_404(s, User, user_id)
    if user.id == ident.id:
        raise Conflict("You cannot delete your own account.")
    record(
        s, "user_deleted", actor=ident, target=f"user {user_id}", detail={"username": user.username}
    )
    s.delete(user)
    forget_after_commit(s, user_id)
    s.commit()
    audit("user %s (%s) deleted by %s", user_id, user.username, ident.label)
    return {"msg": f"User {user_id} deleted."}
