"""Large results and task inputs as files in ``blob_dir``: streamed to disk, named by the database."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flask import current_app
from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import PayloadTooLarge

from .models import PayloadBlob, Run

__all__ = [
    "INPUT_KIND",
    "RESULT_KIND",
    "BlobStore",
    "StagedInput",
    "blob_index",
    "blob_names_of_tasks",
    "blob_store",
    "drop_run_blobs",
    "input_blob",
    "input_blobs",
    "input_fields",
    "input_ref",
    "is_result_of",
    "result_blob",
    "result_fields",
    "result_ref",
]

log = logging.getLogger("server_app.blobs")

_CHUNK = 1024 * 1024
_SUFFIX = ".blob"
_PARTIAL = ".partial"
_GRACE_S = 3600  # a sweep leaves younger files alone: another instance may be mid-upload
_SWEEP_EVERY_S = 600  # besides at start, uploads of inputs sweep at most this often
_META = ".meta"  # beside a staged input: who uploaded it, for which collaboration and receiver
RESULT_KIND = "result"  # PayloadBlob.kind of a run's result
INPUT_KIND = "input"  # PayloadBlob.kind of a run's input sent as bytes (POST /api/task/input)
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def input_ref(run_id: int) -> str:
    """Where a run's input is fetched as bytes by its node (the ``input_ref`` of docs/api.md).

    Examples
    --------
    >>> input_ref(7)
    '/api/run/7/input'
    """
    return f"/api/run/{run_id}/input"


def input_fields(run_id: int, blob: PayloadBlob | None) -> dict[str, Any]:
    """The ``input_ref`` / ``input_size`` pair of a run's JSON (both None for an inline input).

    Examples
    --------
    >>> input_fields(7, None)
    {'input_ref': None, 'input_size': None}
    """
    if blob is None:
        return {"input_ref": None, "input_size": None}
    return {"input_ref": input_ref(run_id), "input_size": blob.size}


def result_ref(run_id: int) -> str:
    """Where a run's result is fetched as bytes (the ``result_ref`` marker of docs/api.md).

    Examples
    --------
    >>> result_ref(7)
    '/api/run/7/result'
    """
    return f"/api/run/{run_id}/result"


@dataclass(frozen=True)
class StagedInput:
    """An input uploaded before its task (``POST /api/task/input``): a file plus its ``.meta``.

    It has no database row: ``POST /api/task`` gives it one (a :class:`PayloadBlob` of kind
    ``input``) in the transaction that creates the task, and a file no row names is swept like
    any orphaned payload, so an upload that never gets a task costs nothing after the grace time.
    """

    upload_id: str
    size: int
    sealed: bool
    collaboration_id: int
    organization_id: int
    uploader: str  # Identity.type + id, e.g. "user 3" or "container 12"
    task_uid: str | None = None  # from a sealed header

    @property
    def name(self) -> str:
        """The file's name in ``blob_dir`` (and the PayloadBlob's, once a task uses it)."""
        return f"input-{self.upload_id}{_SUFFIX}"


def result_fields(run_id: int, blob: PayloadBlob | None) -> dict[str, Any]:
    """The ``result_ref`` / ``result_size`` pair of a run's JSON (both None for an inline result).

    Examples
    --------
    >>> result_fields(7, None)
    {'result_ref': None, 'result_size': None}
    """
    if blob is None:
        return {"result_ref": None, "result_size": None}
    return {"result_ref": result_ref(run_id), "result_size": blob.size}


class BlobStore:
    """Files named ``run-<id>-<random>.blob`` in one folder; the database row names the file.

    Writes go to a ``.partial`` temporary file (fsynced) that is renamed into place, so a crash
    leaves either nothing or a whole file; files no row names are removed by :meth:`sweep`.

    Examples
    --------
    >>> import io, tempfile
    >>> store = BlobStore(Path(tempfile.mkdtemp()), threshold=4, max_bytes=100)
    >>> tmp, size = store.receive(io.BytesIO(b"hello"), head=b"")
    >>> name = store.adopt(tmp, run_id=3); size, store.path(name).read_bytes()
    (5, b'hello')
    """

    def __init__(self, folder: Path, *, threshold: int, max_bytes: int) -> None:
        self.folder = folder
        self.threshold = threshold
        self.max_bytes = max_bytes
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._swept_at = time.monotonic()  # the server sweeps at start

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data_dir: Path) -> BlobStore:
        """The store the settings ``blob_dir``, ``blob_threshold_kb`` and ``max_result_mb`` describe."""
        folder = Path(os.path.expanduser(str(cfg["blob_dir"])))
        if not folder.is_absolute():
            folder = data_dir / folder
        return cls(
            folder,
            threshold=int(cfg["blob_threshold_kb"]) * 1024,
            max_bytes=int(cfg["max_result_mb"]) * 1024 * 1024,
        )

    def path(self, name: str) -> Path:
        """The file of a stored blob."""
        return self.folder / name

    def too_large(self, size: int) -> PayloadTooLarge:
        """The 413 error for a result of ``size`` bytes (or more)."""
        return PayloadTooLarge(
            f"The result is larger than the server accepts ({self.max_bytes // (1024 * 1024)} MiB, "
            "setting max_result_mb): return less data from the algorithm (aggregate on the "
            "node), or ask the server's administrator to raise max_result_mb.",
            errors={"result": f"over {self.max_bytes} bytes"},
        )

    def receive(
        self,
        stream: BinaryIO | Any,
        *,
        head: bytes,
        too_large: Callable[[int], PayloadTooLarge] | None = None,
    ) -> tuple[Path, int]:
        """Write ``head`` then the rest of ``stream`` to a new temporary file; returns (path, size).

        Raises :class:`PayloadTooLarge` (``too_large``'s, default :meth:`too_large`) and removes
        the file as soon as more than ``max_bytes`` arrived: the rest is never read.
        """
        tmp = self.folder / f"upload-{secrets.token_hex(8)}{_PARTIAL}"
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                chunk = head or stream.read(_CHUNK)
                while chunk:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise (too_large or self.too_large)(size)
                    fh.write(chunk)
                    chunk = stream.read(_CHUNK)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, size

    def adopt(self, tmp: Path, run_id: int) -> str:
        """Rename a received temporary file into place; returns its new name."""
        name = f"run-{run_id}-{secrets.token_hex(8)}{_SUFFIX}"
        os.replace(tmp, self.path(name))
        return name

    def too_large_input(self, size: int) -> PayloadTooLarge:
        """The 413 error for an uploaded input of ``size`` bytes (or more)."""
        return PayloadTooLarge(
            f"The input is larger than the server accepts ({self.max_bytes // (1024 * 1024)} MiB, "
            "setting max_result_mb, the limit of every stored payload): send less data in the "
            "task's arguments (let the nodes read it from their databases), or ask the server's "
            "administrator to raise max_result_mb.",
            errors={"input": f"over {self.max_bytes} bytes"},
        )

    def stage(self, tmp: Path, staged: StagedInput) -> None:
        """Keep a received input file under its upload id, with its ``.meta`` beside it."""
        meta = self.folder / f"input-{staged.upload_id}{_META}"
        fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(staged), fh)
        os.replace(tmp, self.path(staged.name))

    def staged(self, upload_id: str) -> StagedInput | None:
        """The staged input of ``upload_id`` (None when unknown, used already or swept)."""
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            return None
        meta = self.folder / f"input-{upload_id}{_META}"
        try:
            fields = json.loads(meta.read_text(encoding="utf-8"))
            staged = StagedInput(**fields)
        except (OSError, ValueError, TypeError):
            return None
        return staged if self.path(staged.name).is_file() else None

    def unstage(self, upload_ids: Iterable[str]) -> None:
        """Drop the ``.meta`` of inputs a task now owns (their files stay, named by its rows)."""
        for upload_id in upload_ids:
            if _UPLOAD_ID.fullmatch(upload_id):
                (self.folder / f"input-{upload_id}{_META}").unlink(missing_ok=True)

    def delete(self, names: Iterable[str]) -> None:
        """Remove stored files (missing ones are fine)."""
        for name in names:
            if name and "/" not in name:
                self.path(name).unlink(missing_ok=True)

    def maybe_sweep(self, s: Session, *, every_s: float = _SWEEP_EVERY_S) -> int:
        """:meth:`sweep` once the last one is ``every_s`` old (uploads call it: unused inputs go)."""
        if time.monotonic() - self._swept_at < every_s:
            return 0
        self._swept_at = time.monotonic()
        return self.sweep(s)

    def sweep(self, s: Session, *, grace_s: float = _GRACE_S) -> int:
        """Remove files no database row names (and stale partial uploads); returns how many.

        Tasks deleted by a cascade (e.g. with their collaboration) leave their files behind;
        the server sweeps them at start. Files younger than ``grace_s`` stay (uploads in flight,
        and inputs uploaded for a task not created yet): an input no task used within
        ``grace_s`` goes with its ``.meta``.
        """
        known = set(s.scalars(select(PayloadBlob.name)))
        cutoff = time.time() - grace_s
        removed = 0
        for path in self.folder.iterdir():
            if path.suffix not in (_SUFFIX, _PARTIAL, _META) or path.name in known:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            log.info("removed %d orphaned payload file(s) from %s", removed, self.folder)
        return removed


def blob_store() -> BlobStore:
    """The current app's store."""
    return current_app.extensions["v6nb_blobs"]


def is_result_of(run_id: Any) -> ColumnElement[bool]:
    """The condition "this PayloadBlob is the result of ``run_id``" (a value or a column, to join on)."""
    return and_(PayloadBlob.run_id == run_id, PayloadBlob.kind == RESULT_KIND)


def result_blob(s: Session, run_id: int) -> PayloadBlob | None:
    """The stored result file of one run, if it has one, as the database holds it now.

    ``populate_existing``: a row loaded earlier in this session (say by ``visible_run``) is
    refreshed, so a caller that waited for an upload sees a file another request stored meanwhile.
    """
    stmt = select(PayloadBlob).where(is_result_of(run_id))
    return s.scalar(stmt.execution_options(populate_existing=True))


def blob_index(s: Session, run_ids: Iterable[int]) -> dict[int, PayloadBlob]:
    """The stored result file of each run that has one, in one query."""
    ids = set(run_ids)
    if not ids:
        return {}
    rows = s.scalars(
        select(PayloadBlob).where(PayloadBlob.run_id.in_(ids), PayloadBlob.kind == RESULT_KIND)
    )
    return {b.run_id: b for b in rows}


def drop_run_blobs(s: Session, run_id: int) -> list[str]:
    """Delete the row of a run's stored result file (a JSON result replaces it); returns the names.

    The run's input file stays. Remove the files with :meth:`BlobStore.delete` after the commit,
    so a failed commit keeps them.
    """
    names: list[str] = []
    for blob in s.scalars(select(PayloadBlob).where(is_result_of(run_id))):
        names.append(blob.name)
        s.delete(blob)
    return names


def input_blob(s: Session, run_id: int) -> PayloadBlob | None:
    """The stored input file of one run, if its input was sent as bytes."""
    stmt = select(PayloadBlob).where(PayloadBlob.run_id == run_id, PayloadBlob.kind == INPUT_KIND)
    return s.scalar(stmt)


def input_blobs(s: Session, run_ids: Iterable[int]) -> dict[int, PayloadBlob]:
    """The stored input file of each run that has one, in one query."""
    ids = set(run_ids)
    if not ids:
        return {}
    rows = s.scalars(
        select(PayloadBlob).where(PayloadBlob.run_id.in_(ids), PayloadBlob.kind == INPUT_KIND)
    )
    return {b.run_id: b for b in rows}


def blob_names_of_tasks(s: Session, task_ids: Iterable[int]) -> list[str]:
    """File names of every stored payload of the runs of these tasks (to delete with them)."""
    ids = list(task_ids)
    if not ids:
        return []
    stmt = (
        select(PayloadBlob.name).join(Run, PayloadBlob.run_id == Run.id).where(Run.task_id.in_(ids))
    )
    return list(s.scalars(stmt))
