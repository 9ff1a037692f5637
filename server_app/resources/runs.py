"""Runs (one organization's part of a task): list, read, status updates by nodes, and results."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from sqlalchemy import select

from vantage6nb.common.errors import ValidationError
from vantage6nb.common.schemas import OPEN_ORDER

from ..blobs import blob_index, blob_store, drop_run_blobs, result_fields
from ..db import session
from ..lifecycle import change_status, emit_run_statuses, parse_status
from ..models import Node, PayloadBlob, Run, Task
from ..permissions import (
    Identity,
    can_see_result,
    current,
    denied,
    needed_scope,
    require_node_run,
    require_type,
    scoped_runs,
    task_target,
    visible_run,
    visible_task,
)
from ..request_parsing import (
    json_body,
    list_response,
    paginate,
    parse_time,
    query_id,
    query_str,
    validated,
)
from ..rules import Rule
from ..serializers import NodeIndex, run_json
from .auth import issue_container_token

__all__ = ["bp"]

bp = Blueprint("runs", __name__)

_INCLUDABLE = ("input", "result", "log", "task")
_MAX_TEXT = 2**31  # the body limit (max_body_mb) is the real bound


def _include() -> tuple[str, ...]:
    raw = request.args.get("include")
    if not raw:
        return ()
    wanted = tuple(p.strip() for p in raw.split(",") if p.strip())
    bad = [p for p in wanted if p not in _INCLUDABLE]
    if bad:
        raise ValidationError(
            f"include accepts {', '.join(_INCLUDABLE)}; not {', '.join(bad)}.",
            errors={"include": "unknown field"},
        )
    return wanted


def _statuses() -> list[str] | None:
    raw = query_str("status", 1000)
    if raw is None:
        return None
    out: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if part == "open":
            out.extend(OPEN_ORDER)
        elif part:
            out.append(parse_status(part).value)
    return out


@bp.get("/run")
def list_runs() -> Any:
    s = session()
    stmt = scoped_runs(s, current()).order_by(Run.id)
    include = _include()
    if (tid := query_id("task_id")) is not None:
        stmt = stmt.where(Run.task_id == tid)
    if (jid := query_id("job_id")) is not None:
        stmt = stmt.where(Task.job_id == jid)
    if (oid := query_id("organization_id")) is not None:
        stmt = stmt.where(Run.organization_id == oid)
    if (nid := query_id("node_id")) is not None:
        node = s.get(Node, nid)
        if node is None:
            stmt = stmt.where(Run.id.is_(None))  # an unknown node has no runs
        else:
            stmt = stmt.where(
                Task.collaboration_id == node.collaboration_id,
                Run.organization_id == node.organization_id,
            )
    if (statuses := _statuses()) is not None:
        stmt = stmt.where(Run.status.in_(statuses))
    rows, meta = paginate(s, stmt)
    tasks = (
        {t.id: t for t in s.scalars(select(Task).where(Task.id.in_({r.task_id for r in rows})))}
        if rows
        else {}
    )
    nodes = NodeIndex(s, {t.collaboration_id for t in tasks.values()})
    blobs = blob_index(s, [r.id for r in rows]) if "result" in include else None
    ident = current()
    return list_response(
        [
            run_json(r, tasks[r.task_id], nodes, _shown(ident, r, tasks[r.task_id], include), blobs)
            for r in rows
        ],
        meta,
    )


def _shown(ident: Identity, run: Run, task: Task, include: tuple[str, ...]) -> tuple[str, ...]:
    """``include`` without the result where the caller's ``result:view`` rule does not cover it
    (a run one may see need not be a result one may read)."""
    if "result" in include and not can_see_result(ident, task, run):
        return tuple(name for name in include if name != "result")
    return include


def _run_context(run_id: int) -> tuple[Run, Task, NodeIndex, dict[int, PayloadBlob]]:
    """The visible run (:func:`~server_app.permissions.visible_run`), its node as an index and its
    stored result file as a map, as :func:`~server_app.serializers.run_json` takes them."""
    run, task, node, blob = visible_run(session(), current(), run_id)
    return run, task, NodeIndex.of([node]), ({run.id: blob} if blob is not None else {})


_DEFAULT_FIELDS = ("input", "result", "log")


@bp.get("/run/<int:run_id>")
def get_run(run_id: int) -> Any:
    run, task, nodes, blobs = _run_context(run_id)
    return run_json(run, task, nodes, _shown(current(), run, task, _DEFAULT_FIELDS), blobs)


@bp.patch("/run/<int:run_id>")
def update_run(run_id: int) -> Any:
    ident = require_type("node")
    run, task, nodes, blobs = _run_context(run_id)
    require_node_run(ident, run, task)
    body = validated(
        json_body(),
        {},
        {
            "status": str,
            "reason": str,
            "log": str,
            "result": str,
            "started_at": str,
            "finished_at": str,
            "container_token": bool,
        },
        strings={"status": 32, "reason": 10_000, "log": _MAX_TEXT, "result": _MAX_TEXT},
    )
    started = parse_time("started_at", body["started_at"]) if "started_at" in body else None
    finished = parse_time("finished_at", body["finished_at"]) if "finished_at" in body else None
    status = parse_status(body["status"]) if "status" in body else None
    target = status or parse_status(run.status)
    changed = change_status(run, target, body.get("reason"))
    if started is not None:
        run.started_at = started
    if finished is not None:
        run.finished_at = finished
    if "log" in body:
        run.log = body["log"]
    s = session()
    replaced: list[str] = []
    if "result" in body:  # a JSON result replaces a stored file, if any
        run.result = body["result"]
        replaced = drop_run_blobs(s, run.id)
        blobs = {}
    # asked with the move to initializing, so a starting run costs the node one request less
    token = issue_container_token(ident, run, task) if body.get("container_token") else None
    s.commit()
    blob_store().delete(replaced)
    if changed:
        emit_run_statuses(s, [(run, task)], nodes)
    out = run_json(run, task, nodes, blobs=blobs)
    if token is not None:
        out["container_token"] = token
    return out


@bp.get("/result")
def list_results() -> Any:
    s = session()
    tid = query_id("task_id")
    if tid is None:
        raise ValidationError(
            "Give the task: /api/result?task_id=<id>.", errors={"task_id": "required"}
        )
    ident = current()
    task = visible_task(s, ident, tid)
    if not can_see_result(ident, task) and ident.type != "node":
        raise denied(
            Rule("result", "view", needed_scope(ident, **task_target(task))),
            f"The results of task {tid}",
        )
    stmt = scoped_runs(s, ident).where(Run.task_id == tid).order_by(Run.id)
    rows = [r for r in s.scalars(stmt) if can_see_result(ident, task, r)]
    blobs = blob_index(s, [r.id for r in rows])
    return {
        "data": [
            {
                "run_id": r.id,
                "task_id": r.task_id,
                "organization_id": r.organization_id,
                "status": r.status,
                "result": r.result,
                **result_fields(r.id, blobs.get(r.id)),
            }
            for r in rows
        ]
    }
