"""Runs start once per life, within the execution slots; kills reach queued and running runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from node_app.nodestate import NodeState
from node_app.outbox import Outbox
from node_app.scheduler import Scheduler
from tests.support import wait_for


class FakeExecution:
    def __init__(self) -> None:
        self.ran: list[int] = []
        self.cleared: list[int] = []
        self.release = threading.Event()

    def execute(self, run: dict[str, Any], restarted: bool) -> None:
        self.ran.append(int(run["id"]))
        self.release.wait(10)

    def clear(self, rid: int) -> None:
        self.cleared.append(rid)


class FakeReporter:
    def __init__(self) -> None:
        self.finished: list[tuple[int, str]] = []

    def finish(self, rid: int, outcome: Any, **kw: Any) -> None:
        self.finished.append((rid, outcome.status.value))


class FakeRuntime:
    def __init__(self) -> None:
        self.killed: list[int] = []

    def kill(self, rid: int) -> bool:
        self.killed.append(rid)
        return True


def _scheduler(tmp_path: Path, slots: int = 1):
    parts = {
        "state": NodeState(),
        "execution": FakeExecution(),
        "reporter": FakeReporter(),
        "runtime": FakeRuntime(),
        "outbox": Outbox(tmp_path / "outbox"),
        "stopping": threading.Event(),
    }
    return Scheduler(slots, **parts), parts  # type: ignore[arg-type]


def test_a_run_is_never_started_twice_in_one_life(tmp_path: Path) -> None:
    scheduler, parts = _scheduler(tmp_path)
    parts["execution"].release.set()
    assert scheduler.start_runs([{"id": 1}, {"id": 1}]) == 1
    scheduler.shutdown()
    assert parts["execution"].ran == [1] and parts["execution"].cleared == [1]
    assert scheduler.start_runs([{"id": 1}]) == 0  # ended in this life: a stale listing


def test_a_run_with_a_final_update_waiting_is_not_started(tmp_path: Path) -> None:
    scheduler, parts = _scheduler(tmp_path)
    parts["outbox"].put(2, {"status": "completed"})
    assert scheduler.start_runs([{"id": 2}]) == 0
    parts["stopping"].set()
    assert scheduler.start_runs([{"id": 3}]) == 0  # nothing new starts while stopping
    scheduler.shutdown()


def test_a_queued_run_killed_before_its_slot_is_reported_killed(tmp_path: Path) -> None:
    scheduler, parts = _scheduler(tmp_path, slots=1)
    assert scheduler.start_runs([{"id": 1}, {"id": 2}]) == 2
    scheduler.kill_runs([2, 99])  # 99 is not held here: ignored
    # run 2 notices the kill while it waits for the slot
    wait_for(lambda: parts["reporter"].finished, 10, "the killed queued run to be reported")
    execution = parts["execution"]
    execution.release.set()
    scheduler.shutdown()
    assert execution.ran == [1]
    assert parts["reporter"].finished == [(2, "killed")]
    assert parts["runtime"].killed == [2]
