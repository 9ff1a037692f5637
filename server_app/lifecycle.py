"""The run state machine on the server: status changes, kills, and the events they emit."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from vantage6nb.common import events
from vantage6nb.common.errors import Conflict, ValidationError
from vantage6nb.common.schemas import FINAL_VALUES, OPEN_ORDER, OPEN_VALUES, RunStatus

from .models import Run, Task, utcnow
from .serializers import NodeIndex, run_event
from .state import state

__all__ = [
    "change_status",
    "descendant_ids",
    "emit_run_statuses",
    "is_open",
    "kill_tasks",
    "parse_status",
]


def is_open(status: str) -> bool:
    """Whether a run in ``status`` can still change.

    Examples
    --------
    >>> is_open("active"), is_open("killed")
    (True, False)
    """
    return status in OPEN_VALUES


def parse_status(value: str, field: str = "status") -> RunStatus:
    """A RunStatus from its wire value, else a ValidationError listing the valid ones."""
    try:
        return RunStatus(value)
    except ValueError:
        known = ", ".join(sorted(OPEN_VALUES | FINAL_VALUES))
        raise ValidationError(
            f"Unknown run status {value!r}; use one of: {known}.", errors={field: "unknown status"}
        ) from None


def change_status(run: Run, status: RunStatus, reason: str | None = None) -> bool:
    """Move ``run`` to ``status`` (stamping started/finished); False when nothing changed.

    Raises Conflict when the run is already final: a final run never changes again.
    """
    if not is_open(run.status):
        raise Conflict(f"Run {run.id} is already {run.status}; a finished run cannot change again.")
    changed = run.status != status.value or (reason is not None and reason != run.reason)
    run.status = status.value
    if reason is not None:
        run.reason = reason
    now = utcnow()
    if status in (RunStatus.INITIALIZING, RunStatus.ACTIVE) and run.started_at is None:
        run.started_at = now
    if status.is_final and run.finished_at is None:
        run.finished_at = now
    return changed


def emit_run_statuses(
    s: Session, pairs: Iterable[tuple[Run, Task]], nodes: NodeIndex | None = None
) -> None:
    """Emit ``run_status`` for each (run, task) to its collaboration room (after commit).

    ``nodes``: the node index of those collaborations, when the caller already has one.
    """
    pairs = list(pairs)
    if not pairs:
        return
    if nodes is None:
        nodes = NodeIndex(s, {t.collaboration_id for _, t in pairs})
    hub = state().hub
    for run, task in pairs:
        node = nodes.get(task.collaboration_id, run.organization_id)
        hub.emit(
            events.RUN_STATUS,
            run_event(run, task, node),
            events.collaboration_room(task.collaboration_id),
        )


def descendant_ids(s: Session, task_id: int) -> list[int]:
    """``task_id`` and every subtask below it, breadth first."""
    out, frontier = [task_id], [task_id]
    while frontier:
        frontier = list(s.scalars(select(Task.id).where(Task.parent_id.in_(frontier))))
        out.extend(frontier)
    return out


def kill_tasks(s: Session, task: Task, reason: str) -> list[tuple[Run, Task]]:
    """Kill every open run of ``task`` and its subtasks; commit; emit ``kill`` and ``run_status``."""
    ids = descendant_ids(s, task.id)
    runs = list(
        s.scalars(
            select(Run).where(Run.task_id.in_(ids), Run.status.in_(OPEN_ORDER)).order_by(Run.id)
        )
    )
    tasks = {t.id: t for t in s.scalars(select(Task).where(Task.id.in_(ids)))}
    for run in runs:
        change_status(run, RunStatus.KILLED, reason)
    s.commit()
    pairs = [(r, tasks[r.task_id]) for r in runs]
    nodes = NodeIndex(s, {t.collaboration_id for t in tasks.values()})
    by_node: dict[tuple[int, int], list[int]] = {}
    for run, t in pairs:
        node = nodes.get(t.collaboration_id, run.organization_id)
        if node is not None:
            by_node.setdefault((node.id, t.id), []).append(run.id)
    hub = state().hub
    for (node_id, task_id), run_ids in by_node.items():
        hub.emit(events.KILL, {"task_id": task_id, "run_ids": run_ids}, events.node_room(node_id))
    emit_run_statuses(s, pairs)
    return pairs
