"""Roles and rules: list the rule table, list and manage roles (``/api/rule``, ``/api/role``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import Conflict, ValidationError

from ..audit import record
from ..db import session
from ..models import AccessRule, Organization, Role
from ..permissions import Identity, missing_rules, require, require_type, scope_filter
from ..request_parsing import get_or_404, json_body, list_response, paginate, query_str, validated
from ..rules import Rule, holders
from ..serializers import role_json, rule_json
from ..sessions import end_sessions
from ..state import audit

__all__ = ["bp"]

bp = Blueprint("roles", __name__)


@bp.get("/rule")
def list_rules() -> Any:
    require_type("user")
    stmt = select(AccessRule).order_by(AccessRule.id)
    for name in ("resource", "operation", "scope"):
        if (value := query_str(name, 32)) is not None:
            stmt = stmt.where(getattr(AccessRule, name) == value)
    rows, meta = paginate(session(), stmt)
    return list_response([rule_json(r) for r in rows], meta)


def _visible_roles(ident: Identity) -> Any:
    """Server-wide roles, and organization roles the caller's ``role:view`` rule covers."""
    clause = scope_filter(ident, "role", org=Role.organization_id)
    if clause is None:
        return select(Role)
    return select(Role).where(or_(Role.organization_id.is_(None), clause))


@bp.get("/role")
def list_roles() -> Any:
    ident = require_type("user")
    stmt = _visible_roles(ident).order_by(Role.id)
    if (name := query_str("name", 255)) is not None:
        stmt = stmt.where(Role.name == name)
    rows, meta = paginate(session(), stmt)
    return list_response([role_json(r) for r in rows], meta)


@bp.get("/role/<int:role_id>")
def get_role(role_id: int) -> Any:
    ident = require_type("user")
    s = session()
    role = get_or_404(s, Role, role_id, "Role")
    if role.organization_id is not None:
        require("role", "view", org_id=role.organization_id, ident=ident)
    return role_json(role)


def _rules(s: Session, ident: Identity, ids: Any) -> list[AccessRule]:
    """The rule rows of ``ids``, all of which the caller must hold."""
    if not isinstance(ids, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValidationError(
            "rules must be a list of rule ids (GET /api/rule lists them).",
            errors={"rules": "a list of rule ids"},
        )
    rows = [get_or_404(s, AccessRule, i, "Rule") for i in dict.fromkeys(ids)]
    missing = missing_rules(ident, [Rule(r.resource, r.operation, r.scope) for r in rows])
    if missing:
        raise _not_held(missing)
    return sorted(rows, key=lambda r: r.id)


def _not_held(missing: list[Rule]) -> Exception:
    from vantage6nb.common.errors import PermissionDenied

    names = ", ".join(str(r) for r in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return PermissionDenied(
        f"You cannot grant rule {names}: you do not hold it yourself (nobody grants a rule they "
        "do not hold); leave it out or ask someone who holds it.",
        errors={"rules": [str(r) for r in missing]},
    )


def _name(s: Session, value: str, except_id: int | None = None) -> str:
    name = value.strip()
    if not name:
        raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
    other = s.scalar(select(Role).where(Role.name == name))
    if other is not None and other.id != except_id:
        raise Conflict(
            f"A role named '{name}' exists already: choose another name.",
            errors={"name": "exists already"},
        )
    return name


@bp.post("/role")
def create_role() -> Any:
    ident = require("role", "create")
    body = validated(
        json_body(),
        {"name": str, "rules": list},
        {"description": str, "organization_id": int, "organization": int},
        ids=("organization_id", "organization"),
        strings={"name": 255, "description": 10_000},
    )
    s = session()
    # organization_id as vantage6 and our other endpoints name it; organization: the old spelling
    org_id = body.get("organization_id", body.get("organization", ident.org_id))
    get_or_404(s, Organization, org_id)
    # every role belongs to an organization; server-wide roles are the default ones
    require("role", "create", org_id=org_id, ident=ident)
    role = Role(
        name=_name(s, body["name"]),
        description=body.get("description", ""),
        organization_id=org_id,
        is_default=False,
    )
    role.rules = _rules(s, ident, body["rules"])
    s.add(role)
    s.flush()
    record(
        s,
        "role_created",
        actor=ident,
        target=f"role {role.id}",
        detail={
            "name": role.name,
            "organization_id": org_id,
            "rules": [str(_r(r)) for r in role.rules],
        },
    )
    s.commit()
    audit("role %s (%s) created by %s", role.id, role.name, ident.label)
    return role_json(role), 201


def _r(row: AccessRule) -> Rule:
    return Rule(row.resource, row.operation, row.scope)


def _own_role(s: Session, ident: Identity, role_id: int, operation: str) -> Role:
    require("role", operation, ident=ident)
    role = get_or_404(s, Role, role_id, "Role")
    if role.is_default or role.organization_id is None:
        raise Conflict(
            f"Role '{role.name}' is a default role and cannot be changed: create a role of your "
            "own (POST /api/role) with the rules you want.",
            errors={"role_id": "default role"},
        )
    require("role", operation, org_id=role.organization_id, ident=ident)
    return role


@bp.patch("/role/<int:role_id>")
def update_role(role_id: int) -> Any:
    ident = require_type("user")
    s = session()
    role = _own_role(s, ident, role_id, "edit")
    body = validated(
        json_body(),
        {},
        {"name": str, "description": str, "rules": list},
        strings={"name": 255, "description": 10_000},
    )
    changed: dict[str, Any] = {}
    if "name" in body:
        role.name = _name(s, body["name"], except_id=role.id)
        changed["name"] = role.name
    if "description" in body:
        role.description = body["description"]
    if "rules" in body:
        new = _rules(s, ident, body["rules"])
        removed = [_r(r) for r in role.rules if r not in new]
        if removed and (missing := missing_rules(ident, removed)):
            raise _not_held(missing)  # taking a rule away needs the same as giving it
        role.rules = new
        changed["rules"] = [str(_r(r)) for r in new]
        for user in holders(s, role.id):
            end_sessions(s, user)  # their tokens carry the old rules
    record(s, "role_changed", actor=ident, target=f"role {role.id}", detail=changed)
    s.commit()
    audit("role %s (%s) changed by %s: %s", role.id, role.name, ident.label, changed)
    return role_json(role)


@bp.delete("/role/<int:role_id>")
def delete_role(role_id: int) -> Any:
    ident = require_type("user")
    s = session()
    role = _own_role(s, ident, role_id, "delete")
    users = holders(s, role.id)
    for user in users:
        end_sessions(s, user)
    record(
        s,
        "role_deleted",
        actor=ident,
        target=f"role {role.id}",
        detail={"name": role.name, "holders": [u.id for u in users]},
    )
    s.delete(role)
    s.commit()
    audit("role %s (%s) deleted by %s", role_id, role.name, ident.label)
    return {
        "msg": f"Role {role_id} ('{role.name}') deleted; its {len(users)} holder(s) lost its rules."
    }
