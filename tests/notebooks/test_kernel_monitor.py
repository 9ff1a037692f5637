"""A blocked ``analysis.summary`` in a real Jupyter kernel displays the live TaskMonitor (one, for
the central task and its parts) while the cell runs: its widget view is on iopub before the
execute reply, and it updates while the kernel is blocked. The kernel connects to a demo network."""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_for

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[2]
VIEW = "application/vnd.jupyter.widget-view+json"
WAIT_S = 180


@pytest.fixture
def kernel() -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if k != "V6NB_PROGRESS"}
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(ROOT), env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=WAIT_S)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _execute(
    kc: Any, code: str, on_msg: Callable[[dict[str, Any]], None] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Run ``code``; every message of it on iopub and shell, in the order they arrived, until
    both the execute reply and the kernel's idle status are in (``on_msg`` sees each as it comes)."""
    msg_id = kc.execute(code)
    seen: list[tuple[str, dict[str, Any]]] = []
    state = {"reply": False, "idle": False}

    def drain() -> bool:
        for channel, get in (("shell", kc.get_shell_msg), ("iopub", kc.get_iopub_msg)):
            while True:
                try:
                    msg = get(timeout=0.05)
                except queue.Empty:
                    break
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                seen.append((channel, msg))
                if on_msg is not None:
                    on_msg(msg)
                kind = msg["msg_type"]
                if channel == "shell" and kind == "execute_reply":
                    state["reply"] = True
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    state["idle"] = True
        return state["reply"] and state["idle"]

    wait_for(drain, WAIT_S, "the cell to finish", interval=0.01)
    return seen


def _reply(seen: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    (reply,) = [m for c, m in seen if c == "shell" and m["msg_type"] == "execute_reply"]
    return reply["content"]


def _errors(seen: list[tuple[str, dict[str, Any]]]) -> str:
    return "\n".join(
        json.dumps(m["content"])[:2000]
        for _, m in seen
        if m["msg_type"] in ("error", "stream", "execute_reply")
    )


def test_blocked_summary_in_a_kernel_displays_the_monitor(kernel, shared_demo_net) -> None:
    creds = shared_demo_net.credentials
    setup = _execute(
        kernel,
        "from vantage6nb import Client, analysis\n"
        f"client = Client({shared_demo_net.url!r}, state_dir=False)"
        f".login({creds['username']!r}, {creds['password']!r})\n",
    )
    assert _reply(setup)["status"] == "ok", _errors(setup)

    seen = _execute(kernel, "df = analysis.summary(client, columns=['year'])\nlen(df)")
    assert _reply(seen)["status"] == "ok", _errors(seen)

    order = [m for _, m in seen]
    reply_at = next(i for i, (c, m) in enumerate(seen) if m["msg_type"] == "execute_reply")
    # the models, as their comm_open and later updates set them (add_class comes after the open)
    state: dict[str, dict[str, Any]] = {}
    for m in order:
        data = m["content"].get("data") or {}
        if m["msg_type"] == "comm_open" and m["content"].get("target_name") == "jupyter.widget":
            state[m["content"]["comm_id"]] = dict(data.get("state") or {})
        elif m["msg_type"] == "comm_msg" and data.get("method") == "update":
            state.setdefault(m["content"]["comm_id"], {}).update(data.get("state") or {})
    monitors = [
        comm
        for comm, values in state.items()
        if values.get("_model_name") == "VBoxModel"
        and "v6nb-task-monitor" in (values.get("_dom_classes") or [])
    ]
    assert len(monitors) == 1, _errors(seen)  # one monitor: the central task and its parts
    (model_id,) = monitors
    views = [
        i
        for i, (c, m) in enumerate(seen)
        if m["msg_type"] == "display_data" and m["content"]["data"].get(VIEW, {}).get("model_id")
    ]
    shown = [i for i in views if seen[i][1]["content"]["data"][VIEW]["model_id"] == model_id]
    assert len(views) == 1 and shown, _errors(seen)
    assert shown[0] < reply_at  # displayed while the cell was still blocked in the wait
    # the widget view only: a cell's text output stays as it was (nbval compares it)
    assert set(seen[shown[0]][1]["content"]["data"]) == {VIEW}
    # and updated while blocked: its widgets' state changes after the display, before the reply
    updates = [
        i
        for i, (c, m) in enumerate(seen)
        if m["msg_type"] == "comm_msg"
        and m["content"]["data"].get("method") == "update"
        and m["content"]["comm_id"] in state
    ]
    assert any(shown[0] < i < reply_at for i in updates), _errors(seen)
    # no progress line in a notebook: the monitor is the progress
    stderr = "".join(
        m["content"]["text"]
        for m in order
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert "done (" not in stderr, stderr

    # `task.wait()` as a cell's last line: the wait's monitor, and no second one for the result
    seen = _execute(
        kernel,
        "own = client.whoami['organization_id']\n"
        "task = client.task.create(organizations=[own], image='v6nb/diagnostics', method='echo')\n"
        "task.wait(timeout=120)",
    )
    assert _reply(seen)["status"] == "ok", _errors(seen)
    views = [
        m
        for _, m in seen
        if m["msg_type"] in ("display_data", "execute_result") and VIEW in m["content"]["data"]
    ]
    assert len(views) == 1, _errors(seen)


def test_kill_acts_while_the_cell_is_blocked_in_the_wait(kernel, shared_demo_net) -> None:
    creds = shared_demo_net.credentials
    setup = _execute(
        kernel,
        "from vantage6nb import Client\n"
        f"client = Client({shared_demo_net.url!r}, state_dir=False)"
        f".login({creds['username']!r}, {creds['password']!r})\n"
        "own = client.whoami['organization_id']\n",
    )
    assert _reply(setup)["status"] == "ok", _errors(setup)
    buttons: dict[str, dict[str, Any]] = {}
    clicked: list[str] = []

    def click_kill(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = content["data"].get("state") or {}
            if state.get("_model_name") == "ButtonModel" and state.get("description") == "Kill":
                buttons[content["comm_id"]] = state
        if msg["msg_type"] == "display_data" and VIEW in content["data"] and not clicked:
            (button,) = buttons  # the monitor is on screen: click its Kill button, as a user would
            click = {"comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}}
            kernel.shell_channel.send(kernel.session.msg("comm_msg", click))
            clicked.append(button)

    # a run of 10 minutes, waited for with a timeout of 5: only the Kill button ends it sooner
    seen = _execute(
        kernel,
        "task = client.task.create(organizations=[own], image='v6nb/diagnostics', "
        "method='sleep', kwargs={'seconds': 600, 'chatter': False})\n"
        "task.wait(timeout=300)",
        click_kill,
    )
    assert clicked, _errors(seen)
    assert _reply(seen)["status"] == "error", _errors(seen)
    shown = _errors(seen) + "".join(
        json.dumps(m["content"].get("data") or {})
        for _, m in seen
        if m["msg_type"] == "display_data"
    )
    assert "TaskFailed" in shown and "killed" in shown, shown
    assert "TaskTimeout" not in shown  # the wait ended because the task was killed
    check = _execute(kernel, "print(task.state)")
    assert "killed" in _errors(check)


def test_offline_warning_is_a_card_in_a_kernel(kernel) -> None:
    # The warning the client gives for a task whose node is offline, shown as a notebook shows
    # it: a card with the node's name as code, not Python's "/tmp/ipykernel_…:3: …Warning:" text.
    note = (
        "Task 4 runs at organizations whose node is not online; their runs wait for it:\n"
        "  - Utrecht: node 'utrecht-node' is offline — start it with `v6nb node start`"
    )
    seen = _execute(
        kernel,
        "import warnings\n"
        "from vantage6nb.client import NodeOfflineWarning, _notebook_warnings\n"
        "_notebook_warnings.install()\n"
        f"warnings.warn({note!r}, NodeOfflineWarning)\n",
    )
    assert _reply(seen)["status"] == "ok", _errors(seen)
    cards = [
        m["content"]["data"]["text/html"]
        for _, m in seen
        if m["msg_type"] == "display_data" and "text/html" in m["content"]["data"]
    ]
    assert len(cards) == 1, _errors(seen)
    assert "NodeOfflineWarning" in cards[0] and "<code>v6nb node start</code>" in cards[0]
    assert "<li>Utrecht: node &#x27;utrecht-node&#x27; is offline" in cards[0]
    assert "ipykernel" not in _errors(seen) and "NodeOfflineWarning:" not in _errors(seen)

    # filters still decide: ignored means nothing shown; other warnings keep Python's text
    seen = _execute(
        kernel,
        "warnings.simplefilter('ignore', NodeOfflineWarning)\n"
        "warnings.warn('x', NodeOfflineWarning)\n"
        "warnings.warn('plain one', UserWarning)\n",
    )
    assert _reply(seen)["status"] == "ok", _errors(seen)
    assert not [m for _, m in seen if m["msg_type"] == "display_data"], _errors(seen)
    assert "UserWarning: plain one" in _errors(seen)
