"""User accounts: list, create, read (including ``/user/me``), update, delete, revoke sessions, and
the roles and extra rules each holds."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, request
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import Conflict, NotFound, PermissionDenied, ValidationError

from ..audit import record, record_now
from ..bootstrap import hash_password, verify_password
from ..db import session
from ..login_limits import address_error
from ..models import AccessRule, Organization, Role, User, user_role, user_rule, username_key
from ..passwords import MIN_LENGTH, check_password
from ..permissions import (
    Identity,
    can_edit_user,
    denied,
    missing_rules,
    require,
    require_type,
    scoped_users,
    visible_user,
)
from ..request_parsing import (
    get_or_404,
    json_body,
    list_response,
    paginate,
    query_id,
    query_str,
    validated,
)
from ..rules import ADMIN_ROLES, Rule, role_ids_of, role_named, set_roles
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
    ids = [u.id for u in rows]
    roles: dict[int, list[int]] = {i: [] for i in ids}
    rules: dict[int, list[int]] = {i: [] for i in ids}
    if ids:  # two queries for the page, not two per user
        for uid, rid in s.execute(
            select(user_role.c.user_id, user_role.c.role_id)
            .where(user_role.c.user_id.in_(ids))
            .order_by(user_role.c.role_id)
        ):
            roles[uid].append(rid)
        for uid, rid in s.execute(
            select(user_rule.c.user_id, user_rule.c.rule_id)
            .where(user_rule.c.user_id.in_(ids))
            .order_by(user_rule.c.rule_id)
        ):
            rules[uid].append(rid)
    return list_response([user_json(u, roles=roles[u.id], rules=rules[u.id]) for u in rows], meta)


@bp.post("/user")
def create_user() -> Any:
    ident = require("user", "create")
    body = validated(
        json_body(),
        {"username": str, "password": str, "organization_id": int},
        {"is_admin": bool, "email": str, "roles": list},
        ids=("organization_id",),
        strings={"username": 255, "password": 1024, "email": 255},
    )
    s = session()
    get_or_404(s, Organization, body["organization_id"])
    require("user", "create", org_id=body["organization_id"], ident=ident)
    if "roles" in body:
        roles = [_role(s, rid, "roles") for rid in body["roles"]]
    else:  # the one-bit model: root for is_admin, else researcher
        roles = [role_named(s, "root" if body.get("is_admin") else "researcher")]
    for role in roles:
        _check_grant(ident, role, body["organization_id"])
    name = _username(body["username"], s)
    check_password(body["password"], username=name)
    user = User(
        username=name,
        password_hash=hash_password(body["password"]),
        organization_id=body["organization_id"],
        is_admin=body.get("is_admin", False),
        email=body.get("email"),
    )
    s.add(user)
    s.flush()
    set_roles(s, user, [r.id for r in roles])
    record(
        s,
        "user_created",
        actor=ident,
        target=f"user {user.id}",
        detail={
            "username": user.username,
            "organization_id": user.organization_id,
            "is_admin": user.is_admin,
            "roles": [r.name for r in roles],
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
    return {**_with_roles(s, user), "organization_name": org.name if org else None}


@bp.get("/user/<int:user_id>")
def get_user(user_id: int) -> Any:
    s = session()
    return _with_roles(s, visible_user(s, require_type("user"), user_id))


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
    if not can_edit_user(ident, user):
        raise denied(Rule("user", "edit", "organization"), "You may only change your own account")
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
    managed = sorted({"username", "organization_id"} & set(body))
    if managed:  # not with the user:edit:own everyone holds
        require(
            "user",
            "edit",
            org_id=user.organization_id,
            ident=ident,
            what=f"To change {', '.join(managed)}",
        )
    if "organization_id" in body:
        require(
            "user",
            "create",
            org_id=body["organization_id"],
            ident=ident,
            what="To move a user there",
        )
    if "is_admin" in body and body["is_admin"] != user.is_admin:
        _check_grant(ident, role_named(s, "root"), user.organization_id)
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
        # true: root (what is_admin meant); false: neither root nor organization admin
        keep = [rid for rid in role_ids_of(s, user.id) if rid not in _admin_role_ids(s)]
        if body["is_admin"]:
            keep.append(role_named(s, "root").id)
        elif not keep:
            keep = [role_named(s, "researcher").id]
        set_roles(s, user, keep)
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
    ident = require("user", "revoke")
    s = session()
    user = get_or_404(s, User, user_id)
    require("user", "revoke", org_id=user.organization_id, owner_id=user.id, ident=ident)
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
    ident = require("user", "delete")
    s = session()
    user = get_or_404(s, User, user_id)
    require("user", "delete", org_id=user.organization_id, ident=ident)
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


# roles and extra rules of a user ----------------------------------------------------------------


def _with_roles(s: Session, user: User) -> dict[str, Any]:
    return user_json(user, roles=role_ids_of(s, user.id), rules=_extra_rule_ids(s, user.id))


def _extra_rule_ids(s: Session, user_id: int) -> list[int]:
    return sorted(s.scalars(select(user_rule.c.rule_id).where(user_rule.c.user_id == user_id)))


def _admin_role_ids(s: Session) -> set[int]:
    return set(s.scalars(select(Role.id).where(Role.name.in_(ADMIN_ROLES))))


def _role(s: Session, role_id: Any, field: str = "role_id") -> Role:
    if isinstance(role_id, bool) or not isinstance(role_id, int):
        raise ValidationError(
            f"{field} must hold role ids (GET /api/role lists them).", errors={field: "not an id"}
        )
    return get_or_404(s, Role, role_id, "Role")


def _check_grant(ident: Identity, role: Role, org_id: int) -> None:
    """Refuse a role the caller does not fully hold, or another organization's role."""
    if role.organization_id is not None and role.organization_id != org_id:
        raise ValidationError(
            f"Role '{role.name}' belongs to organization {role.organization_id}: give it only to "
            "that organization's users.",
            errors={"role_id": "of another organization"},
        )
    _check_rules(
        ident, [Rule(r.resource, r.operation, r.scope) for r in role.rules], f"role '{role.name}'"
    )


def _check_rules(ident: Identity, rules: list[Rule], what: str) -> None:
    missing = missing_rules(ident, rules)
    if missing:
        names = ", ".join(str(r) for r in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PermissionDenied(
            f"You cannot grant {what}: you do not hold rule {names} yourself (nobody grants a "
            "rule they do not hold); ask someone who holds it.",
            errors={"rules": [str(r) for r in missing]},
        )


def _managed_user(user_id: int) -> tuple[Identity, User]:
    ident = require("user", "edit")
    s = session()
    user = visible_user(s, ident, user_id)
    require("user", "edit", org_id=user.organization_id, ident=ident, what="To change their rights")
    return ident, user


def _rights_changed(
    s: Session, ident: Identity, user: User, action: str, detail: dict[str, Any]
) -> Any:
    end_sessions(s, user)  # their tokens carry the old rights: they log in again
    record(s, action, actor=ident, target=f"user {user.id}", detail=detail)
    out = _with_roles(s, user)
    s.commit()
    audit("%s on user %s (%s) by %s: %s", action, user.id, user.username, ident.label, detail)
    return out


@bp.post("/user/<int:user_id>/role/<int:role_id>")
def add_user_role(user_id: int, role_id: int) -> Any:
    ident, user = _managed_user(user_id)
    s = session()
    role = _role(s, role_id)
    _check_grant(ident, role, user.organization_id)
    have = role_ids_of(s, user.id)
    if role.id in have:
        raise Conflict(f"User {user_id} already holds role '{role.name}'.")
    set_roles(s, user, [*have, role.id])
    return _rights_changed(
        s, ident, user, "role_assigned", {"role": role.name, "role_id": role.id}
    ), 201


@bp.delete("/user/<int:user_id>/role/<int:role_id>")
def remove_user_role(user_id: int, role_id: int) -> Any:
    ident, user = _managed_user(user_id)
    s = session()
    role = _role(s, role_id)
    have = role_ids_of(s, user.id)
    if role.id not in have:
        raise NotFound(f"User {user_id} does not hold role '{role.name}'.")
    if user.id == ident.id and role.name == "root":
        raise Conflict(
            "You cannot remove your own root role: ask another root administrator.",
            errors={"role_id": "own account"},
        )
    _check_grant(ident, role, user.organization_id)  # taking away needs the same as giving
    set_roles(s, user, [rid for rid in have if rid != role.id])
    return _rights_changed(s, ident, user, "role_removed", {"role": role.name, "role_id": role.id})


def _rule(s: Session, rule_id: int) -> tuple[AccessRule, Rule]:
    row = get_or_404(s, AccessRule, rule_id, "Rule")
    return row, Rule(row.resource, row.operation, row.scope)


@bp.post("/user/<int:user_id>/rule/<int:rule_id>")
def add_user_rule(user_id: int, rule_id: int) -> Any:
    ident, user = _managed_user(user_id)
    s = session()
    row, rule = _rule(s, rule_id)
    _check_rules(ident, [rule], f"rule {rule}")
    if rule_id in _extra_rule_ids(s, user.id):
        raise Conflict(f"User {user_id} already holds rule {rule} as an extra rule.")
    s.execute(insert(user_rule).values(user_id=user.id, rule_id=row.id))
    return _rights_changed(
        s, ident, user, "rule_granted", {"rule": str(rule), "rule_id": row.id}
    ), 201


@bp.delete("/user/<int:user_id>/rule/<int:rule_id>")
def remove_user_rule(user_id: int, rule_id: int) -> Any:
    ident, user = _managed_user(user_id)
    s = session()
    row, rule = _rule(s, rule_id)
    if rule_id not in _extra_rule_ids(s, user.id):
        raise NotFound(
            f"User {user_id} holds no extra rule {rule} (roles' rules go with the role)."
        )
    _check_rules(ident, [rule], f"rule {rule}")
    s.execute(
        delete(user_rule).where(user_rule.c.user_id == user.id, user_rule.c.rule_id == row.id)
    )
    return _rights_changed(s, ident, user, "rule_revoked", {"rule": str(rule), "rule_id": row.id})
