"""TaskMonitor's overall status and badges for every way a run ends (refused included), no server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vantage6nb.client import RunBook
from vantage6nb.common.disclosure import Refusal
from vantage6nb.widgets import TaskMonitor
from vantage6nb.widgets._progress import _COLOURS, _UNKNOWN_COLOUR, TaskProgress, render_runs_html

REASON = Refusal("min_count", 5, "a cell of species x island is below 5 records").reason()
ORGS = {1: "Leiden", 2: "Utrecht"}


class StubTask:
    """What the monitor reads of a ``Task``: its run book, names, change callbacks and logs."""

    def __init__(self, task_id: int = 7) -> None:
        self.id, self.image, self.method = task_id, "v6nb/crosstab", "crosstab"
        self.run_book = RunBook(task_id, list(ORGS))
        self.callbacks: list[Callable[[Any, Any], None]] = []

    def set(self, org: int, status: str, reason: str = "") -> None:
        event = {"task_id": self.id, "run_id": org, "organization_id": org, "status": status}
        self.run_book.merge([{**event, "reason": reason}])
        for callback in list(self.callbacks):
            callback(self, event)

    def on_change(self, callback: Callable[[Any, Any], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def on_subtask(self, _callback: Any) -> Callable[[], None]:
        return lambda: None

    def organization_names(self) -> dict[int, str]:
        return dict(ORGS)

    def node_names(self) -> dict[int, str]:
        return {}

    def refresh(self) -> StubTask:
        return self

    def subtasks(self) -> list[Any]:
        return []

    def logs(self) -> dict[str, str]:
        return {}


@pytest.mark.parametrize(
    ("leiden", "utrecht", "overall", "bar"),
    [
        ("refused", "completed", "refused", "warning"),
        ("refused", "refused", "refused", "warning"),
        ("refused", "crashed", "failed", "danger"),
        ("refused", "killed", "failed", "danger"),
        ("killed", "completed", "killed", "warning"),
        ("completed", "completed", "completed", "success"),
    ],
)
def test_monitor_overall_status(leiden: str, utrecht: str, overall: str, bar: str) -> None:
    task = StubTask()
    task.set(1, "pending")
    task.set(2, "pending")
    monitor = TaskMonitor(task)
    assert monitor.status == "running" and not monitor.done
    task.set(1, leiden, REASON if leiden == "refused" else "")
    task.set(2, utrecht)
    assert monitor.done and monitor.status == overall and monitor.bar.bar_style == bar
    assert monitor.statuses == {"Leiden": leiden, "Utrecht": utrecht}
    assert monitor.kill_button.disabled
    if leiden == "refused":
        assert "data-status='refused'" in monitor.table.value
        assert "rule min_count, threshold 5" in monitor.table.value  # the reason is shown
        assert monitor.dataframe.set_index("organization").loc["Leiden", "status"] == "refused"


def test_refused_has_its_own_badge_colour() -> None:
    p = TaskProgress(task_id=1, org_names=ORGS)
    p.apply({"task_id": 1, "run_id": 1, "organization_id": 1, "status": "refused"})
    html = render_runs_html(p.snapshot())
    colour = _COLOURS["refused"]
    assert f"background:{colour}" in html and ">refused</span>" in html
    others = {v for k, v in _COLOURS.items() if k != "refused"}
    assert colour not in others and colour != _UNKNOWN_COLOUR


def test_an_unknown_status_is_shown_not_raised() -> None:
    task = StubTask()
    task.set(1, "quarantined")  # a status a newer server might send
    monitor = TaskMonitor(task)
    assert monitor.statuses == {"Leiden": "quarantined"}
    assert not monitor.done and monitor.status == "running"
    assert f"data-status='quarantined' style='background:{_UNKNOWN_COLOUR}" in monitor.table.value
    assert monitor.errors.messages == []
