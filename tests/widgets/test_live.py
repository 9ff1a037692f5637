"""Widgets against the module's own demo network (server + 3 node processes on loopback; tests stop
and start nodes): events drive them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from vantage6nb.widgets import Login, NetworkView, TaskBuilder, TaskMonitor

pytestmark = pytest.mark.integration

WAIT_S = 120.0  # an upper bound so a broken widget fails instead of hanging; not a speed check


@pytest.fixture
def client(demo_net):
    return demo_net.client()


def wait_for_trait(widget: Any, trait: str, predicate: Callable[[Any], bool]) -> Any:
    """Block until ``predicate(widget.<trait>)`` holds, woken by the trait's observer."""
    hit = threading.Event()

    def check(_change: Any = None) -> None:
        if predicate(getattr(widget, trait)):
            hit.set()

    widget.observe(check, names=[trait])
    try:
        check()
        assert hit.wait(WAIT_S), (
            f"{trait} never satisfied the condition: {getattr(widget, trait)!r}"
        )
    finally:
        widget.unobserve(check, names=[trait])
    return getattr(widget, trait)


def test_login_shows_user_and_organization(demo_net):
    login = Login(
        url=demo_net.url,
        username=demo_net.credentials["username"],
        password=demo_net.credentials["password"],
    )
    seen: list[str] = []
    login.observe(lambda change: seen.append(change["new"]), names=["username"])
    login.login_button.click()
    assert login.errors.messages == []
    assert seen == ["researcher"] and login.organization == "Leiden"
    assert "researcher" in login.status_html.value and "Leiden" in login.status_html.value
    assert login.password_input.value == ""  # the secret does not stay in the widget state
    assert login.client.whoami["username"] == "researcher"


def test_bad_password_is_shown_in_the_widget(demo_net):
    login = Login(url=demo_net.url, username="researcher", password="wrong")
    login.login_button.click()
    assert login.client is None and login.username == ""
    assert len(login.errors.messages) == 1
    assert login.errors.messages[0].startswith("Error while logging in:")
    assert "Traceback" not in login.errors.widget.outputs[0]["text"]


def test_network_view_follows_node_events(demo_net, client):
    view = NetworkView(client)
    try:
        wait_for_trait(view, "node_status", lambda s: sorted(s.values()) == ["online"] * 3)
        assert "3 of 3 nodes online" in view.html.value
        name = demo_net.node_names[-1]
        node_id = int(client.nodes().set_index("organization").loc[name, "id"])
        demo_net.stop_node(name)
        wait_for_trait(view, "node_status", lambda s: s.get(node_id) == "offline")
        assert "2 of 3 nodes online" in view.html.value
        demo_net.start_node(name)
        wait_for_trait(view, "node_status", lambda s: s.get(node_id) == "online")
        assert set(view.dataframe["status"]) == {"online"}
    finally:
        view.close()
        demo_net.start_node(demo_net.node_names[-1])


def test_monitor_moves_on_pushed_run_status_events(demo_net, client):
    # One node is down, so its run waits as pending; only a pushed event can move it on
    name = demo_net.node_names[-1]
    demo_net.stop_node(name)
    try:
        task = client.task.create(
            image="v6nb/diagnostics",
            method="shape",
            databases=["default"],
        )
        monitor = TaskMonitor(task)
        history: list[dict[str, str]] = []
        monitor.observe(lambda change: history.append(dict(change["new"])), names=["statuses"])
        wait_for_trait(
            monitor,
            "statuses",
            lambda s: sum(v == "completed" for v in s.values()) == 2 and s.get(name) == "pending",
        )
        assert not monitor.done and monitor.status == "running"
        assert monitor.bar.value == 2 and monitor.bar.max == 3
        demo_net.start_node(name)
        wait_for_trait(monitor, "done", bool)
        assert monitor.status == "completed" and monitor.bar.bar_style == "success"
        assert set(monitor.statuses.values()) == {"completed"}
        assert any(h.get(name) == "pending" for h in history)  # we saw it before it completed
        assert monitor.kill_button.disabled
        assert monitor.table.value.count("data-status='completed'") == 3
        assert list(monitor.dataframe["status"]) == ["completed"] * 3
    finally:
        demo_net.start_node(name)


def test_kill_button_kills_open_runs(demo_net, client):
    name = demo_net.node_names[0]
    demo_net.stop_node(name)
    try:
        org = int(client.organizations().set_index("name").loc[name, "id"])
        task = client.task.create(
            organizations=[org],
            image="v6nb/diagnostics",
            method="sleep",
            kwargs={"seconds": 60},
        )
        monitor = TaskMonitor(task)
        assert monitor.statuses == {name: "pending"}
        monitor.kill_button.click()
        wait_for_trait(monitor, "done", bool)
        assert monitor.status == "killed" and monitor.statuses == {name: "killed"}
        assert monitor.errors.messages == []
    finally:
        demo_net.start_node(name)


def test_failed_run_shows_reason_and_log_tail(client):
    task = client.task.create(
        image="v6nb/diagnostics",
        method="crash",
        kwargs={"message": "no_such_column is not in the data"},
    )
    monitor = TaskMonitor(task)
    wait_for_trait(monitor, "done", bool)
    assert monitor.status == "failed" and monitor.bar.bar_style == "danger"
    assert set(monitor.statuses.values()) <= {"failed", "crashed"}
    assert "no_such_column" in monitor.table.value  # the log tail holds the algorithm's error
    assert "log tail" in monitor.table.value


def test_task_builder_runs_summary_and_shows_result(demo_net, client):
    builder = TaskBuilder(client)
    assert (
        builder.algorithm_input.value == "v6nb/summary" and builder.method_input.value == "summary"
    )
    assert set(builder.organizations_input.value) == set(client.organizations()["id"])
    builder.argument_inputs["columns"].value = ["bill_length_mm", "body_mass_g"]  # a tags picker
    builder.run_button.click()
    assert builder.errors.messages == [] and builder.task_id > 0
    wait_for_trait(builder, "status", lambda s: s not in ("", "pending", "running"))
    assert builder.status == "completed"
    # subtasks: every organization's part shows up in the monitor
    assert set(builder.monitor.subtask_statuses) == set(demo_net.datasets)
    df = builder.dataframe
    pooled = pd.concat(pd.read_csv(p) for p in demo_net.datasets.values())
    assert list(df.index) == ["bill_length_mm", "body_mass_g"]
    assert df.loc["body_mass_g", "count"] == pooled["body_mass_g"].count()
    assert df.loc["bill_length_mm", "std"] == pytest.approx(
        pooled["bill_length_mm"].std(), rel=1e-9
    )
    assert df.attrs["task_id"] == builder.task_id
    assert builder.output.children == (builder.monitor, builder.result_view)


def test_task_builder_crosstab_and_form_errors(demo_net, client):
    builder = TaskBuilder(client)
    builder.algorithm_input.value = "v6nb/crosstab"
    assert list(builder.argument_inputs)[:2] == ["row", "col"]
    assert builder.run() is None  # row and col are required
    assert "row (required)" in builder.errors.messages[0] and builder.task_id == 0
    builder.argument_inputs["row"].value = "species"
    builder.argument_inputs["col"].value = "island"
    builder.run()
    wait_for_trait(builder, "status", lambda s: s == "completed")
    pooled = pd.concat(pd.read_csv(p) for p in demo_net.datasets.values())
    expected = pd.crosstab(pooled["species"], pooled["island"])
    assert builder.dataframe.to_numpy().tolist() == expected.to_numpy().tolist()
    assert builder.result_view.kind == "crosstab"
