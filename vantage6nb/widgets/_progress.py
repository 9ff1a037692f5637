"""Plain-Python view of a task's runs (one row per organization), read from the tasks' run books."""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..client import RunBook
from ..common.schemas import FINAL_VALUES, RunStatus

__all__ = ["RunRow", "TaskProgress", "parse_time", "render_runs_html"]

_COLOURS = {
    "pending": "#9e9e9e",
    "initializing": "#1e88e5",
    "active": "#1e88e5",
    "completed": "#2e7d32",
    "failed": "#c62828",
    "crashed": "#c62828",
    "killed": "#ef6c00",
    "not allowed": "#6a1b9a",
    "refused": "#ad1457",  # the node's disclosure policy withheld the output
}
_UNKNOWN_COLOUR = "#616161"  # a status this client does not know yet (a newer server)


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
    node_status: str = ""  # online, offline; "" when not known
    node_since: datetime | None = None  # when the node was last seen (offline: since then)

    @property
    def waits_for_node(self) -> bool:
        """The run is open and its node is offline (it waits until the node is started)."""
        return not self.is_final and self.node_status == "offline"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_VALUES

    def elapsed(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish (or to ``now`` while running); None before it starts."""
        if self.started is None:
            return None
        end = self.finished or now or datetime.now(timezone.utc)
        return max(0.0, (end - self.started).total_seconds())


@dataclass
class TaskProgress:
    """Every run of one task and of its subtasks, as their :class:`~vantage6nb.client.RunBook`
    hold them (thread-safe): the merge of re-reads and events is the books' (the client's), this
    only names and shows the runs.

    Rows come from one book per task: :meth:`follow` shares a ``Task``'s own (``task.run_book``),
    so what the task learns the monitor shows; :meth:`add_subtask` starts an empty one.

    Examples
    --------
    >>> p = TaskProgress(task_id=7)
    >>> p.apply({"task_id": 7, "run_id": 3, "organization_id": 1, "status": "active"})
    True
    >>> p.apply({"task_id": 7, "run_id": 3, "organization_id": 1, "status": "completed"})
    True
    >>> p.apply({"task_id": 7, "run_id": 3, "organization_id": 1, "status": "active"})  # stale
    False
    >>> p.counts()
    {'completed': 1}
    """

    task_id: int
    org_names: dict[int, str] = field(default_factory=dict)
    node_names: dict[int, str] = field(default_factory=dict)
    books: dict[int, RunBook] = field(default_factory=dict)
    #: organization id -> its node's latest ``{"status", "last_seen", ...}`` (node events)
    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    _logs: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.books.setdefault(self.task_id, RunBook(self.task_id))

    @property
    def subtasks(self) -> set[int]:
        """The ids of the subtasks followed."""
        with self._lock:
            return set(self.books) - {self.task_id}

    def follow(self, book: RunBook) -> None:
        """Show the runs of ``book`` (a task's, or a subtask's, ``run_book``)."""
        with self._lock:
            self.books[book.task_id] = book

    def add_subtask(self, task_id: int) -> None:
        """Also show the runs of ``task_id`` (a subtask of this task), from events to come."""
        with self._lock:
            self.books.setdefault(int(task_id), RunBook(int(task_id)))

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Merge one run summary (a ``run_status`` payload or a status row) into its task's book;
        True when it changed a run. Runs of tasks not followed are ignored."""
        task_id = event.get("task_id", self.task_id)
        task_id = self.task_id if task_id is None else int(task_id)
        with self._lock:
            book = self.books.get(task_id)
        if book is None or event.get("organization_id") is None:
            return False
        return book.merge([{**event, "task_id": task_id}])

    def set_log(self, row: RunRow, log: str, *, lines: int = 20) -> None:
        """Keep the last ``lines`` lines of a run's log."""
        tail = "\n".join((log or "").rstrip().splitlines()[-lines:])
        key = (row.task_id if row.task_id is not None else self.task_id, row.organization_id)
        with self._lock:
            self._logs[key] = tail

    def snapshot(self) -> list[RunRow]:
        """The rows: this task's first, then each subtask's, each by organization name."""
        with self._lock:
            books = list(self.books.items())
        rows = [
            self._row(task_id, run)
            for task_id, book in books
            for run in book.ordered()
            if run.get("organization_id") is not None
        ]
        return sorted(
            rows, key=lambda r: (r.subtask, r.task_id or 0, r.organization or "", r.organization_id)
        )

    def _row(self, task_id: int, run: Mapping[str, Any]) -> RunRow:
        org = int(run["organization_id"])
        with self._lock:
            log_tail = self._logs.get((task_id, org))
        if log_tail is None:
            log_tail = str(run.get("log_tail") or run.get("log") or "")[-2000:]
        with self._lock:
            node = dict(self.nodes.get(org) or {})
        node_status = node.get("status") or run.get("node_status") or ""
        node_seen = node.get("last_seen") if node else run.get("node_last_seen")
        return RunRow(
            organization_id=org,
            organization=str(run.get("organization") or self.org_names.get(org, "")),
            task_id=task_id,
            subtask=task_id != self.task_id,
            run_id=run.get("id"),
            node=str(run.get("node") or self.node_names.get(run.get("node_id")) or ""),  # type: ignore[arg-type]
            status=str(run.get("status") or "pending"),
            reason=str(run.get("reason") or ""),
            log_tail=log_tail,
            started=parse_time(run.get("started_at", run.get("started"))),
            finished=parse_time(run.get("finished_at", run.get("finished"))),
            node_status=str(node_status),
            node_since=parse_time(node_seen),
        )

    def set_node(self, event: Mapping[str, Any]) -> bool:
        """Take a node's new state (a ``node_online``/``node_offline`` event); True when it is
        the node of an organization this task runs at."""
        org = event.get("organization_id")
        if org is None:
            return False
        with self._lock:
            self.nodes[int(org)] = dict(event)
        return any(r.organization_id == int(org) for r in self.snapshot())

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
        return len(self.snapshot())

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


def _clock(when: datetime) -> str:
    """Local wall-clock time, with the date when not today."""
    local = when.astimezone()
    today = datetime.now().astimezone().date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


def render_runs_html(rows: list[RunRow], now: datetime | None = None) -> str:
    """An HTML table of runs: organization, node, status badge, elapsed, reason and log tail."""
    head = "".join(
        f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
        for h in ("organization", "part", "node", "status", "elapsed", "reason")
    )
    body = []
    for r in rows:
        colour = _COLOURS.get(r.status, _UNKNOWN_COLOUR)
        badge = (
            f"<span class='v6nb-status' data-status='{html.escape(r.status)}' style='background:{colour};"
            f"color:white;border-radius:4px;padding:1px 6px'>{html.escape(r.status)}</span>"
        )
        reason = html.escape(r.reason)
        if r.waits_for_node:
            since = f" since {_clock(r.node_since)}" if r.node_since else " (never connected)"
            reason = (
                f"<span class='v6nb-node-offline'>node {html.escape(r.node)} is offline{since}: "
                "the run waits for it (start it with <code>v6nb node start</code>)</span>"
                + (f"<br>{reason}" if reason else "")
            )
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
