"""``RunBook``: a task's runs merged from snapshots and pushed events, read by ``Task`` and the monitor."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..common.schemas import FINAL_VALUES, status_rank

__all__ = ["EVENT_FIELDS", "RunBook", "run_id_of"]

#: What a ``run_status`` event sets; a merge that would move a run back leaves these alone.
EVENT_FIELDS = ("status", "reason", "started_at", "finished_at")


def run_id_of(run: Mapping[str, Any]) -> int | None:
    """The run id of a run row (``id``) or of a ``run_status`` event (``run_id``).

    Examples
    --------
    >>> run_id_of({"id": 3}), run_id_of({"run_id": 4, "task_id": 1}), run_id_of({})
    (3, 4, None)
    """
    value = run.get("id") if run.get("id") is not None else run.get("run_id")
    return None if value is None else int(value)


class RunBook:
    """The runs of one task by run id, thread-safe; waiters are woken on every change.

    A run's status only moves forward (:func:`~vantage6nb.common.schemas.status_rank`) and a final
    status never changes: a re-read answered before a later event, or an event that arrives late,
    keeps the newer status (its other fields, such as the node's status, are still taken).

    Parameters
    ----------
    task_id : int
        The task whose ``run_status`` events :meth:`absorb` takes.
    organization_ids : sequence of int
        The order of :meth:`ordered` (the order results are returned in).

    Examples
    --------
    >>> book = RunBook(7)
    >>> book.merge([{"id": 1, "organization_id": 2, "status": "pending"}])
    True
    >>> book.absorb({"task_id": 7, "run_id": 1, "status": "completed"})
    True
    >>> book.merge([{"id": 1, "status": "active"}])  # an older re-read: the status stays
    False
    >>> [r["status"] for r in book.ordered()], book.all_final()
    (['completed'], True)
    """

    def __init__(self, task_id: int, organization_ids: Sequence[int] = ()) -> None:
        self.task_id = int(task_id)
        self.organization_ids = [int(i) for i in organization_ids]
        self._runs: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: notified on every change; ``version`` counts them
        self.changed = threading.Condition(self._lock)
        self.version = 0

    # -- writing --------------------------------------------------------------------------------
    def merge(self, runs: Iterable[Mapping[str, Any]]) -> bool:
        """Fold run rows (a re-read, or events) in; True when any run changed. Wakes waiters."""
        changed = False
        with self.changed:
            for run in runs:
                run_id = run_id_of(run)
                if run_id is None:
                    continue
                known = self._runs.get(run_id, {})
                row = {k: v for k, v in run.items() if k != "run_id"}
                if _moves_back(known.get("status"), run.get("status")):
                    row = {k: v for k, v in row.items() if k not in EVENT_FIELDS}
                new = {**known, **row, "id": run_id}
                if new != known:
                    self._runs[run_id] = new
                    changed = True
            self.version += 1
            self.changed.notify_all()
        return changed

    def absorb(self, event: Any) -> bool:
        """Fold a ``run_status`` event in; False when it is not about this task (or names no run)."""
        if not isinstance(event, Mapping) or event.get("task_id") != self.task_id:
            return False
        if event.get("run_id") is None:
            return False
        self.merge([event])
        return True

    def poke(self) -> None:
        """Wake the waiters without a change (a reconnect: they should re-read)."""
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    # -- reading --------------------------------------------------------------------------------
    def get(self, run_id: int) -> dict[str, Any]:
        """A copy of one run ({} when unknown)."""
        with self._lock:
            return dict(self._runs.get(int(run_id), {}))

    def ordered(self) -> list[dict[str, Any]]:
        """Copies of the runs, in organization order (then by run id)."""
        order: dict[Any, int] = {org: i for i, org in enumerate(self.organization_ids)}
        with self._lock:
            runs = [dict(r) for r in self._runs.values()]
        return sorted(
            runs, key=lambda r: (order.get(r.get("organization_id"), len(order)), r["id"])
        )

    def all_final(self) -> bool:
        """True when there are runs and every one has a final status."""
        with self._lock:
            return bool(self._runs) and all(
                str(r.get("status")) in FINAL_VALUES for r in self._runs.values()
            )

    def wait_changed(self, seen: int, timeout: float | None) -> bool:
        """Block until :attr:`version` moves on from ``seen``; False on timeout."""
        with self.changed:
            return self.changed.wait_for(lambda: self.version != seen, timeout=timeout)


def _moves_back(old: Any, new: Any) -> bool:
    """True when ``new`` would undo ``old``: an earlier status, or any change of a final one."""
    if old is None or new is None:
        return False
    if str(old) in FINAL_VALUES:
        return str(new) != str(old)
    return status_rank(new) < status_rank(old)
