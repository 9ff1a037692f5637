"""User accounts: list, create, read (including ``/user/me``), update and delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from vantage6nb.common.errors import Conflict, PermissionDenied, ValidationError

from ..bootstrap import hash_password
from ..db import session
from ..models import Organization, User
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
from ..state import audit

__all__ = ["MIN_PASSWORD", "bp"]

bp = Blueprint("users", __name__)

MIN_PASSWORD = 8


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"Password too short: use at least {MIN_PASSWORD} characters.",
            errors={"password": f"at least {MIN_PASSWORD} characters"},
        )
    return password


@bp.get("/user")
def list_users() -> Any:
    ident = require_type("user")
    s = session()
    stmt = scoped_users(ident).order_by(User.id)
    if (oid := query_id("organization_id")) is not None:
        stmt = stmt.where(User.organization_id == oid)
    if (name := query_str("username")) is not None:
        stmt = stmt.where(User.username == name)
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
    if not body["username"].strip():
        raise ValidationError(
            "username must not be empty.", errors={"username": "must not be empty"}
        )
    s = session()
    get_or_404(s, Organization, body["organization_id"])
    user = User(
        username=body["username"].strip(),
        password_hash=hash_password(_check_password(body["password"])),
        organization_id=body["organization_id"],
        is_admin=body.get("is_admin", False),
        email=body.get("email"),
    )
    s.add(user)
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


@bp.patch("/user/<int:user_id>")
def update_user(user_id: int) -> Any:
    ident = require_type("user")
    user = visible_user(session(), ident, user_id)
    if not can_edit_user(ident, user_id):
        raise PermissionDenied("You may only change your own account.")
    body = validated(
        json_body(),
        {},
        {"password": str, "email": str, "username": str, "is_admin": bool, "organization_id": int},
        ids=("organization_id",),
        strings={"username": 255, "password": 1024, "email": 255},
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
    s = session()
    if "password" in body:
        user.password_hash = hash_password(_check_password(body["password"]))
    if "email" in body:
        user.email = body["email"]
    if "username" in body:
        if not body["username"].strip():
            raise ValidationError(
                "username must not be empty.", errors={"username": "must not be empty"}
            )
        user.username = body["username"].strip()
    if "organization_id" in body:
        user.organization_id = get_or_404(s, Organization, body["organization_id"]).id
    if "is_admin" in body:
        user.is_admin = body["is_admin"]
        audit(
            "user %s (%s) is_admin=%s set by %s", user.id, user.username, user.is_admin, ident.label
        )
    s.commit()
    return user_json(user)


@bp.delete("/user/<int:user_id>")
def delete_user(user_id: int) -> Any:
    ident = require_admin()
    s = session()
    user = get_or_404(s, User, user_id)
    if user.id == ident.id:
        raise Conflict("You cannot delete your own account.")
    s.delete(user)
    s.commit()
    audit("user %s (%s) deleted by %s", user_id, user.username, ident.label)
    return {"msg": f"User {user_id} deleted."}
