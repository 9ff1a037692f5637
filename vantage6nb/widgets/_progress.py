"""Plain-Python state of a task's runs (one row per organization), fed by run_status events."""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..common.schemas import FINAL_STATUSES, RunStatus

__all__ = ["RunRow", "TaskProgress", "parse_time", "render_runs_html"]

_FINAL = {str(s) for s in FINAL_STATUSES}
# How far along each status is: a late event for an earlier status never moves a run back.
_RANK = {"pending": 0, "initializing": 1, "active": 2}
_COLOURS = {
    "pending": "#9e9e9e",
    "initializing": "#1e88e5",
    "active": "#1e88e5",
    "completed": "#2e7d32",
    "failed": "#c62828",
    "crashed": "#c62828",
    "killed": "#ef6c00",
    "not allowed": "#6a1b9a",
}


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp (or datetime, or None) as an aware datetime; naive values are taken as UTC.

    Examples
    --------
    >>> parse_time("2024-01-02T03:04:05").isoformat()
    '2024-01-02T03:04:05+00:00'
    """
    try:
        if value is None or value == "" or value != value:  # None, empty, NaN or NaT
            return None
    except (TypeError, ValueError):
        return None
    if isinstance(value, datetime):
        dt = value
    elif hasattr(value, "to_pydatetime"):
        dt = value.to_pydatetime()
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RunRow:
    """One organization's run of a task as the monitor shows it."""

    organization_id: int
    organization: str = ""
    task_id: int | None = None
    subtask: bool = False
    run_id: int | None = None
    node: str = ""
    status: str = "pending"
    reason: str = ""
    log_tail: str = ""
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in _FINAL

    def elapsed(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish (or to ``now`` while running); None before it starts."""
        if self.started is None:
            return None
        end = self.finished or now or datetime.now(timezone.utc)
        return max(0.0, (end - self.started).total_seconds())


@dataclass
class TaskProgress:
    """Every run of one task and of its subtasks, merged from snapshots and pushed events (thread-safe).

    Rows are keyed by (task id, organization id). Subtasks (those a central algorithm creates) are
    tracked once :meth:`add_subtask` names them, so a central task shows every organization's part.

    Examples
    --------
    >>> p = TaskProgress(task_id=7)
    >>> p.apply({"task_id": 7, "organization_id": 1, "status": "active"})
    True
    >>> p.apply({"task_id": 7, "organization_id": 1, "status": "completed"})
    True
    >>> p.apply({"task_id": 7, "organization_id": 1, "status": "active"})  # stale: ignored
    False
    >>> p.counts()
    {'completed': 1}
    """

    task_id: int
    org_names: dict[int, str] = field(default_factory=dict)
    node_names: dict[int, str] = field(default_factory=dict)
    rows: dict[tuple[int, int], RunRow] = field(default_factory=dict)
    subtasks: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_subtask(self, task_id: int) -> None:
        """Also follow the runs of ``task_id`` (a subtask of this task)."""
        with self._lock:
            self.subtasks.add(int(task_id))

    def apply(self, event: dict[str, Any]) -> bool:
        """Merge one run summary (a ``run_status`` payload or a status row); True when it changed a row."""
        task_id = event.get("task_id", self.task_id)
        task_id = self.task_id if task_id is None else int(task_id)
        if task_id != self.task_id and task_id not in self.subtasks:
            return False
        org = event.get("organization_id")
        if org is None:
            return False
        org = int(org)
        status = str(event.get("status") or "pending")
        key = (task_id, org)
        with self._lock:
            old = self.rows.get(key) or RunRow(
                org, self.org_names.get(org, ""), task_id=task_id, subtask=task_id != self.task_id
            )
            if old.is_final and status != old.status:
                return False  # a final run never changes again (server rule); late events are stale
            if (
                not old.is_final
                and status not in _FINAL
                and _RANK.get(status, 0) < _RANK.get(old.status, 0)
            ):
                return False
            new = replace(
                old,
                organization=str(
                    event.get("organization") or old.organization or self.org_names.get(org, "")
                ),
                run_id=event.get("run_id", event.get("id", old.run_id)) or old.run_id,
                node=str(
                    event.get("node")
                    or self.node_names.get(event.get("node_id"))  # type: ignore[arg-type]
                    or old.node
                    or ""
                ),
                status=status,
                reason=str(event.get("reason") or old.reason or ""),
                log_tail=str(event.get("log_tail") or event.get("log") or old.log_tail or "")[
                    -2000:
                ],
                started=parse_time(event.get("started_at", event.get("started"))) or old.started,
                finished=parse_time(event.get("finished_at", event.get("finished")))
                or old.finished,
            )
            if new == old and key in self.rows:
                return False
            self.rows[key] = new
            return True

    def set_log(self, row: RunRow, log: str, *, lines: int = 20) -> None:
        """Keep the last ``lines`` lines of a run's log."""
        tail = "\n".join((log or "").rstrip().splitlines()[-lines:])
        key = (row.task_id if row.task_id is not None else self.task_id, row.organization_id)
        with self._lock:
            old = self.rows.get(key) or row
            self.rows[key] = replace(old, log_tail=tail)

    def snapshot(self) -> list[RunRow]:
        """The rows: this task's first, then each subtask's, each by organization name."""
        with self._lock:
            rows = list(self.rows.values())
        return sorted(
            rows, key=lambda r: (r.subtask, r.task_id or 0, r.organization or "", r.organization_id)
        )

    def main_rows(self) -> list[RunRow]:
        """The runs of the task itself (not of its subtasks)."""
        return [r for r in self.snapshot() if not r.subtask]

    def counts(self) -> dict[str, int]:
        """How many runs are in each status."""
        out: dict[str, int] = {}
        for r in self.snapshot():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def finished(self) -> int:
        return sum(1 for r in self.snapshot() if r.is_final)

    @property
    def done(self) -> bool:
        """Every run of the task itself is final (its subtasks then are too, or no longer matter)."""
        main = self.main_rows()
        return bool(main) and all(r.is_final for r in main)

    @property
    def succeeded(self) -> bool:
        return self.done and all(r.status == RunStatus.COMPLETED.value for r in self.main_rows())

    def elapsed(self, now: datetime | None = None) -> float | None:
        """Seconds from the first start to the last finish (or ``now`` while runs are open)."""
        rows = self.snapshot()
        starts = [r.started for r in rows if r.started]
        if not starts:
            return None
        ends = [r.finished for r in rows if r.finished]
        end = max(ends) if self.done and ends else (now or datetime.now(timezone.utc))
        return max(0.0, (end - min(starts)).total_seconds())


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def render_runs_html(rows: list[RunRow], now: datetime | None = None) -> str:
    """An HTML table of runs: organization, node, status badge, elapsed, reason and log tail."""
    head = "".join(
        f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
        for h in ("organization", "part", "node", "status", "elapsed", "reason")
    )
    body = []
    for r in rows:
        colour = _COLOURS.get(r.status, "#616161")
        badge = (
            f"<span class='v6nb-status' data-status='{html.escape(r.status)}' style='background:{colour};"
            f"color:white;border-radius:4px;padding:1px 6px'>{html.escape(r.status)}</span>"
        )
        reason = html.escape(r.reason)
        if r.log_tail:
            reason += (
                "<details><summary>log tail</summary><pre style='max-height:12em;overflow:auto'>"
                f"{html.escape(r.log_tail)}</pre></details>"
            )
        part = f"subtask {r.task_id}" if r.subtask else "task"
        cells = (
            html.escape(r.organization or f"organization {r.organization_id}"),
            part,
            html.escape(r.node),
            badge,
            _fmt_seconds(r.elapsed(now)),
            reason,
        )
        body.append(
            "<tr class='v6nb-run'>"
            + "".join(f"<td style='padding:2px 8px;vertical-align:top'>{c}</td>" for c in cells)
            + "</tr>"
        )
    return (
        "<table class='v6nb-runs' style='border-collapse:collapse'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
