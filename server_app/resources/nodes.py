"""Nodes (one per organization per collaboration): list, create (the API key is shown once), update, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from vantage6nb.common.errors import Conflict, ValidationError

from ..audit import record
from ..db import session
from ..models import Collaboration, Node, Organization
from ..permissions import current, node_target, require, scoped_nodes, visible_node
from ..request_parsing import (
    get_or_404,
    json_body,
    list_response,
    paginate,
    query_id,
    query_str,
    validated,
)
from ..serializers import node_json
from ..state import audit
from ..tokens import hash_api_key, new_api_key

__all__ = ["bp"]

bp = Blueprint("nodes", __name__)

_STATUSES = ("online", "offline")


@bp.get("/node")
def list_nodes() -> Any:
    s = session()
    stmt = scoped_nodes(s, current()).order_by(Node.id)
    if (oid := query_id("organization_id")) is not None:
        stmt = stmt.where(Node.organization_id == oid)
    if (cid := query_id("collaboration_id")) is not None:
        stmt = stmt.where(Node.collaboration_id == cid)
    if (status := query_str("status")) is not None:
        if status not in _STATUSES:
            raise ValidationError(
                "status must be online or offline.", errors={"status": "online or offline"}
            )
        stmt = stmt.where(Node.status == status)
    if (name := query_str("name")) is not None:
        stmt = stmt.where(Node.name == name)
    rows, meta = paginate(s, stmt)
    return list_response([node_json(n) for n in rows], meta)


@bp.post("/node")
def create_node() -> Any:
    ident = require("node", "create")
    body = validated(
        json_body(),
        {"organization_id": int, "collaboration_id": int},
        {"name": str},
        ids=("organization_id", "collaboration_id"),
        strings={"name": 255},
    )
    s = session()
    org = get_or_404(s, Organization, body["organization_id"])
    collab = get_or_404(s, Collaboration, body["collaboration_id"])
    require("node", "create", org_id=org.id, collaboration_ids=(collab.id,), ident=ident)
    if org not in collab.organizations:
        raise ValidationError(
            f"Organization '{org.name}' is not a member of collaboration '{collab.name}': add it first "
            f"(POST /api/collaboration/{collab.id}/organization).",
            errors={"organization_id": "not a member of the collaboration"},
        )
    existing = s.scalar(
        select(Node).where(Node.organization_id == org.id, Node.collaboration_id == collab.id)
    )
    if existing is not None:
        raise Conflict(
            f"Organization '{org.name}' already has node {existing.id} in '{collab.name}' "
            "(one node per organization per collaboration): delete it first to get a new API key."
        )
    api_key = new_api_key()
    name = (body.get("name") or "").strip() or f"{org.name} @ {collab.name}"
    node = Node(
        name=name,
        organization_id=org.id,
        collaboration_id=collab.id,
        api_key_hash=hash_api_key(api_key),
        status="offline",
    )
    s.add(node)
    s.flush()
    record(  # never the API key
        s,
        "node_created",
        actor=ident,
        target=f"node {node.id}",
        detail={
            "name": node.name,
            "organization_id": org.id,
            "collaboration_id": collab.id,
        },
    )
    s.commit()
    audit("node %s (%s) created by %s", node.id, node.name, ident.label)
    return {**node_json(node), "api_key": api_key}, 201


@bp.get("/node/<int:node_id>")
def get_node(node_id: int) -> Any:
    return node_json(visible_node(session(), current(), node_id))


@bp.patch("/node/<int:node_id>")
def update_node(node_id: int) -> Any:
    ident = require("node", "edit")
    node = visible_node(session(), ident, node_id)
    require("node", "edit", **node_target(node), ident=ident)  # a node: its own record
    body = validated(json_body(), {}, {"name": str}, strings={"name": 255})
    if "name" in body:
        if not body["name"].strip():
            raise ValidationError("name must not be empty.", errors={"name": "must not be empty"})
        node.name = body["name"].strip()
    session().commit()
    return node_json(node)


@bp.delete("/node/<int:node_id>")
def delete_node(node_id: int) -> Any:
    ident = require("node", "delete")
    s = session()
    node = get_or_404(s, Node, node_id)
    require(
        "node",
        "delete",
        org_id=node.organization_id,
        collaboration_ids=(node.collaboration_id,),
        ident=ident,
    )
    record(
        s,
        "node_deleted",
        actor=ident,
        target=f"node {node_id}",
        detail={
            "name": node.name,
            "organization_id": node.organization_id,
            "collaboration_id": node.collaboration_id,
        },
    )
    s.delete(node)
    s.commit()
    audit("node %s (%s) deleted by %s", node_id, node.name, ident.label)
    return {"msg": f"Node {node_id} deleted."}
