"""What the node knows about its runs: those it holds, killed or ended in this life, and which
runs' algorithms it started (on disk, so the next life knows too)."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["JOURNAL_NAME", "NodeState", "StartRecord", "UnreadableRecord"]

_FINISHED_KEPT = 100_000
#: the record of a started algorithm, in the run's work folder (``data_dir/runs/run-<id>/``)
JOURNAL_NAME = "started.json"


@dataclass(frozen=True)
class StartRecord:
    """What the node wrote, just before it started a run's algorithm, to finish the run without
    it: the post-run path (disclosure check, encryption, outbox) needs nothing else.

    Examples
    --------
    >>> rec = StartRecord(run_id=7, task_id=3, life="a1", image="v6nb/summary")
    >>> StartRecord.from_json(rec.to_json()) == rec
    True
    """

    run_id: int
    task_id: int
    life: str  # which life of the node started it (NodeState.life)
    image: str
    digest: str | None = None
    method: str | None = None
    arguments: str = ""  # digest of the opened input
    entry_point: bool = False  # the disclosure gate's word before the run
    role: str | None = None
    runtime: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StartRecord:
        """Parse a record; ValueError when it is not one (missing or mistyped fields)."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            rec = cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(rec.run_id, int) or not isinstance(rec.task_id, int):
            raise ValueError("run_id and task_id must be integers")
        return rec


@dataclass(frozen=True)
class UnreadableRecord:
    """A start record that exists but cannot be read (``why``): the run started, its facts are lost."""

    why: str


def _never(rid: int) -> bool:
    return False


class NodeState:
    """The runs this node holds in hand, those killed on request, and those ended in this life.

    A run is held while it is queued, running or being reported; a run that ended in this life is
    remembered (a bounded number, oldest forgotten first) so it is never started twice in one life:
    a listing taken before its final update went out still shows it open (docs/security.md).
    All of it sits under one lock, which the methods take themselves.

    With a ``folder`` (the node's ``data_dir/runs``), the start of each algorithm is also
    recorded on disk (:meth:`record_start`), so a later life of the node tells a run whose
    algorithm it started from one it never started, whatever the server's listing says
    (:meth:`previous_start`); docs/operations.md, "Exactly once".

    Examples
    --------
    >>> state = NodeState()
    >>> state.claim(7), state.claim(7)
    (True, False)
    >>> state.cancel(7), state.killed_on_request(7)
    (True, True)
    >>> state.end(7); state.claim(7), state.killed_on_request(7)
    (False, False)
    """

    def __init__(self, *, kept: int = _FINISHED_KEPT, folder: Path | None = None) -> None:
        self.folder = folder
        self.life = secrets.token_hex(8)  # this life's name in the start records it writes
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._cancelled: set[int] = set()
        self._finished: dict[int, None] = {}  # runs this life ended, oldest first
        self._kept = kept

    def claim(self, rid: int, *, unless: Callable[[int], bool] = _never) -> bool:
        """Take ``rid`` in hand to run it; False when it is held already, ended in this life, or
        ``unless(rid)`` (asked under the same lock) says it must not start."""
        with self._lock:
            if rid in self._active or rid in self._finished or unless(rid):
                return False
            self._active.add(rid)
            return True

    def hold(self, rid: int) -> bool:
        """Take ``rid`` in hand to upload what it left; False when it is held already."""
        with self._lock:
            if rid in self._active:
                return False
            self._active.add(rid)
            return True

    def release(self, rid: int) -> None:
        """Let go of a run held by :meth:`hold`."""
        with self._lock:
            self._active.discard(rid)

    def end(self, rid: int) -> None:
        """Let go of a run claimed by :meth:`claim`, remembering that this life ran it to its end."""
        with self._lock:
            self._finished[rid] = None
            if len(self._finished) > self._kept:
                del self._finished[next(iter(self._finished))]
            self._active.discard(rid)
            self._cancelled.discard(rid)

    def cancel(self, rid: int) -> bool:
        """Mark a held run as killed on request; False when this node does not hold it."""
        with self._lock:
            if rid not in self._active:
                return False
            self._cancelled.add(rid)
            return True

    def mark_cancelled(self, rid: int) -> None:
        """Mark ``rid`` as killed (the server said it is final already), held or not."""
        with self._lock:
            self._cancelled.add(rid)

    def killed_on_request(self, rid: int) -> bool:
        """Whether ``rid`` was killed on request while this node held it."""
        with self._lock:
            return rid in self._cancelled

    def holds(self, rid: int) -> bool:
        """Whether this node holds ``rid`` now."""
        with self._lock:
            return rid in self._active

    # -- starts recorded on disk -------------------------------------------------------------------
    def _journal(self, rid: int) -> Path | None:
        return None if self.folder is None else self.folder / f"run-{rid}" / JOURNAL_NAME

    def record_start(self, record: StartRecord) -> None:
        """Record, before the algorithm starts, that this life starts it (temp file + rename).

        Not fsynced: it guards against the node process dying, which leaves the page cache to
        the next life; after a machine crash a run can only be run again (docs/operations.md).
        """
        path = self._journal(record.run_id)
        if path is None:
            return
        tmp = path.with_name(path.name + ".partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(record.to_json())
        os.replace(tmp, path)

    def previous_start(self, rid: int) -> StartRecord | UnreadableRecord | None:
        """The record of ``rid``'s start by an earlier life of this node; None when there is none
        (never started, or started by this life)."""
        path = self._journal(rid)
        if path is None:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return UnreadableRecord(f"{path} cannot be read: {exc}")
        try:
            record = StartRecord.from_json(text)
        except ValueError as exc:
            return UnreadableRecord(f"{path} is not a start record: {exc}")
        if record.run_id != rid:
            return UnreadableRecord(f"{path} records run {record.run_id}, not run {rid}")
        return None if record.life == self.life else record
