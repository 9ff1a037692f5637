"""Collaborations and their member organizations."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from vantage6nb.common.errors import Conflict, NotFound, ValidationError

from ..audit import record, record_now
from ..db import session
from ..models import Collaboration, Organization, collaboration_member
from ..permissions import (
    Identity,
    current,
    require,
    require_collaboration,
    scoped_collaborations,
)
from ..request_parsing import (
    check_id,
    get_or_404,
    json_body,
    list_response,
    paginate,
    query_id,
    query_str,
    validated,
)
from ..serializers import collaboration_json
from ..state import audit, state

__all__ = ["bp"]

bp = Blueprint("collaborations", __name__)


def _organizations(ids: Any) -> list[Organization]:
    if not isinstance(ids, list):
        raise ValidationError(
            "organization_ids must be a list of ids.",
            errors={"organization_ids": "expected a list"},
        )
    clean = [check_id("organization_ids", i) for i in ids]
    if len(set(clean)) != len(clean):
        raise ValidationError(
            "organization_ids has duplicates.", errors={"organization_ids": "duplicate ids"}
        )
    orgs = (
        list(session().scalars(select(Organization).where(Organization.id.in_(clean))))
        if clean
        else []
    )
    missing = sorted(set(clean) - {o.id for o in orgs})
    if missing:
        raise NotFound(
            f"Organization(s) {', '.join(map(str, missing))} do not exist.",
            errors={"organization_ids": f"unknown: {missing}"},
        )
    return sorted(orgs, key=lambda o: o.id)


@bp.get("/collaboration")
def list_collaborations() -> Any:
    s = session()
    stmt = scoped_collaborations(s, current()).order_by(Collaboration.id)
    if (oid := query_id("organization_id")) is not None:
        stmt = stmt.where(
            Collaboration.id.in_(
                select(collaboration_member.c.collaboration_id).where(
                    collaboration_member.c.organization_id == oid
                )
            )
        )
    if (name := query_str("name")) is not None:
        stmt = stmt.where(Collaboration.name == name)
    rows, meta = paginate(s, stmt)
    return list_response([collaboration_json(c) for c in rows], meta)


@bp.post("/collaboration")
def create_collaboration() -> Any:
    ident = require("collaboration", "create")
    body = validated(
        json_body(),
        {"name": str},
        {"organization_ids": list, "encrypted": bool},
        strings={"name": 255},
    )
    if not body["name"].strip():
        raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
    collab = Collaboration(
        name=body["name"].strip(),
        encrypted=body.get("encrypted", False),
        organizations=_organizations(body.get("organization_ids", [])),
    )
    s = session()
    s.add(collab)
    s.flush()
    record(
        s,
        "collaboration_created",
        actor=ident,
        target=f"collaboration {collab.id}",
        detail={
            "name": collab.name,
            "encrypted": collab.encrypted,
            "organization_ids": [o.id for o in collab.organizations],
        },
    )
    s.commit()
    audit("collaboration %s (%s) created by %s", collab.id, collab.name, ident.label)
    return collaboration_json(collab), 201


@bp.get("/collaboration/<int:collab_id>")
def get_collaboration(collab_id: int) -> Any:
    return collaboration_json(require_collaboration(session(), current(), collab_id))


@bp.patch("/collaboration/<int:collab_id>")
def update_collaboration(collab_id: int) -> Any:
    ident = require("collaboration", "edit")
    s = session()
    collab = get_or_404(s, Collaboration, collab_id)
    require("collaboration", "edit", collaboration_ids=(collab.id,), ident=ident)
    body = validated(
        json_body(),
        {},
        {"name": str, "organization_ids": list, "encrypted": bool},
        strings={"name": 255},
    )
    if "name" in body and not body["name"].strip():
        raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
    orgs = _organizations(body["organization_ids"]) if "organization_ids" in body else None
    # checked before any change is made: a refusal changes nothing
    if "encrypted" in body and body["encrypted"] != collab.encrypted:
        _change_encryption(ident, collab, body["encrypted"])
    if "name" in body:
        collab.name = body["name"].strip()
    if orgs is not None:
        collab.organizations = orgs
    s.commit()
    return collaboration_json(collab)


def _change_encryption(ident: Identity, collab: Collaboration, encrypted: bool) -> None:
    """Switch encryption on (audited); switching it off is refused (docs/security.md)."""
    target = f"collaboration {collab.id}"
    if not encrypted:
        # written at once: the refused request rolls back, the attempt stays on record
        record_now(
            state().db,
            "encryption_changed",
            actor=ident,
            target=target,
            outcome="refused",
            detail={"name": collab.name, "encrypted": True, "requested": False},
        )
        raise Conflict(
            f"Collaboration '{collab.name}' is encrypted, and encryption cannot be switched off: "
            "results already sealed for its organizations stay sealed, and its members' clients "
            "refuse to send plaintext to it. Create a new collaboration with encrypted: false "
            "for unencrypted work (docs/security.md).",
            errors={"encrypted": "cannot go from true to false"},
        )
    collab.encrypted = True
    record(
        session(),
        "encryption_changed",
        actor=ident,
        target=target,
        detail={"name": collab.name, "encrypted": True, "was": False},
    )
    audit(
        "encryption of collaboration %s (%s) switched on by %s", collab.id, collab.name, ident.label
    )


@bp.delete("/collaboration/<int:collab_id>")
def delete_collaboration(collab_id: int) -> Any:
    ident = require("collaboration", "delete")
    s = session()
    collab = get_or_404(s, Collaboration, collab_id)
    require("collaboration", "delete", collaboration_ids=(collab.id,), ident=ident)
    record(
        s,
        "collaboration_deleted",
        actor=ident,
        target=f"collaboration {collab_id}",
        detail={"name": collab.name, "organization_ids": [o.id for o in collab.organizations]},
    )
    s.delete(collab)
    s.commit()
    audit(
        "collaboration %s (%s) deleted by %s, with its nodes and tasks",
        collab_id,
        collab.name,
        ident.label,
    )
    return {"msg": f"Collaboration {collab_id} deleted, with its nodes and tasks."}


@bp.post("/collaboration/<int:collab_id>/organization")
def add_member(collab_id: int) -> Any:
    ident = require("collaboration", "edit")
    s = session()
    collab = get_or_404(s, Collaboration, collab_id)
    require("collaboration", "edit", collaboration_ids=(collab.id,), ident=ident)
    body = validated(json_body(), {"id": int}, ids=("id",))
    org = get_or_404(s, Organization, body["id"])
    if org in collab.organizations:
        raise Conflict(f"Organization '{org.name}' is already a member of '{collab.name}'.")
    collab.organizations.append(org)
    s.commit()
    return collaboration_json(collab), 201


@bp.delete("/collaboration/<int:collab_id>/organization")
def remove_member(collab_id: int) -> Any:
    ident = require("collaboration", "edit")
    s = session()
    collab = get_or_404(s, Collaboration, collab_id)
    require("collaboration", "edit", collaboration_ids=(collab.id,), ident=ident)
    body = validated(json_body(), {"id": int}, ids=("id",))
    org = get_or_404(s, Organization, body["id"])
    if org not in collab.organizations:
        raise NotFound(f"Organization '{org.name}' is not a member of '{collab.name}'.")
    collab.organizations.remove(org)
    s.commit()
    return collaboration_json(collab)
