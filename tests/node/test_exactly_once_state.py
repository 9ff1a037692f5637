"""Exactly once, the parts: start records on disk, complete outputs, and runs a life has ended
(no server needed; the crash test with real processes is test_exactly_once.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from node_app.nodestate import JOURNAL_NAME, NodeState, StartRecord, UnreadableRecord
from node_app.outbox import Outbox
from node_app.payloads import PlainJsonCodec
from node_app.reporting import Reporter
from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.output import ALGORITHM_OUTPUT_DIR, committed_output
from node_app.scheduler import Scheduler


def _record(rid: int, state: NodeState) -> StartRecord:
    return StartRecord(run_id=rid, task_id=3, life=state.life, image="v6nb/summary", method="m")


def test_a_start_is_known_to_the_next_life_only(tmp_path: Path) -> None:
    first = NodeState(folder=tmp_path)
    (tmp_path / "run-7").mkdir()
    first.record_start(_record(7, first))
    assert first.previous_start(7) is None  # this life's own start
    later = NodeState(folder=tmp_path)
    assert later.previous_start(7) == _record(7, first)
    assert later.previous_start(8) is None  # never started
    assert NodeState().previous_start(7) is None  # no folder: nothing on disk


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "is not a start record"),
        ('{"run_id": 7}', "is not a start record"),
        ('{"run_id": "7", "task_id": 3, "life": "x", "image": "i"}', "must be integers"),
        ('{"run_id": 9, "task_id": 3, "life": "x", "image": "i"}', "records run 9, not run 7"),
    ],
)
def test_an_unreadable_start_record_says_why(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "run-7").mkdir()
    (tmp_path / "run-7" / JOURNAL_NAME).write_text(text)
    found = NodeState(folder=tmp_path).previous_start(7)
    assert isinstance(found, UnreadableRecord) and why in found.why


def test_only_a_renamed_output_is_complete(tmp_path: Path) -> None:
    algo = tmp_path / ALGORITHM_OUTPUT_DIR
    algo.mkdir()
    (algo / "output.json.partial").write_text('{"half')  # the wrapper had not renamed it yet
    assert committed_output(tmp_path, "output.json", limit=100) is None
    (algo / "output.json").write_text('{"n": 1}')
    taken = committed_output(tmp_path, "output.json", limit=100)
    assert taken == tmp_path / "output.json" and taken.read_text() == '{"n": 1}'
    (algo / "output.json").write_text('{"n": 2}')
    assert committed_output(tmp_path, "output.json", limit=100).read_text() == '{"n": 1}'  # type: ignore[union-attr]
    assert committed_output(tmp_path / "gone", "output.json", limit=100) is None


def test_an_output_the_node_does_not_read_is_refused_after_a_restart(tmp_path: Path) -> None:
    algo = tmp_path / ALGORITHM_OUTPUT_DIR
    algo.mkdir()
    (algo / "output.json").symlink_to("/etc/passwd")
    with pytest.raises(RuntimeRefusal, match="symbolic link"):
        committed_output(tmp_path, "output.json", limit=100)


class _Accepting:
    def __init__(self) -> None:
        self.patches: list[str] = []

    def request(self, method: str, path: str, **kw: Any) -> Any:
        self.patches.append(path)
        return {}


class _Never:
    def execute(self, run: dict[str, Any], restarted: bool) -> None:
        raise AssertionError(f"run {run['id']} started again")

    def clear(self, rid: int) -> None:
        pass


def test_a_run_uploaded_from_the_outbox_is_not_started_by_a_listing_taken_before(
    tmp_path: Path,
) -> None:
    state, outbox = NodeState(folder=tmp_path / "runs"), Outbox(tmp_path / "outbox")
    outbox.put(5, {"status": "completed", "result": "r"})  # a previous life's final update
    client = _Accepting()
    reporter = Reporter(client, outbox, PlainJsonCodec(), state, binary_result_kb=1)  # type: ignore[arg-type]
    listing = [{"id": 5, "status": "active"}]  # taken before the upload below
    reporter.flush_outbox()
    assert client.patches == ["/run/5"] and outbox.pending() == {}
    scheduler = Scheduler(
        1,
        state=state,
        execution=_Never(),  # type: ignore[arg-type]
        reporter=reporter,
        runtime=None,  # type: ignore[arg-type]
        outbox=outbox,
        stopping=threading.Event(),
    )
    assert scheduler.start_runs(listing) == 0
    scheduler.shutdown()
