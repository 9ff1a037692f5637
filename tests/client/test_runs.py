"""The run merge all readers share (``RunBook``), the session a task holds, the display hook."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from vantage6nb.client import PlainCodec, RunBook, Session, _display
from vantage6nb.common.errors import MissingKey
from vantage6nb.common.schemas import FINAL_VALUES, OPEN_ORDER

PACKAGE = Path(__file__).resolve().parents[2] / "vantage6nb"
# where a Client is used: none of them reads a private attribute of it
USERS = sorted(
    [*PACKAGE.glob("client/*.py"), *PACKAGE.glob("demo/*.py"), *PACKAGE.glob("widgets/*.py")]
    + [PACKAGE / "analysis.py"]
)


def run(status, run_id=1, org=1, **extra):
    return {"id": run_id, "organization_id": org, "status": status, **extra}


def event(status, run_id=1, task=7, **extra):
    return {"task_id": task, "run_id": run_id, "status": status, **extra}


def test_statuses_only_move_forward_and_a_final_one_stays():
    book = RunBook(7)
    book.merge([run("pending")])
    for status in OPEN_ORDER[1:]:
        assert book.absorb(event(status))
        assert book.get(1)["status"] == status
    assert book.absorb(event("pending"))  # ours, but stale: taken as seen, status kept
    assert book.get(1)["status"] == "active"
    assert book.absorb(event("killed", reason="stop"))
    for later in sorted(FINAL_VALUES - {"killed"}) + ["active"]:
        book.absorb(event(later, reason="late"))
    assert book.get(1)["status"] == "killed" and book.get(1)["reason"] == "stop"
    assert book.all_final()


def test_a_rereading_keeps_the_newer_status_but_takes_other_fields():
    book = RunBook(7)
    book.absorb(event("completed", finished_at="2024-01-01T00:00:02"))
    assert book.merge([run("active", node_status="offline", finished_at=None)])
    got = book.get(1)
    assert got["status"] == "completed" and got["finished_at"] == "2024-01-01T00:00:02"
    assert got["node_status"] == "offline"


def test_events_of_other_tasks_and_without_run_are_not_taken():
    book = RunBook(7)
    assert not book.absorb(event("active", task=8))
    assert not book.absorb({"task_id": 7, "status": "active"})
    assert not book.absorb("not a dict")
    assert book.ordered() == [] and not book.all_final()


def test_runs_come_in_organization_order():
    book = RunBook(7, organization_ids=[3, 1])
    book.merge([run("pending", 10, org=1), run("pending", 11, org=3), run("pending", 12, org=9)])
    assert [r["organization_id"] for r in book.ordered()] == [3, 1, 9]


def test_waiters_are_woken_by_a_change_or_a_poke():
    book = RunBook(7)
    seen = book.version
    threading.Timer(0.05, book.poke).start()
    assert book.wait_changed(seen, timeout=10)
    assert not book.wait_changed(book.version, timeout=0.01)


def test_a_session_refuses_an_encrypted_collaboration_without_a_key():
    session = Session(None, events=None)  # type: ignore[arg-type]  # no I/O for the codec choice
    session.user = {"organization_id": "4"}
    assert isinstance(session.codec, PlainCodec)
    assert session.codec_for({"encrypted": False}) is session.codec
    assert session.organization_id == 4
    with pytest.raises(MissingKey, match="setup_encryption"):
        session.codec_for({"name": "study", "encrypted": True})


def test_the_display_hook_is_named_not_imported(capsys):
    shown = []
    _display.set_display_hook(shown.append)
    try:
        _display.show("task")
    finally:
        _display.set_display_hook(None)
    assert shown == ["task"]
    module, _, name = _display.DEFAULT_HOOK.partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), name))

    def missing(task):
        raise ImportError("no ipywidgets")

    _display.set_display_hook(missing)
    try:
        _display.show("task")
    finally:
        _display.set_display_hook(None)
    assert capsys.readouterr().out == "'task'\n"  # the text repr instead


@pytest.mark.parametrize("path", USERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_reaches_into_a_private_attribute_of_a_client(path):
    # tasks and the task API hold a Session; analysis and the demo use the public calls
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [
        f"{path.name}:{node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and (
            (isinstance(node.value, ast.Name) and node.value.id == "client")
            or (isinstance(node.value, ast.Attribute) and node.value.attr in ("client", "_client"))
        )
    ]
    assert bad == []
