"""A run's result and input as bytes: results streamed up by its node (PUT) and down to readers
(GET), inputs down to the node that runs them; large ones as files."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, request, send_file

from vantage6nb.common import crypto, textform
from vantage6nb.common.errors import (
    Conflict,
    CryptoError,
    DecryptionError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from vantage6nb.common.schemas import FINAL_VALUES

from ..blobs import RESULT_KIND, blob_store, input_blob, result_blob, result_ref
from ..db import session
from ..models import Collaboration, PayloadBlob, Run, Task
from ..permissions import (
    Identity,
    can_see_result,
    current,
    denied,
    is_node_run,
    needed_scope,
    require_node_run,
    require_type,
    task_target,
    visible_run,
)
from ..rules import Rule

__all__ = ["bp"]

log = logging.getLogger("server_app.results")

bp = Blueprint("run_results", __name__)

_OCTET = "application/octet-stream"
_HEAD = 2048  # enough for any sealed payload header (46 + a task uid of <= 1024 bytes)

# The text form of a sealed payload (``v6nb1:<base64>``), in which small sealed results are
# stored inline. vantage6nb.common.crypto has no public function for the framing alone (only
# inside seal_text/open_text), so these two build on its TEXT_PREFIX; call its functions instead
# once it offers them (the decoding here is lenient on purpose: a bad text is served as stored).


def _sealed_bytes(text: str) -> bytes:
    """The bytes of a sealed payload's text form (the text itself when it does not decode).

    Lenient on purpose: the server cannot check a ciphertext, so what it stored is served, and
    the receiver's strict decoding (and the MAC) refuses it with a clear error.
    """
    try:
        return textform.from_text(text)
    except DecryptionError:
        return text.encode("utf-8")  # not decodable: hand it over as stored


def _check_sealed(head: bytes, run: Run, task: Task) -> None:
    """An encrypted collaboration takes only a sealed result of this very run (header check only)."""
    try:
        header = crypto.read_header(head)
    except CryptoError as exc:
        raise ValidationError(
            f"Collaboration {task.collaboration_id} is encrypted: the result must be a sealed "
            f"payload in binary form (vantage6nb.common.crypto.seal_stream); {exc}",
            errors={"result": "not sealed"},
        ) from None
    b = header.binding
    if (b.kind, b.task_uid, b.run_id, b.sender_org_id) != (
        "result",
        task.uid,
        run.id,
        run.organization_id,
    ):
        raise ValidationError(
            f"The sealed payload is bound to {b.describe()}, not to a result of run {run.id} "
            f"from organization {run.organization_id}.",
            errors={"result": "bound elsewhere"},
        )


@bp.put("/run/<int:run_id>/result")
def put_result(run_id: int) -> Any:
    ident = require_type("node")
    run, task, _, _ = visible_run(session(), ident, run_id)
    require_node_run(ident, run, task)
    if request.mimetype != _OCTET:
        raise ValidationError(
            f"Send the result as the request body with Content-Type: {_OCTET} "
            "(JSON results go in PATCH /api/run/<id>).",
            errors={"Content-Type": f"expected {_OCTET}"},
        )
    store = blob_store()
    length = request.content_length
    if length is not None and length > store.max_bytes:
        raise store.too_large(length)
    if run.status in FINAL_VALUES:
        raise Conflict(f"Run {run_id} is already {run.status}; its result cannot change.")
    s = session()
    collab = s.get(Collaboration, task.collaboration_id)
    encrypted = bool(collab and collab.encrypted)
    s.commit()  # end the read transaction: the upload may take a while
    request.max_content_length = store.max_bytes  # this endpoint's limit, not max_body_mb
    stream = request.stream
    head = crypto.read_exact(stream, _HEAD)
    if encrypted:
        _check_sealed(head, run, task)
    tmp, size = store.receive(stream, head=head)
    old: list[str] = []
    new_name: str | None = None
    try:
        s.refresh(run)
        if run.status in FINAL_VALUES:  # killed or finished while uploading
            raise Conflict(f"Run {run_id} became {run.status}; its result cannot change.")
        blob = result_blob(s, run.id)
        if size <= store.threshold:
            data = tmp.read_bytes()
            if encrypted:
                run.result = textform.to_text(data)
            else:
                try:
                    run.result = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValidationError(
                        "The result is not UTF-8 text: send the JSON bytes of OUTPUT_FILE.",
                        errors={"result": "not UTF-8"},
                    ) from None
            if blob is not None:
                old.append(blob.name)
                s.delete(blob)
        else:
            new_name = store.adopt(tmp, run.id)
            if blob is None:
                blob = PayloadBlob(run_id=run.id, kind=RESULT_KIND)
                s.add(blob)
            else:
                old.append(blob.name)
            blob.name, blob.size, blob.sealed = new_name, size, encrypted
            run.result = None
        s.commit()
    except BaseException:
        s.rollback()
        tmp.unlink(missing_ok=True)
        if new_name is not None:
            store.delete([new_name])
        raise
    tmp.unlink(missing_ok=True)
    store.delete(old)
    stored = "file" if new_name else "inline"
    log.info("run %s: result of %d bytes stored %s", run_id, size, stored)
    return {
        "run_id": run.id,
        "stored": stored,
        "result_ref": result_ref(run.id) if new_name else None,
        "result_size": size,
    }


@bp.get("/run/<int:run_id>/result")
def get_result(run_id: int) -> Any:
    s = session()
    ident = current()
    run, task, _, blob = visible_run(s, ident, run_id)
    if not can_see_result(ident, task, run):
        raise denied(
            Rule("result", "view", needed_scope(ident, **task_target(task))),
            f"The result of run {run_id}",
        )
    s.commit()  # the file may take a while to send: hold no transaction
    if blob is not None:
        path = blob_store().path(blob.name)
        if not path.is_file():
            raise NotFound(
                f"The stored result of run {run_id} is missing from the server's blob_dir; "
                "ask the administrator to check it, or run the task again."
            )
        resp = send_file(path, mimetype=_OCTET, conditional=False, etag=False, max_age=0)
        resp.headers["X-V6NB-Sealed"] = "1" if blob.sealed else "0"
        return resp
    if run.result is None:
        raise NotFound(f"Run {run_id} has no result (status {run.status}).")
    text = run.result
    if crypto.is_sealed(text):
        data, sealed = _sealed_bytes(text), "1"
    else:
        data, sealed = text.encode("utf-8"), "0"
    return Response(data, mimetype=_OCTET, headers={"X-V6NB-Sealed": sealed})


def _may_read_input(ident: Identity, run: Run, task: Task) -> bool:
    """Only the node that runs it (and that run's own container) reads a run's input."""
    if ident.type == "container":
        return ident.run_id == run.id
    return is_node_run(ident, run, task)


@bp.get("/run/<int:run_id>/input")
def get_input(run_id: int) -> Any:
    """The run's input as bytes: the sealed bytes (or JSON bytes without encryption), streamed
    from the stored file when it was uploaded as bytes, else converted from the inline text."""
    s = session()
    ident = current()
    run, task, _, _ = visible_run(s, ident, run_id)
    if not _may_read_input(ident, run, task):
        raise PermissionDenied(
            f"Only the node of organization {run.organization_id} in collaboration "
            f"{task.collaboration_id} reads the input of run {run_id}."
        )
    blob = input_blob(s, run.id)
    s.commit()  # the file may take a while to send: hold no transaction
    if blob is not None:
        path = blob_store().path(blob.name)
        if not path.is_file():
            raise NotFound(
                f"The stored input of run {run_id} is missing from the server's blob_dir; "
                "ask the administrator to check it, or create the task again."
            )
        resp = send_file(path, mimetype=_OCTET, conditional=False, etag=False, max_age=0)
        resp.headers["X-V6NB-Sealed"] = "1" if blob.sealed else "0"
        return resp
    text = run.input or ""
    if crypto.is_sealed(text):
        data, sealed = _sealed_bytes(text), "1"
    else:
        data, sealed = text.encode("utf-8"), "0"
    return Response(data, mimetype=_OCTET, headers={"X-V6NB-Sealed": sealed})
