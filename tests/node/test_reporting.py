"""Final updates go through the outbox; one the server refuses for its content ends the run as
failed, saying why (no server needed: a scripted client)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node_app.nodestate import NodeState
from node_app.outbox import Outbox
from node_app.payloads import PlainJsonCodec
from node_app.reporting import Reporter
from node_app.runtimes.base import RunOutcome
from vantage6nb.common.errors import Conflict, ServerUnavailable, ValidationError
from vantage6nb.common.schemas import RunStatus


class FakeClient:
    """Records PATCHes; raises the scripted errors, one per PATCH, then accepts."""

    def __init__(self, *errors: Exception | None) -> None:
        self.errors = list(errors)
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def request(self, method: str, path: str, *, json: Any = None, **kw: Any) -> Any:
        self.patches.append((path, json))
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return {}


def _reporter(tmp_path: Path, client: FakeClient) -> Reporter:
    outbox = Outbox(tmp_path / "outbox")
    return Reporter(client, outbox, PlainJsonCodec(), NodeState(), binary_result_kb=1024)  # type: ignore[arg-type]


def test_a_final_update_is_sent_and_leaves_the_outbox(tmp_path: Path) -> None:
    client = FakeClient()
    reporter = _reporter(tmp_path, client)
    reporter.finish(4, RunOutcome(RunStatus.COMPLETED, "fine"), result="r")
    ((path, body),) = client.patches
    assert path == "/run/4" and body["status"] == "completed" and body["result"] == "r"
    assert reporter.outbox.pending() == {}


def test_a_refused_final_update_is_replaced_by_a_failed_one(tmp_path: Path) -> None:
    refusal = ValidationError("bad run update", errors={"result": "contains NUL"})
    client = FakeClient(refusal)
    reporter = _reporter(tmp_path, client)
    reporter.finish(5, RunOutcome(RunStatus.COMPLETED), result="r\x00")
    assert [p for p, _ in client.patches] == ["/run/5", "/run/5"]
    failed = client.patches[1][1]
    assert failed["status"] == "failed"
    assert "refused this run's final update" in failed["reason"]
    assert (
        "result: contains NUL" in failed["reason"]
        and "its result was not stored" in failed["reason"]
    )
    assert reporter.outbox.pending() == {}


@pytest.mark.parametrize("error", [Conflict("killed"), None])
def test_a_final_run_on_the_server_keeps_its_word(tmp_path: Path, error) -> None:
    client = FakeClient(error)
    reporter = _reporter(tmp_path, client)
    reporter.finish(6, RunOutcome(RunStatus.FAILED, "why"))
    assert len(client.patches) == 1
    assert reporter.outbox.pending() == {}


def test_an_update_not_sent_before_a_stop_stays_in_the_outbox(tmp_path: Path) -> None:
    client = FakeClient(ServerUnavailable("stopping"))
    reporter = _reporter(tmp_path, client)
    reporter.finish(7, RunOutcome(RunStatus.COMPLETED), result="r")
    assert list(reporter.outbox.pending()) == [7]
    client.errors = []
    reporter.flush_outbox()  # the next life sends it
    assert reporter.outbox.pending() == {}
    assert [p for p, _ in client.patches] == ["/run/7", "/run/7"]
