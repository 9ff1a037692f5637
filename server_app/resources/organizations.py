"""Organizations: list, create, read, update (including the public-key rules) and delete."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from typing import Any

from flask import Blueprint
from sqlalchemy import Select, bindparam, func, select

from vantage6nb.common.crypto import fingerprint
from vantage6nb.common.errors import Conflict, ValidationError
from vantage6nb.common.keys import PUBLIC_KEY_BYTES

from ..audit import record
from ..db import session
from ..models import Node, Organization, User, collaboration_member
from ..permissions import (
    current,
    key_change_allowed,
    require,
    visible_organization,
    visible_organizations_clause,
)
from ..request_parsing import (
    get_or_404,
    json_body,
    list_response,
    paginate_rows,
    query_id,
    query_str,
    validated,
)
from ..serializers import organization_json
from ..state import audit

__all__ = ["bp", "check_public_key"]

bp = Blueprint("organizations", __name__)

_MAX_KEY_B64 = 8192
_COLUMNS = (
    Organization.id,
    Organization.name,
    Organization.domain,
    Organization.public_key,
    Organization.key_fingerprint,
)


def check_public_key(value: str) -> bytes:
    """Decode a base64 public key; ValidationError unless it is base64 of 32 bytes."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValidationError(
            "public_key must be base64.", errors={"public_key": "expected base64"}
        ) from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValidationError(
            f"public_key must be base64 of a {PUBLIC_KEY_BYTES}-byte X25519 key (got {len(raw)} "
            "bytes); upload the key `v6nb node create-private-key` prints.",
            errors={"public_key": "bad length"},
        )
    return raw


@bp.get("/organization")
def list_organizations() -> Any:
    ident = current()
    name, cid = query_str("name"), query_id("collaboration_id")
    stmt = _list_statement(visible_organizations_clause(ident), name is not None, cid is not None)
    rows, meta = paginate_rows(stmt, {"name": name, "collaboration_id": cid})
    return list_response([dict(r) for r in rows], meta)


@lru_cache(maxsize=4096)
def _list_statement(visible: Any, by_name: bool, by_collaboration: bool) -> Select[Any]:
    # The most frequent read (clients, nodes, benchmarks): Core columns, not ORM objects, and one
    # statement object per shape, reused with bound parameters. Building a statement and its cache
    # key costs several times more than SQLite takes to run it.
    stmt = select(*_COLUMNS).order_by(Organization.id)
    if visible is not None:  # from visible_organizations_clause: cached, so hashable and stable
        stmt = stmt.where(visible)
    if by_name:
        stmt = stmt.where(Organization.name == bindparam("name"))
    if by_collaboration:
        stmt = stmt.where(
            Organization.id.in_(
                select(collaboration_member.c.organization_id).where(
                    collaboration_member.c.collaboration_id == bindparam("collaboration_id")
                )
            )
        )
    return stmt


@bp.post("/organization")
def create_organization() -> Any:
    ident = require("organization", "create")
    body = validated(
        json_body(),
        {"name": str},
        {"domain": str, "public_key": str},
        strings={"name": 255, "domain": 255, "public_key": _MAX_KEY_B64},
    )
    org = Organization(name=body["name"].strip(), domain=body.get("domain"))
    if not org.name:
        raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
    if "public_key" in body:
        org.public_key = body["public_key"]
        org.key_fingerprint = fingerprint(check_public_key(body["public_key"]))
    s = session()
    s.add(org)
    s.flush()
    record(
        s,
        "organization_created",
        actor=ident,
        target=f"organization {org.id}",
        detail={"name": org.name, "key_fingerprint": org.key_fingerprint},
    )
    s.commit()
    audit("organization %s (%s) created by %s", org.id, org.name, ident.label)
    return organization_json(org), 201


@bp.get("/organization/<int:org_id>")
def get_organization(org_id: int) -> Any:
    return organization_json(visible_organization(session(), current(), org_id))


@bp.patch("/organization/<int:org_id>")
def update_organization(org_id: int) -> Any:
    ident = current()
    org = visible_organization(session(), ident, org_id)
    body = validated(
        json_body(),
        {},
        {"name": str, "domain": str, "public_key": str, "replace_key": bool},
        strings={"name": 255, "domain": 255, "public_key": _MAX_KEY_B64},
    )
    if "name" in body or "domain" in body:
        require("organization", "edit", org_id=org.id, ident=ident, what="To rename it")
    if "name" in body:
        if not body["name"].strip():
            raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
        org.name = body["name"].strip()
    if "domain" in body:
        org.domain = body["domain"]
    if "public_key" in body and body["public_key"] != org.public_key:
        raw = check_public_key(body["public_key"])
        act = key_change_allowed(ident, org, bool(body.get("replace_key", False)))
        old = org.key_fingerprint
        org.public_key, org.key_fingerprint = body["public_key"], fingerprint(raw)
        if act == "replace":
            record(
                session(),
                "key_replaced",
                actor=ident,
                target=f"organization {org.id}",
                detail={"name": org.name, "old": old, "new": org.key_fingerprint},
            )
        audit(
            "public key of organization %s (%s) %s by %s: %s -> %s",
            org.id,
            org.name,
            "set" if act == "set" else "REPLACED",
            ident.label,
            old,
            org.key_fingerprint,
        )
    session().commit()
    return organization_json(org)


@bp.delete("/organization/<int:org_id>")
def delete_organization(org_id: int) -> Any:
    ident = require("organization", "delete")
    s = session()
    org = get_or_404(s, Organization, org_id)
    require("organization", "delete", org_id=org.id, ident=ident)
    users = s.scalar(select(func.count(User.id)).where(User.organization_id == org.id)) or 0
    nodes = s.scalar(select(func.count(Node.id)).where(Node.organization_id == org.id)) or 0
    if users or nodes:
        raise Conflict(
            f"Organization '{org.name}' still has {users} user(s) and {nodes} node(s): delete "
            "them (DELETE /api/user/<id>, /api/node/<id>) before the organization.",
            errors={"organization": "has users or nodes"},
        )
    record(
        s,
        "organization_deleted",
        actor=ident,
        target=f"organization {org_id}",
        detail={"name": org.name},
    )
    s.delete(org)
    s.commit()
    audit("organization %s (%s) deleted by %s", org_id, org.name, ident.label)
    return {"msg": f"Organization {org_id} deleted."}
