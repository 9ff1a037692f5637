"""TaskMonitor: a task's runs per organization, live from pushed run_status events, with a Kill button."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import traitlets

from ..client._events import RECONNECTED
from ..common.schemas import FAILED_VALUES, RunStatus, task_status
from ._output import ErrorOutput
from ._progress import RunRow, TaskProgress, _fmt_seconds, render_runs_html

__all__ = ["TaskMonitor", "display_task", "display_wait"]

log = logging.getLogger(__name__)
# ended badly (a killed run was stopped on purpose: no log to show)
_BAD = FAILED_VALUES - {RunStatus.KILLED.value}
_STYLES = {"completed": "success", "refused": "warning", "killed": "warning"}
# the runs table inside an HTML widget: its line height is one widget row, too much for the
# wrapped reason text; organization, part, node, status and elapsed stay on one line
_TABLE_STYLE = (
    "<style>.v6nb-runs td:nth-child(-n+5){white-space:nowrap}</style>"
    "<div class='v6nb-runs-box' style='line-height:1.4'>"
)
_TICK_S = 1.0  # how often the elapsed times move on while runs are open (no event comes then)


def _runs_html(rows: list[RunRow], now: datetime | None = None) -> str:
    return _TABLE_STYLE + render_runs_html(rows, now) + "</div>"


class TaskMonitor(widgets.VBox):
    """Live progress of one task: per organization its status, reason, log tail and elapsed time.

    It follows the task (no polling): the task folds the ``run_status`` events the server pushes
    into its runs and tells the monitor (``task.on_change``), which shows ``task.run_book``;
    subtasks a central algorithm creates are followed the same way (``task.on_subtask``). One
    re-read at the start (and after a reconnect) catches what came before.
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
    status = traitlets.Unicode(
        "pending", help="'running', 'completed', 'failed', 'refused' or 'killed'."
    )
    statuses = traitlets.Dict(help="organization name -> status of its run of this task.")
    subtask_statuses = traitlets.Dict(help="organization name -> status of its latest subtask run.")
    killable = traitlets.Bool(True, help="The Kill button is shown (until the task is done).")
    offline = traitlets.Dict(
        help="organization name -> since when (ISO, or '') its node is offline, for open runs."
    )

    def __init__(self, task: Any, *, client: Any = None, **kwargs: Any) -> None:
        self.task = task
        self.client = client  # accepted for callers that have it; the task brings what is needed
        self.progress = TaskProgress(task_id=int(task.id))
        self.progress.follow(task.run_book)
        self._tasks: dict[int, Any] = {int(task.id): task}  # the task and the subtasks followed
        self._unsubscribe: list[Callable[[], None]] = []
        self._log_fetched: set[tuple[int | None, int]] = set()
        self.title = widgets.HTML(f"<b>Task {int(task.id)}</b> {self._describe(task)}")
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="0/0", bar_style="info")
        self.elapsed_label = widgets.Label("elapsed –")
        self.kill_button = widgets.Button(description="Kill", icon="stop", button_style="danger")
        self.kill_button.on_click(self._on_kill)
        #: True when a click on Kill is handled while the cell is blocked in a wait (see
        #: :func:`_route_to_subshell`); otherwise it is handled when the cell ends
        self.kill_while_blocked = _route_to_subshell(self.kill_button)
        self.table = widgets.HTML(_runs_html([]))
        self.errors = ErrorOutput()
        self.header = header = widgets.HBox([self.bar, self.elapsed_label, self.kill_button])
        self._stopped = False
        self._ticker = threading.Event()  # set: stop ticking
        super().__init__([self.title, header, self.table, self.errors.widget], **kwargs)
        self.add_class("v6nb-task-monitor")
        self._subscribe(task)
        self.refresh()
        if not self.done:
            threading.Thread(target=self._tick, name="v6nb-monitor-tick", daemon=True).start()

    def _tick(self) -> None:
        # a run waiting for a node or computing sends no event: re-render so elapsed moves on
        while not self._ticker.wait(_TICK_S):
            if self._stopped or self.done:
                return
            try:
                self._render()
            except Exception:  # noqa: BLE001 - a tick must never end in a thread traceback
                log.debug("monitor tick failed", exc_info=True)

    # -- following the task ---------------------------------------------------------------------
    def _subscribe(self, task: Any) -> None:
        with self.errors.catch("subscribing to task events"):
            self._unsubscribe += [
                task.on_change(self._on_change),
                # a central algorithm's subtasks: follow their runs too, so every organization shows
                task.on_subtask(self._on_subtask),
            ]
            on_node = getattr(task, "on_node", None)
            if task is self.task and callable(on_node):  # nodes going off- and online, live
                self._unsubscribe.append(on_node(self._on_node))

    def _on_change(self, task: Any, event: Any) -> None:
        # the task has already taken the change in; after a reconnect (events may be lost) the
        # task re-read its runs, and the task itself also re-reads its subtasks
        if isinstance(event, dict) and event.get("event") == RECONNECTED and task is self.task:
            self.refresh()
        else:
            self._render()

    def _on_node(self, event: Any) -> None:
        if isinstance(event, dict) and self.progress.set_node(event):
            self._render()

    def _on_subtask(self, subtask: Any) -> None:
        self._follow(subtask)
        self._render()

    def _follow(self, subtask: Any) -> None:
        known = self._tasks.get(int(subtask.id))
        if (
            known is not None
        ):  # a re-read of one followed already: its runs go into that task's book
            known.run_book.merge(subtask.runs)
            return
        self._tasks[int(subtask.id)] = subtask
        self.progress.follow(subtask.run_book)
        self._subscribe(subtask)
        # a new subtask comes without runs; a run waiting for an offline node sends no event
        # until the node is back, so read them once (after subscribing: no event is missed)
        with self.errors.catch("reading a subtask's runs"):
            if not subtask.runs:
                subtask.refresh()

    def refresh(self) -> None:
        """Re-read the task and its subtasks from the server (done at start and after reconnects)."""
        with self.errors.catch("reading the task's status"):
            if not self.progress.org_names:
                self.progress.org_names.update(self.task.organization_names())
            if not self.progress.node_names:
                self.progress.node_names.update(self.task.node_names())
            self.task.refresh()
            for sub in self.task.subtasks():
                self._follow(sub)
        self._render()

    def close(self) -> None:
        """Stop listening to events and close the widget."""
        self.stop()
        super().close()

    def stop(self) -> None:
        """Stop listening to events (the widget keeps its last state)."""
        self._stopped = True
        self._ticker.set()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- rendering ------------------------------------------------------------------------------
    def _render(self) -> None:
        if self._stopped and self.done:  # an event in flight after the end: the view is final
            return
        self._fetch_logs()
        rows = self.progress.snapshot()
        main = self.progress.main_rows()
        now = datetime.now(timezone.utc)
        total, finished = self.progress.total, self.progress.finished
        self.bar.max = max(total, 1)
        self.bar.value = finished
        self.bar.description = f"{finished}/{total}"
        self.table.value = _runs_html(rows, now)
        self.elapsed_label.value = f"elapsed {_fmt_seconds(self.progress.elapsed(now))}"
        self.statuses = {r.organization or str(r.organization_id): r.status for r in main}
        self.subtask_statuses = {
            r.organization or str(r.organization_id): r.status for r in rows if r.subtask
        }
        self.offline = {
            r.organization or str(r.organization_id): (
                r.node_since.isoformat() if r.node_since else ""
            )
            for r in rows
            if r.waits_for_node
        }
        if self.progress.done:
            # the task's status as task lists and reprs name it (one vocabulary)
            overall = (
                "completed" if self.progress.succeeded else task_status(r.status for r in main)
            )
            # refused: the runs worked and a policy withheld output; killed: stopped on purpose
            self.bar.bar_style = _STYLES.get(overall, "danger")
            self._remove_kill()
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
                text = _read_log(self._tasks.get(row.task_id or self.progress.task_id), row)
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

    def _remove_kill(self) -> None:
        # nothing left to stop: the button goes (and stays disabled, for anyone holding it)
        self.kill_button.disabled = True
        self.kill_button.layout.display = "none"
        self.header.children = tuple(c for c in self.header.children if c is not self.kill_button)
        self.killable = False

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


def _read_log(task: Any, row: RunRow) -> str:
    """The log of one run (of the task or a subtask); '' when it cannot be read."""
    if task is None:
        return ""
    try:
        return str(task.logs().get(str(row.organization), ""))
    except Exception:  # noqa: BLE001 - a missing log must not hide the status
        log.debug("could not read the log of run %s", row.run_id, exc_info=True)
    return ""


_subshell: dict[str, str] = {}  # the kernel's subshell that handles Kill clicks (one per process)
_subshell_lock = threading.Lock()


def _route_to_subshell(button: Any) -> bool:
    """Have the frontend's messages for ``button`` handled in a kernel subshell's thread, so a
    click acts while the main shell is blocked in a wait (``task.wait()``, ``analysis.*``).

    ipykernel 7 runs subshells in their own threads and routes a comm's messages by the comm's
    ``_reply_subshell_for``; one subshell is created for the process on first use. Returns False
    (clicks are then handled when the cell ends) outside such a kernel or when anything of it is
    missing: this relies on ipykernel internals, and never fails the monitor.
    """
    try:
        from ipykernel.kernelbase import Kernel

        comm = getattr(button, "comm", None)
        if not Kernel.initialized() or comm is None or not hasattr(comm, "_reply_subshell_for"):
            return False
        subshell = _kill_subshell(Kernel.instance())
        if subshell is None:
            return False
        comm._reply_subshell_for = lambda _data, _default: subshell
        return True
    except Exception:  # noqa: BLE001 - a kernel without subshells: clicks wait for the cell
        log.debug("Kill clicks stay on the main shell", exc_info=True)
        return False


def _kill_subshell(kernel: Any) -> str | None:
    with _subshell_lock:
        if "id" in _subshell:
            return _subshell["id"]
        channel = getattr(kernel, "shell_channel_thread", None)
        manager = getattr(channel, "manager", None)
        if channel is None or not hasattr(manager, "_create_subshell"):
            return None
        made = threading.Event()

        def create() -> None:  # subshells are created in the shell channel thread
            try:
                _subshell["id"] = manager._create_subshell()
            except Exception:  # noqa: BLE001 - no subshell: clicks wait for the cell
                log.debug("could not create a subshell for Kill clicks", exc_info=True)
            finally:
                made.set()

        channel.io_loop.add_callback(create)
        made.wait(5.0)
        return _subshell.get("id")


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


def display_wait(task: Any, **kwargs: Any) -> TaskMonitor:
    """Show the live :class:`TaskMonitor` of a task being waited for (``task.wait()``, the
    ``analysis.*`` helpers) and return it.

    Only the widget view is displayed, without the text repr: a cell's text output stays what it
    was without the monitor (nbval compares it; a frontend without widgets shows nothing extra).

    Examples
    --------
    >>> monitor = display_wait(client.task.create(...))  # doctest: +SKIP
    """
    from IPython.display import display

    monitor = TaskMonitor(task, **kwargs)
    bundle = monitor._repr_mimebundle_() or {}
    display({k: v for k, v in bundle.items() if k != "text/plain"}, raw=True)
    return monitor
