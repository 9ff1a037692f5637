"""TaskMonitor: a task's runs per organization, live from pushed run_status events, with a Kill button."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import traitlets

from ..common.events import RUN_STATUS, TASK_CREATED
from ._output import ErrorOutput
from ._progress import RunRow, TaskProgress, _fmt_seconds, render_runs_html

__all__ = ["TaskMonitor", "display_task"]

log = logging.getLogger(__name__)
_BAD = {"failed", "crashed", "not allowed"}


def _client_of(task: Any) -> Any:
    for attr in ("client", "_client"):
        client = getattr(task, attr, None)
        if client is not None:
            return client
    return None


class TaskMonitor(widgets.VBox):
    """Live progress of one task: per organization its status, reason, log tail and elapsed time.

    Driven by the ``run_status`` events the server pushes (no polling): it subscribes on creation,
    takes one status snapshot so no earlier change is missed, and re-takes it after a reconnect.
    ``done`` becomes True once every run is final; observe it to act on completion.

    Examples
    --------
    >>> task = client.task.create(collaboration=1, organizations=[1, 2], image="v6nb/summary",
    ...                           method="summary")  # doctest: +SKIP
    >>> monitor = TaskMonitor(task)  # doctest: +SKIP
    >>> monitor.observe(lambda change: print("done"), names=["done"])  # doctest: +SKIP
    >>> monitor  # doctest: +SKIP
    """

    done = traitlets.Bool(False, help="Every run has reached a final status.")
    status = traitlets.Unicode("pending", help="'running', 'completed', 'failed' or 'killed'.")
    statuses = traitlets.Dict(help="organization name -> status of its run of this task.")
    subtask_statuses = traitlets.Dict(help="organization name -> status of its latest subtask run.")

    def __init__(self, task: Any, *, client: Any = None, **kwargs: Any) -> None:
        self.task = task
        self.client = client or _client_of(task)
        self.progress = TaskProgress(task_id=int(task.id))
        self._unsubscribe: list[Callable[[], None]] = []
        self._log_fetched: set[tuple[int | None, int]] = set()
        self.title = widgets.HTML(f"<b>Task {int(task.id)}</b> {self._describe(task)}")
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="0/0", bar_style="info")
        self.elapsed_label = widgets.Label("elapsed –")
        self.kill_button = widgets.Button(description="Kill", icon="stop", button_style="danger")
        self.kill_button.on_click(self._on_kill)
        self.table = widgets.HTML(render_runs_html([]))
        self.errors = ErrorOutput()
        header = widgets.HBox([self.bar, self.elapsed_label, self.kill_button])
        super().__init__([self.title, header, self.table, self.errors.widget], **kwargs)
        self.add_class("v6nb-task-monitor")
        self._subscribe()
        self.refresh()

    # -- events ---------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        events = getattr(self.client, "events", None)
        if events is None:
            self.errors.show_message("No event stream: statuses update only on refresh().")
            return
        with self.errors.catch("subscribing to task events"):
            self._unsubscribe += [
                events.on(TASK_CREATED, self._on_task_created),
                events.on(RUN_STATUS, self._on_event),
                # events sent while the connection was down are lost: catch up from the server
                events.on("reconnected", lambda _: self.refresh(), connect=False),
            ]

    def _on_task_created(self, payload: Any) -> None:
        # a central algorithm's subtasks: follow their runs too, so every organization shows up
        if isinstance(payload, dict) and payload.get("parent_id") in self._family():
            self.progress.add_subtask(int(payload["task_id"]))

    def _family(self) -> set[int]:
        return {self.progress.task_id, *self.progress.subtasks}

    def _on_event(self, payload: Any) -> None:
        if isinstance(payload, dict) and self.progress.apply(payload):
            self._render()

    def refresh(self) -> None:
        """Take a status snapshot from the server (done once at start and after reconnects)."""
        with self.errors.catch("reading the task's status"):
            if not self.progress.org_names and hasattr(self.client, "organizations"):
                orgs = self.client.organizations()
                self.progress.org_names.update(
                    {int(o["id"]): str(o["name"]) for o in orgs.to_dict("records")}
                )
            if not self.progress.node_names and hasattr(self.client, "nodes"):
                nodes = self.client.nodes()
                self.progress.node_names.update(
                    {int(n["id"]): str(n["name"]) for n in nodes.to_dict("records")}
                )
            status = self.task.status()
            rows = status.to_dict("records") if hasattr(status, "to_dict") else list(status)
            for row in rows:
                self.progress.apply({**row, "task_id": self.progress.task_id})
            self._refresh_subtasks()
        self._render()

    def _refresh_subtasks(self) -> None:
        subtasks = getattr(self.task, "subtasks", None)
        if not callable(subtasks):
            return
        for sub in subtasks():
            self.progress.add_subtask(int(sub.id))
            for run in sub.runs:
                self.progress.apply(run)

    def close(self) -> None:
        """Stop listening to events and close the widget."""
        self.stop()
        super().close()

    def stop(self) -> None:
        """Stop listening to events (the widget keeps its last state)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- rendering ------------------------------------------------------------------------------
    def _render(self) -> None:
        self._fetch_logs()
        rows = self.progress.snapshot()
        main = self.progress.main_rows()
        now = datetime.now(timezone.utc)
        total, finished = self.progress.total, self.progress.finished
        self.bar.max = max(total, 1)
        self.bar.value = finished
        self.bar.description = f"{finished}/{total}"
        self.table.value = render_runs_html(rows, now)
        self.elapsed_label.value = f"elapsed {_fmt_seconds(self.progress.elapsed(now))}"
        self.statuses = {r.organization or str(r.organization_id): r.status for r in main}
        self.subtask_statuses = {
            r.organization or str(r.organization_id): r.status for r in rows if r.subtask
        }
        if self.progress.done:
            if self.progress.succeeded:
                overall, style = "completed", "success"
            elif any(r.status == "killed" for r in main) and not any(
                r.status in _BAD for r in main
            ):
                overall, style = "killed", "warning"
            else:
                overall, style = "failed", "danger"
            self.bar.bar_style = style
            self.kill_button.disabled = True
            self.stop()
        else:
            overall = "running" if rows else "pending"
        self.status = overall
        if self.progress.done and not self.done:
            self.done = True

    def _fetch_logs(self) -> None:
        # the run_status event carries no log: read it once for runs that ended badly
        for row in self.progress.snapshot():
            key = (row.task_id, row.organization_id)
            if row.status in _BAD and key not in self._log_fetched and not row.log_tail:
                self._log_fetched.add(key)
                text = _read_log(self.task, self.client, row)
                if text:
                    self.progress.set_log(row, text)

    @property
    def dataframe(self) -> Any:
        """The runs as a DataFrame: organization, node, status, reason, started, finished, elapsed_s."""
        import pandas as pd

        rows = self.progress.snapshot()
        return pd.DataFrame(
            [
                {
                    "organization": r.organization,
                    "task_id": r.task_id,
                    "subtask": r.subtask,
                    "node": r.node,
                    "status": r.status,
                    "reason": r.reason,
                    "started": r.started,
                    "finished": r.finished,
                    "elapsed_s": r.elapsed(),
                }
                for r in rows
            ],
            columns=[
                "organization",
                "task_id",
                "subtask",
                "node",
                "status",
                "reason",
                "started",
                "finished",
                "elapsed_s",
            ],
        )

    # -- actions --------------------------------------------------------------------------------
    def _on_kill(self, _button: Any = None) -> None:
        with self.errors.catch("killing the task"):
            self.kill_button.disabled = True
            self.task.kill()

    @staticmethod
    def _describe(task: Any) -> str:
        parts = [str(getattr(task, a, "") or "") for a in ("image", "method")]
        text = " · ".join(p for p in parts if p)
        return f"<code>{text}</code>" if text else ""

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.progress.counts().items()))
        return f"<TaskMonitor task={self.progress.task_id} {self.status} ({counts or 'no runs'})>"


def _read_log(task: Any, client: Any, row: RunRow) -> str:
    """The log of one run (main task or subtask), read through what the client offers; '' when it cannot."""
    try:
        if row.run_id is not None and int(row.run_id) in {
            int(r["id"]) for r in getattr(task, "runs", [])
        }:
            return str(task.logs().get(str(row.organization), ""))
        for sub in task.subtasks():
            for run in sub.runs:
                if row.run_id is not None and int(run["id"]) == int(row.run_id):
                    return str(sub.logs().get(str(row.organization), ""))
    except Exception:  # noqa: BLE001 - a missing log must not hide the status
        log.debug("could not read the log of run %s", row.run_id, exc_info=True)
    return ""


def display_task(task: Any, **kwargs: Any) -> TaskMonitor:
    """Show ``task`` as a live :class:`TaskMonitor` in the notebook and return the monitor.

    Examples
    --------
    >>> monitor = display_task(client.task.create(...))  # doctest: +SKIP
    """
    from IPython.display import display

    monitor = TaskMonitor(task, **kwargs)
    display(monitor)
    return monitor
