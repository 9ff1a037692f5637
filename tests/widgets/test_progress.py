"""TaskProgress: runs read from the run books (merged there), subtasks, rendering."""

from __future__ import annotations

from datetime import datetime, timezone

from vantage6nb.client import RunBook
from vantage6nb.widgets._progress import TaskProgress, parse_time, render_runs_html


def ev(status, org=1, task=10, **extra):
    # one run per organization and task, as the server makes them
    return {
        "task_id": task,
        "run_id": task * 100 + org,
        "organization_id": org,
        "status": status,
        **extra,
    }


def test_events_move_forward_only():
    p = TaskProgress(task_id=10, org_names={1: "Leiden", 2: "Utrecht"})
    assert p.apply(ev("pending", 1)) and p.apply(ev("pending", 2))
    assert p.apply(ev("active", 1, started_at="2024-01-01T00:00:00"))
    assert not p.apply(ev("pending", 1))  # late, stale
    assert not p.done
    assert p.apply(ev("completed", 1, finished_at="2024-01-01T00:00:02"))
    assert not p.apply(ev("failed", 1))  # final never changes
    assert p.apply(ev("crashed", 2, reason="boom"))
    assert p.done and not p.succeeded
    assert p.counts() == {"completed": 1, "crashed": 1}
    rows = {r.organization: r for r in p.snapshot()}
    assert rows["Leiden"].elapsed() == 2.0 and rows["Utrecht"].reason == "boom"


def test_other_tasks_are_ignored_until_named_subtasks():
    p = TaskProgress(task_id=10)
    assert not p.apply(ev("active", 1, task=11))
    p.add_subtask(11)
    assert p.apply(ev("completed", 1, task=11)) and p.apply(ev("completed", 2, task=11))
    assert not p.done  # the task itself has no run yet
    assert p.apply(ev("completed", 1, task=10))
    assert p.done and p.succeeded
    assert [(r.task_id, r.subtask) for r in p.snapshot()] == [(10, False), (11, True), (11, True)]
    assert p.finished == p.total == 3


def test_status_rows_and_timestamps():
    import pandas as pd

    p = TaskProgress(task_id=1)
    p.apply(
        {
            "organization": "Leiden",
            "organization_id": 3,
            "status": "active",
            "started": pd.Timestamp("2024-01-01", tz="UTC"),
            "finished": pd.NaT,
            "run_id": 9,
        }
    )
    row = p.snapshot()[0]
    assert row.run_id == 9 and row.finished is None and row.started.year == 2024
    assert parse_time(None) is None and parse_time("garbage") is None
    assert parse_time(datetime(2024, 1, 1)).tzinfo == timezone.utc


def test_render_escapes_and_shows_log_tail():
    p = TaskProgress(task_id=1, org_names={1: "<Leiden>"})
    p.apply(ev("crashed", 1, task=1, reason="exit 1"))
    p.set_log(p.snapshot()[0], "\n".join(f"line {i}" for i in range(50)))
    out = render_runs_html(p.snapshot())
    assert "&lt;Leiden&gt;" in out and "data-status='crashed'" in out
    assert "line 49" in out and "line 29" not in out  # last 20 lines only


def test_a_followed_book_is_shown_as_it_changes():
    book = RunBook(5, [2, 1])
    p = TaskProgress(task_id=5, org_names={1: "Leiden", 2: "Utrecht"})
    p.follow(book)
    assert p.snapshot() == [] and not p.done
    book.merge([{"id": 1, "organization_id": 1, "status": "pending"}])
    book.absorb({"task_id": 5, "run_id": 1, "organization_id": 1, "status": "completed"})
    assert [(r.organization, r.status) for r in p.snapshot()] == [("Leiden", "completed")]
    assert p.done and p.succeeded and p.subtasks == set()
