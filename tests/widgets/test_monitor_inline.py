"""The TaskMonitor a blocking wait shows: one per task (a central's parts included, a display
before the wait reused), final once the task is done (no Kill button, no more updates); real
tasks on the shared demo network, the monitor's traits read without a browser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.waiting import wait_for
from vantage6nb.client import _display
from vantage6nb.client._progress import MonitorReport
from vantage6nb.widgets import TaskMonitor

WAIT_S = 120


@pytest.fixture
def shown() -> Iterator[list[TaskMonitor]]:
    """Every monitor the client displays (the hook builds it as display_task does, without a
    frontend to send it to)."""
    monitors: list[TaskMonitor] = []

    def hook(task: Any) -> TaskMonitor:
        monitors.append(TaskMonitor(task))
        return monitors[-1]

    _display.set_display_hook(hook)
    try:
        yield monitors
    finally:
        _display.set_display_hook(None)
        for monitor in monitors:
            monitor.close()


@pytest.fixture(scope="module")
def client(shared_demo_net):
    return shared_demo_net.client()


def _central(client: Any) -> Any:
    own = client.whoami["organization_id"]
    return client.task.create(
        organizations=[own],
        image="v6nb/summary",
        method="summary",
        kwargs={"organizations": client.organizations()["id"].tolist(), "columns": ["year"]},
        databases=["default"],
    )


def test_a_wait_shows_one_monitor_that_follows_the_parts_and_ends_final(client, shown) -> None:
    task = _central(client)
    task.wait(timeout=WAIT_S, progress=MonitorReport())
    (monitor,) = shown  # one monitor for the central task and its subtask
    wait_for(lambda: monitor.done, WAIT_S, "the monitor to see the task done")
    assert monitor.status == "completed" and monitor.bar.bar_style == "success"
    orgs = set(client.organizations()["name"])
    wait_for(lambda: set(monitor.subtask_statuses) == orgs, WAIT_S, "every part in the monitor")
    assert set(monitor.subtask_statuses.values()) == {"completed"}
    # nothing left to kill: the button is gone
    assert not monitor.killable and monitor.kill_button.disabled
    assert monitor.kill_button not in monitor.header.children
    assert monitor.kill_button.layout.display == "none"
    # and it stops updating: no subscriptions left, a late event changes nothing
    assert monitor._unsubscribe == []
    before = monitor.table.value
    task.run_book.poke()
    monitor._render()
    assert monitor.table.value == before and monitor.done


def test_a_task_displayed_before_the_wait_gets_no_second_monitor(client, shown) -> None:
    task = _central(client)
    _display.show_result(task)  # what `task` as a cell's last line does
    task.wait(timeout=WAIT_S, progress=MonitorReport())
    assert len(shown) == 1
    wait_for(lambda: shown[0].done, WAIT_S, "the monitor to see the task done")


def test_waiting_again_for_a_finished_task_shows_nothing_new(client, shown) -> None:
    task = _central(client)
    task.wait(timeout=WAIT_S, progress=MonitorReport())
    wait_for(lambda: shown and shown[0].done, WAIT_S, "the first monitor done")
    task.wait(timeout=WAIT_S, progress=MonitorReport())  # done already: nothing to watch
    assert len(shown) == 1


def test_the_kill_button_kills_and_the_monitor_ends_killed(client, shown) -> None:
    own = client.whoami["organization_id"]
    task = client.task.create(
        organizations=[own], image="v6nb/diagnostics", method="sleep", kwargs={"seconds": 300}
    )
    _display.show(task)
    (monitor,) = shown
    assert monitor.killable and monitor.kill_button in monitor.header.children
    assert monitor.kill_while_blocked is False  # no kernel here: clicks come in on this thread
    monitor.kill_button.click()
    wait_for(lambda: monitor.done, WAIT_S, "the monitor to see the task killed")
    assert monitor.status == "killed" and not monitor.killable


def test_the_monitor_shows_an_offline_node_live_until_it_is_back(demo_net, shown) -> None:
    from vantage6nb.client import NodeOfflineWarning

    client = demo_net.client()
    name = demo_net.node_names[-1]
    demo_net.stop_node(name)
    try:
        wait_for(
            lambda: client.nodes().set_index("organization").loc[name, "status"] == "offline",
            WAIT_S,
            f"the node of {name} offline",
        )
        with pytest.warns(NodeOfflineWarning, match=name):
            task = client.task.create(image="v6nb/diagnostics", method="echo")
        _display.show(task)
        (monitor,) = shown
        wait_for(lambda: name in monitor.offline, WAIT_S, f"{name} shown offline")
        assert list(monitor.offline) == [name] and monitor.offline[name]  # since when
        assert "v6nb-node-offline" in monitor.table.value and "is offline since" in (
            monitor.table.value
        )
    finally:
        demo_net.start_node(name)
    # the node_online event clears it; the run it waited for then completes
    wait_for(lambda: not monitor.offline, WAIT_S, f"{name} no longer shown offline")
    wait_for(lambda: monitor.done, WAIT_S, "the task done")
    assert monitor.status == "completed" and "v6nb-node-offline" not in monitor.table.value
