"""Tasks: create (a run per receiving organization), inputs as bytes, list, read, delete, kill."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

from flask import Blueprint, request
from sqlalchemy import ColumnElement, and_, exists, not_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from vantage6nb.common import crypto, events
from vantage6nb.common.errors import (
    Conflict,
    CryptoError,
    PermissionDenied,
    ValidationError,
)
from vantage6nb.common.schemas import OPEN_ORDER, RunStatus

from ..audit import record
from ..blobs import (
    INPUT_KIND,
    StagedInput,
    blob_names_of_tasks,
    blob_store,
    input_fields,
)
from ..db import session
from ..lifecycle import descendant_ids, kill_tasks
from ..models import Collaboration, PayloadBlob, Run, Task, utcnow
from ..permissions import (
    Identity,
    allowed,
    current,
    require,
    require_collaboration,
    require_type,
    scoped_tasks,
    visible_task,
)
from ..request_parsing import (
    check_str,
    get_or_404,
    json_body,
    list_response,
    paginate,
    query_id,
    query_str,
    validated,
)
from ..serializers import NodeIndex, task_brief, task_json
from ..state import audit, state

__all__ = ["bp"]

bp = Blueprint("tasks", __name__)
log = logging.getLogger("server_app.tasks")

# a task's derived status (serializers.task_status), and "open" for any open run
_TASK_STATUSES = (*OPEN_ORDER, "completed", "failed", "open")
# a run's input up to this size travels in its `new_task` event, so the node need not fetch it
_EVENT_INPUT_MAX = 64 * 1024
_OCTET = "application/octet-stream"
_HEAD = 2048  # enough for any sealed payload header (46 + a task uid of <= 1024 bytes)


def _has(*statuses: str) -> ColumnElement[bool]:
    return exists().where(Run.task_id == Task.id, Run.status.in_(statuses))


def _status_clause(status: str) -> ColumnElement[bool]:
    pending, init, active = OPEN_ORDER
    not_completed = exists().where(Run.task_id == Task.id, Run.status != RunStatus.COMPLETED.value)
    return {
        "pending": _has(pending),
        "initializing": and_(_has(init), not_(_has(pending))),
        "active": and_(_has(active), not_(_has(pending, init))),
        "completed": and_(not_(_has(*OPEN_ORDER)), not_(not_completed)),
        "failed": and_(not_(_has(*OPEN_ORDER)), not_completed),
        "open": _has(*OPEN_ORDER),
    }[status]


@bp.get("/task")
def list_tasks() -> Any:
    s = session()
    stmt = scoped_tasks(s, current()).options(selectinload(Task.runs)).order_by(Task.id)
    for name, column in (
        ("collaboration_id", Task.collaboration_id),
        ("parent_id", Task.parent_id),
        ("job_id", Task.job_id),
        ("init_org_id", Task.init_org_id),
    ):
        if (value := query_id(name)) is not None:
            stmt = stmt.where(column == value)
    if (status := query_str("status")) is not None:
        if status not in _TASK_STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(_TASK_STATUSES)}.",
                errors={"status": "unknown status"},
            )
        stmt = stmt.where(_status_clause(status))
    rows, meta = paginate(s, stmt)
    nodes = NodeIndex(s, {t.collaboration_id for t in rows})
    return list_response([task_json(t, nodes) for t in rows], meta)


def _receivers(value: Any, collab: Collaboration) -> list[tuple[int, str | None, str | None]]:
    """``(organization id, input text, upload id)`` per receiver: the input inline or uploaded."""
    if not isinstance(value, list) or not value:
        raise ValidationError(
            "organizations must be a non-empty list of {id, input}.",
            errors={"organizations": "expected a non-empty list"},
        )
    members = {o.id for o in collab.organizations}
    out: list[tuple[int, str | None, str | None]] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            errors[f"organizations[{i}]"] = "expected an object {id, input}"
            continue
        oid, inp, upload = item.get("id"), item.get("input", ""), item.get("input_upload")
        if isinstance(oid, bool) or not isinstance(oid, int) or not 0 < oid < 2**63:
            errors[f"organizations[{i}].id"] = "expected a positive id"
        elif oid not in members:
            errors[f"organizations[{i}].id"] = (
                f"organization {oid} is not a member of '{collab.name}'"
            )
        elif any(oid == o for o, _, _ in out):
            errors[f"organizations[{i}].id"] = "duplicate organization"
        if upload is not None:
            if "input" in item:
                errors[f"organizations[{i}].input"] = "give input or input_upload, not both"
            elif not isinstance(upload, str) or not 0 < len(upload) <= 64:
                errors[f"organizations[{i}].input_upload"] = (
                    "expected the id POST /api/task/input answered"
                )
            inp = None
        elif not isinstance(inp, str):
            errors[f"organizations[{i}].input"] = (
                "expected a string (JSON text or an encryption envelope)"
            )
        elif "\x00" in inp:  # JSON text escapes NUL; PostgreSQL text cannot hold one
            errors[f"organizations[{i}].input"] = "must not contain NUL characters"
        if not any(k.startswith(f"organizations[{i}]") for k in errors):
            out.append((oid, inp, upload))
    if errors:
        raise ValidationError(
            "Invalid organizations: fix the entries listed in 'errors'.", errors=errors
        )
    return out


def _uploader(ident: Identity) -> str:
    """Who uploaded an input, as its ``.meta`` keeps it (only they may use it)."""
    return f"{ident.type} {ident.id}"


def _staged_inputs(
    s: Any,
    ident: Identity,
    collab: Collaboration,
    uid: str,
    receivers: list[tuple[int, str | None, str | None]],
) -> dict[int, StagedInput]:
    """The uploaded input of each receiver that names one, checked against this task."""
    store = blob_store()
    out: dict[int, StagedInput] = {}
    errors: dict[str, str] = {}
    for i, (oid, _, upload) in enumerate(receivers):
        if upload is None:
            continue
        key = f"organizations[{i}].input_upload"
        staged = store.staged(upload)
        if staged is None or staged.uploader != _uploader(ident):
            errors[key] = (
                "no such upload: upload the input with POST /api/task/input first (an upload "
                "is kept for an hour, and serves one task)"
            )
        elif staged.collaboration_id != collab.id or staged.organization_id != oid:
            errors[key] = (
                f"uploaded for organization {staged.organization_id} of collaboration "
                f"{staged.collaboration_id}, not for organization {oid} of {collab.id}"
            )
        elif collab.encrypted and not staged.sealed:
            errors[key] = "collaboration is encrypted: upload a sealed input"
        elif staged.sealed and staged.task_uid != uid:
            errors[key] = f"sealed for task uid {staged.task_uid!r}, not this task's {uid!r}"
        elif s.scalar(select(PayloadBlob.id).where(PayloadBlob.name == staged.name)):
            errors[key] = "used by another task already: upload it again"
        else:
            out[oid] = staged
    if errors:
        raise ValidationError(
            "Invalid organizations: fix the entries listed in 'errors'.", errors=errors
        )
    return out


def _databases(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValidationError(
            "databases must be a list of {label}.", errors={"databases": "expected a list"}
        )
    out = []
    for i, item in enumerate(value):
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(label, str) or not label.strip() or len(label) > 128:
            raise ValidationError(
                "Each database needs a string label (at most 128 characters).",
                errors={f"databases[{i}].label": "expected a non-empty string"},
            )
        out.append(dict(item))
    return out


@bp.post("/task")
def create_task() -> Any:
    ident = require_type("user", "container")
    body = validated(
        json_body(),
        {"organizations": list, "method": str},
        {
            "collaboration_id": int,
            "image": str,
            "name": str,
            "description": str,
            "databases": list,
            "uid": str,
        },
        ids=("collaboration_id",),
        strings={"method": 255, "image": 512, "name": 255, "description": 10_000, "uid": 64},
    )
    check_str("method", body["method"], 255)
    s = session()
    collab, parent, image = _creation_target(
        s, ident, body.get("collaboration_id"), body.get("image")
    )
    receivers = _receivers(body["organizations"], collab)
    databases = _databases(body.get("databases", []))
    uid = body.get("uid") or uuid.uuid4().hex
    check_str("uid", uid, 64)
    if s.scalar(select(Task.id).where(Task.uid == uid)) is not None:
        raise Conflict(
            f"A task with uid {uid!r} already exists: use a new uid for each task.",
            errors={"uid": "duplicate"},
        )
    staged = _staged_inputs(s, ident, collab, uid, receivers)
    now = utcnow()
    task = Task(
        uid=uid,
        name=body.get("name", ""),
        description=body.get("description", ""),
        collaboration_id=collab.id,
        image=image,
        method=body["method"],
        init_org_id=ident.org_id,
        init_user_id=ident.id
        if ident.type == "user"
        else (parent.init_user_id if parent else None),
        parent_id=parent.id if parent else None,
        job_id=parent.job_id if parent else None,
        databases=databases,
        created_at=utcnow(),
        # given before the flush: assigning them later would first load the (empty) collection
        runs=[
            Run(organization_id=oid, input=inp, status=RunStatus.PENDING.value, assigned_at=now)
            for oid, inp, _ in receivers
        ],
    )
    s.add(task)
    s.flush()
    if task.job_id is None:
        task.job_id = task.id
    files: dict[int, PayloadBlob] = {}
    for run in task.runs:  # an uploaded input becomes the run's, in this same transaction
        if (up := staged.get(run.organization_id)) is not None:
            files[run.id] = PayloadBlob(
                run_id=run.id, kind=INPUT_KIND, name=up.name, size=up.size, sealed=up.sealed
            )
            s.add(files[run.id])
    try:
        s.commit()
    except IntegrityError:  # another task took one of the uploads meanwhile
        s.rollback()
        raise Conflict(
            "An uploaded input of this task was used by another task meanwhile: upload it again.",
            errors={"organizations": "input_upload used already"},
        ) from None
    blob_store().unstage(up.upload_id for up in staged.values())
    nodes = NodeIndex(s, [task.collaboration_id])
    _announce(task, nodes, files)
    out = task_json(task, nodes)
    for run in out["runs"]:
        run.update(input_fields(run["id"], files.get(run["id"])))
    return out, 201


def _creation_target(
    s: Any, ident: Identity, cid: int | None, image: str | None, *, upload: bool = False
) -> tuple[Collaboration, Task | None, str]:
    """Where the caller creates a task (or, ``upload``, sends its input): collaboration, parent
    and image.

    A container creates subtasks of its own job, in its collaboration, with its own image; a
    user needs ``task:create`` in the collaboration (and, for a task, names the image).
    """
    parent: Task | None = None
    if ident.type == "container":
        parent = get_or_404(s, Task, ident.task_id or 0, "Parent task")
        cid = parent.collaboration_id if cid is None else cid
        if cid != parent.collaboration_id:
            raise PermissionDenied(
                "An algorithm may only create subtasks in its own collaboration."
            )
        if image is not None and image != parent.image:
            raise PermissionDenied(
                f"An algorithm may only create subtasks with its own image ({parent.image}).",
                errors={"image": "must equal the parent task's image"},
            )
        image = parent.image
    else:
        missing = {"collaboration_id": "required"} if cid is None else {}
        if image is None and not upload:
            missing["image"] = "required"
        if missing:
            raise ValidationError(
                "Invalid request: fix the fields listed in 'errors'.", errors=missing
            )
        image = "" if image is None else check_str("image", image, 512)
    assert cid is not None
    collab = require_collaboration(s, ident, cid)
    if parent is None:
        require("task", "create", collaboration_ids=(cid,), ident=ident)
    else:  # a subtask: of the container's own job
        require("task", "create", collaboration_ids=(cid,), job_id=parent.job_id, ident=ident)
    return collab, parent, image


@bp.post("/task/input")
def upload_input() -> Any:
    """One organization's input of a task to be created, as bytes (sealed on an encrypted
    collaboration); ``POST /api/task`` then names it as ``input_upload`` (docs/api.md)."""
    ident = require_type("user", "container")
    s = session()
    collab, _, _ = _creation_target(s, ident, query_id("collaboration_id"), None, upload=True)
    org_id = query_id("organization_id")
    if org_id is None:
        raise ValidationError(
            "Say whose input this is: POST /api/task/input?collaboration_id=<id>&"
            "organization_id=<receiving organization>.",
            errors={"organization_id": "required"},
        )
    if org_id not in {o.id for o in collab.organizations}:
        raise ValidationError(
            f"Organization {org_id} is not a member of '{collab.name}'.",
            errors={"organization_id": "not a member"},
        )
    if request.mimetype != _OCTET:
        raise ValidationError(
            f"Send the input as the request body with Content-Type: {_OCTET} (the sealed bytes "
            "of vantage6nb.common.crypto.seal_stream, or JSON bytes on a collaboration without "
            "encryption).",
            errors={"Content-Type": f"expected {_OCTET}"},
        )
    store = blob_store()
    length = request.content_length
    if length is not None and length > store.max_bytes:
        raise store.too_large_input(length)
    encrypted, sender = bool(collab.encrypted), ident.org_id
    store.maybe_sweep(s)
    s.commit()  # end the read transaction: the upload may take a while
    # this endpoint's limit, not max_body_mb; one byte more, so that the store's own check (and
    # its message naming max_result_mb) refuses a body without Content-Length
    request.max_content_length = store.max_bytes + 1
    stream = request.stream
    head = crypto.read_exact(stream, _HEAD)
    if not head:
        raise ValidationError("The input is empty.", errors={"body": "required"})
    uid = _check_sealed_input(head, sender, org_id, collab.id) if encrypted else None
    tmp, size = store.receive(stream, head=head, too_large=store.too_large_input)
    staged = StagedInput(
        upload_id=secrets.token_hex(16),
        size=size,
        sealed=encrypted,
        collaboration_id=collab.id,
        organization_id=org_id,
        uploader=_uploader(ident),
        task_uid=uid,
    )
    try:
        store.stage(tmp, staged)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("input of %d bytes for organization %s uploaded by %s", size, org_id, ident.label)
    return {
        "input_upload": staged.upload_id,
        "size": size,
        "sealed": encrypted,
        "collaboration_id": collab.id,
        "organization_id": org_id,
        "task_uid": uid,
    }, 201


def _check_sealed_input(head: bytes, sender: int, receiver: int, cid: int) -> str:
    """An encrypted collaboration takes only a sealed input from the caller's organization to
    ``receiver`` (header check only: the server cannot open it); returns its task uid."""
    try:
        b = crypto.read_header(head).binding
    except CryptoError as exc:
        raise ValidationError(
            f"Collaboration {cid} is encrypted: the input must be a sealed payload in binary "
            f"form (vantage6nb.common.crypto.seal_stream); {exc}",
            errors={"input": "not sealed"},
        ) from None
    if (b.kind, b.run_id, b.sender_org_id, b.recipient_org_id) != ("input", None, sender, receiver):
        raise ValidationError(
            f"The sealed payload is bound to {b.describe()}, not to an input from organization "
            f"{sender} to organization {receiver}.",
            errors={"input": "bound elsewhere"},
        )
    return b.task_uid


def _announce(task: Task, nodes: NodeIndex, files: dict[int, PayloadBlob]) -> None:
    hub = state().hub
    brief = task_brief(task)
    for run in task.runs:
        node = nodes.get(task.collaboration_id, run.organization_id)
        if node is not None:
            payload: dict[str, Any] = {
                "task_id": task.id,
                "collaboration_id": task.collaboration_id,
                "run_ids": [run.id],
            }
            if len(run.input or "") <= _EVENT_INPUT_MAX:  # the node starts without asking
                payload["task"] = brief
                payload["runs"] = [
                    {
                        "id": run.id,
                        "task_id": task.id,
                        "organization_id": run.organization_id,
                        "status": run.status,
                        "input": run.input,
                        # a file: fetched as bytes from ``input_ref``
                        **(input_fields(run.id, files[run.id]) if run.id in files else {}),
                    }
                ]
            hub.emit(events.NEW_TASK, payload, events.node_room(node.id))
    hub.emit(
        events.TASK_CREATED,
        {
            "task_id": task.id,
            "collaboration_id": task.collaboration_id,
            "name": task.name,
            "organization_ids": [r.organization_id for r in task.runs],
            "parent_id": task.parent_id,
        },
        events.collaboration_room(task.collaboration_id),
    )


@bp.get("/task/<int:task_id>")
def get_task(task_id: int) -> Any:
    s = session()
    task = visible_task(s, current(), task_id)
    return task_json(task, NodeIndex(s, [task.collaboration_id]))


def _manageable(task_id: int) -> tuple[Identity, Task]:
    ident = require_type("user")
    return ident, visible_task(session(), ident, task_id)


@bp.post("/task/<int:task_id>/kill")
def kill_task(task_id: int) -> Any:
    ident, task = _manageable(task_id)
    require(
        "task",
        "kill",
        org_id=task.init_org_id,
        collaboration_ids=(task.collaboration_id,),
        owner_id=task.init_user_id,
        ident=ident,
    )
    killed = kill_tasks(session(), task, f"killed by {ident.label}")
    audit("task %s killed by %s (%d open runs)", task_id, ident.label, len(killed))
    return {"task_id": task_id, "run_ids": [r.id for r, _ in killed]}


def may_delete_task(ident: Identity, task: Task) -> bool:
    """Who deletes a task: the user who created it (its subtasks count as theirs) or an administrator.

    Other members of the collaboration may see and kill it, not delete it (docs/api.md).
    """
    return ident.type == "user" and allowed(
        ident,
        "task",
        "delete",
        org_id=task.init_org_id,
        collaboration_ids=(task.collaboration_id,),
        owner_id=task.init_user_id,
    )


@bp.delete("/task/<int:task_id>")
def delete_task(task_id: int) -> Any:
    ident, task = _manageable(task_id)  # 404 / 403 exactly as reading it
    if not may_delete_task(ident, task):
        raise PermissionDenied(
            f"Only the user who created task {task_id} or an administrator may delete it; "
            f"to stop it, kill it (POST /api/task/{task_id}/kill), or ask its creator to delete it."
        )
    s = session()
    kill_tasks(s, task, f"task deleted by {ident.label}")
    ids = descendant_ids(s, task.id)
    files = blob_names_of_tasks(s, ids)
    record(
        s,
        "task_deleted",
        actor=ident,
        target=f"task {task_id}",
        detail={
            "name": task.name,
            "collaboration_id": task.collaboration_id,
            "init_org_id": task.init_org_id,
            "init_user_id": task.init_user_id,
            "task_ids": sorted(ids),
        },
    )
    s.delete(task)
    s.commit()
    blob_store().delete(files)  # after the commit: a failed delete keeps its results readable
    audit("task %s deleted by %s", task_id, ident.label)
    return {"msg": f"Task {task_id} deleted, with its runs and subtasks."}
