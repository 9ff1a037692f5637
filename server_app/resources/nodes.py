"""Nodes (one per organization per collaboration): list, create (the API key is shown once), update,
delete; their column reports (names and types of their databases' columns, never values)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from vantage6nb.common.columns import MAX_LABEL, check_report
from vantage6nb.common.errors import Conflict, ValidationError

from ..audit import record
from ..db import session
from ..models import Collaboration, Node, NodeColumns, Organization, utcnow
from ..permissions import (
    current,
    node_target,
    require,
    require_collaboration,
    require_type,
    scoped_nodes,
    visible_node,
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
from ..serializers import column_rows, iso, node_json
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


# -- column reports ----------------------------------------------------------------------------------


def _own_node(node_id: int) -> Node:
    """The node record ``node_id``, which must be the calling node's own (403 / 404 otherwise)."""
    ident = require_type("node")
    node = visible_node(session(), ident, node_id)
    require("node", "edit", **node_target(node), ident=ident, what="Column report")
    return node


@bp.put("/node/<int:node_id>/columns")
def put_columns(node_id: int) -> Any:
    """A node's column report, replacing its previous one (the node of that record only)."""
    node = _own_node(node_id)
    databases = check_report(json_body())
    s = session()
    report = s.scalar(select(NodeColumns).where(NodeColumns.node_id == node.id))
    if report is None:
        report = NodeColumns(node_id=node.id)
        s.add(report)
    report.databases, report.reported_at = databases, utcnow()
    s.commit()
    return {
        "node_id": node.id,
        "databases": len(databases),
        "columns": sum(len(d["columns"]) for d in databases),
        "reported_at": iso(report.reported_at),
    }


@bp.delete("/node/<int:node_id>/columns")
def delete_columns(node_id: int) -> Any:
    """Forget a node's column report (its operator turned reporting off)."""
    node = _own_node(node_id)
    s = session()
    report = s.scalar(select(NodeColumns).where(NodeColumns.node_id == node.id))
    if report is not None:
        s.delete(report)
        s.commit()
    return {"msg": f"Node {node.id} has no column report now."}


@bp.get("/column")
def list_columns() -> Any:
    """The column reports of a collaboration's nodes that the caller may see, one item per node
    and database label, by organization name, then label in the node's order."""
    cid = query_id("collaboration_id")
    if cid is None:
        raise ValidationError(
            "collaboration_id is required: GET /api/column?collaboration_id=<id>.",
            errors={"collaboration_id": "required"},
        )
    database = query_str("database", MAX_LABEL)
    s = session()
    ident = current()
    collab = require_collaboration(s, ident, cid)
    nodes = scoped_nodes(s, ident).where(Node.collaboration_id == collab.id)
    stmt = (
        select(Node, Organization.name, NodeColumns)
        .join(NodeColumns, NodeColumns.node_id == Node.id)
        .join(Organization, Organization.id == Node.organization_id)
        .where(Node.id.in_(nodes.with_only_columns(Node.id)))
        .order_by(Organization.name, Node.id)
    )
    rows = [item for n, org, rep in s.execute(stmt) for item in column_rows(n, org, rep, database)]
    return {"data": rows}
