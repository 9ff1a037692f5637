"""JSON shapes of the resources (docs/api.md), built from model rows without extra queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from vantage6nb.common.schemas import OPEN_ORDER, RunStatus

from .blobs import input_blob, input_fields, result_blob, result_fields
from .models import (
    AccessRule,
    Collaboration,
    Node,
    NodeColumns,
    Organization,
    PayloadBlob,
    Role,
    Run,
    Task,
    User,
)

__all__ = [
    "NodeIndex",
    "collaboration_json",
    "column_rows",
    "iso",
    "node_json",
    "organization_json",
    "role_json",
    "rule_json",
    "run_event",
    "run_json",
    "task_brief",
    "task_json",
    "task_status",
    "user_json",
]


def iso(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) datetime as ISO 8601 with ``Z``."""
    return None if value is None else value.isoformat() + "Z"


def organization_json(o: Organization) -> dict[str, Any]:
    return {
        "id": o.id,
        "name": o.name,
        "domain": o.domain,
        "public_key": o.public_key,
        "key_fingerprint": o.key_fingerprint,
    }


def collaboration_json(c: Collaboration) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "encrypted": c.encrypted,
        "organization_ids": [o.id for o in c.organizations],
    }


def user_json(
    u: User, *, roles: list[int] | None = None, rules: list[int] | None = None
) -> dict[str, Any]:
    """A user; ``is_admin``: holds root or organization admin. ``roles`` / ``rules`` (ids of the
    roles and of the extra rules) where the caller read them (single users and listings)."""
    out: dict[str, Any] = {
        "id": u.id,
        "username": u.username,
        "organization_id": u.organization_id,
        "is_admin": u.is_admin,
        "email": u.email,
    }
    if roles is not None:
        out["roles"] = roles
    if rules is not None:
        out["rules"] = rules
    return out


def rule_json(r: AccessRule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": f"{r.resource}:{r.operation}:{r.scope}",
        "resource": r.resource,
        "operation": r.operation,
        "scope": r.scope,
    }


def role_json(r: Role) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "organization_id": r.organization_id,
        "is_default": r.is_default,
        "rules": [x.id for x in r.rules],
        "rule_names": [f"{x.resource}:{x.operation}:{x.scope}" for x in r.rules],
    }


def node_json(n: Node) -> dict[str, Any]:
    return {
        "id": n.id,
        "name": n.name,
        "organization_id": n.organization_id,
        "collaboration_id": n.collaboration_id,
        "status": n.status,
        "last_seen": iso(n.last_seen),
    }


def column_rows(
    node: Node, organization: str, report: NodeColumns, database: str | None = None
) -> list[dict[str, Any]]:
    """A node's column report as one item per database label (only ``database``, when given)."""
    return [
        {
            "node_id": node.id,
            "organization_id": node.organization_id,
            "organization": organization,
            "collaboration_id": node.collaboration_id,
            "database": db["label"],
            "columns": [{"name": c["name"], "type": c["type"]} for c in db["columns"]],
            "reported_at": iso(report.reported_at),
        }
        for db in report.databases
        if database is None or db["label"] == database
    ]


class NodeIndex:
    """The node of each (collaboration, organization), loaded in one query for a page of runs."""

    def __init__(self, s: Session | None, collaboration_ids: Iterable[int]) -> None:
        ids = set(collaboration_ids)
        rows = s.scalars(select(Node).where(Node.collaboration_id.in_(ids))) if s and ids else []
        self._by_key = {(n.collaboration_id, n.organization_id): n for n in rows}

    @classmethod
    def of(cls, nodes: Iterable[Node | None]) -> NodeIndex:
        """An index of nodes already loaded (no query)."""
        index = cls(None, ())
        index._by_key = {(n.collaboration_id, n.organization_id): n for n in nodes if n}
        return index

    def get(self, collaboration_id: int, organization_id: int) -> Node | None:
        return self._by_key.get((collaboration_id, organization_id))


def task_status(statuses: Iterable[str]) -> str:
    """Derived task status: the least advanced open run status, else completed or failed."""
    seen = list(statuses)
    for status in OPEN_ORDER:
        if status in seen:
            return status
    return "completed" if all(s == RunStatus.COMPLETED.value for s in seen) else "failed"


def run_json(
    run: Run,
    task: Task,
    nodes: NodeIndex,
    include: Iterable[str] = ("input", "result", "log"),
    blobs: Mapping[int, PayloadBlob] | None = None,
) -> dict[str, Any]:
    """A run; with ``result`` included also ``result_ref``/``result_size`` (set when the result is
    a stored file, fetched from ``result_ref``; ``blobs`` = run id -> file, else one query)."""
    node = nodes.get(task.collaboration_id, run.organization_id)
    out: dict[str, Any] = {
        "id": run.id,
        "task_id": run.task_id,
        "job_id": task.job_id,
        "organization_id": run.organization_id,
        "node_id": node.id if node else None,
        "status": run.status,
        "reason": run.reason,
        "assigned_at": iso(run.assigned_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "node_status": node.status if node else "offline",
        "node_last_seen": iso(node.last_seen) if node else None,
    }
    for name in include:
        out[name] = task_brief(task) if name == "task" else getattr(run, name)
    if "result" in out:
        blob = blobs.get(run.id) if blobs is not None else _blob_of(run)
        out.update(result_fields(run.id, blob))
    if "input" in out:  # sent as bytes (no input text): the node fetches ``input_ref``
        s = object_session(run) if run.input is None else None
        out.update(input_fields(run.id, input_blob(s, run.id) if s is not None else None))
    return out


def _blob_of(run: Run) -> PayloadBlob | None:
    s = object_session(run)
    if s is None or run.result is not None:  # an inline result has no file
        return None
    return result_blob(s, run.id)


def task_brief(t: Task) -> dict[str, Any]:
    """What a node needs of a run's task (``GET /run?include=task``): no runs, no status."""
    return {
        "id": t.id,
        "uid": t.uid,
        "collaboration_id": t.collaboration_id,
        "image": t.image,
        "method": t.method,
        "init_org_id": t.init_org_id,
        "parent_id": t.parent_id,
        "job_id": t.job_id,
        "databases": t.databases or [],
    }


def run_event(run: Run, task: Task, node: Node | None) -> dict[str, Any]:
    """Payload of the ``run_status`` event."""
    return {
        "run_id": run.id,
        "task_id": run.task_id,
        "job_id": task.job_id,
        "organization_id": run.organization_id,
        "node_id": node.id if node else None,
        "status": run.status,
        "reason": run.reason,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def task_json(t: Task, nodes: NodeIndex) -> dict[str, Any]:
    runs = [run_json(r, t, nodes, include=()) for r in t.runs]
    return {
        "id": t.id,
        "uid": t.uid,
        "name": t.name,
        "description": t.description,
        "collaboration_id": t.collaboration_id,
        "image": t.image,
        "method": t.method,
        "init_org_id": t.init_org_id,
        "init_user_id": t.init_user_id,
        "parent_id": t.parent_id,
        "job_id": t.job_id,
        "databases": t.databases or [],
        "created_at": iso(t.created_at),
        "status": task_status(r.status for r in t.runs),
        "runs": runs,
    }
