"""Task life cycle through real server and node processes: round trip, restarts, kill, crash, bad data, offline node."""

from __future__ import annotations

import os
import threading

import pandas as pd
import pytest

from tests.integration.helpers import assert_federated_equals_pooled
from tests.support import wait_for
from vantage6nb.errors import TaskFailed, TaskTimeout

pytestmark = pytest.mark.integration

DIAG = "v6nb/diagnostics"


def _org_name(client, org_id):
    orgs = client.organizations().set_index("id")
    return orgs.loc[org_id, "name"]


def test_round_trip_on_three_nodes(client, org_ids):
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="echo", kwargs={"greeting": "hi"}
    )
    task.wait(timeout=60)
    status = task.status()
    assert len(status) == 3
    assert set(status["status"]) == {"completed"}
    results = task.results()
    assert results == [{"args": [], "kwargs": {"greeting": "hi"}}] * 3
    assert status.attrs["task_id"] == task.id and status.attrs["method"] == "echo"
    assert sorted(status.attrs["organizations"]) == sorted(status["organization"])


def test_summary_and_crosstab_equal_pandas_on_pooled_data(demo_net, client):
    pooled = pd.concat(
        [pd.read_csv(path) for path in demo_net.datasets.values()], ignore_index=True
    )
    assert_federated_equals_pooled(client, pooled)


def test_algorithm_crash_is_reported_with_log_tail(client, org_ids):
    task = client.task.create(
        organizations=org_ids[:1], image=DIAG, method="crash", kwargs={"message": "boom-42"}
    )
    with pytest.raises(TaskFailed, match="boom-42"):
        task.wait(timeout=60)
    assert task.status().iloc[0]["status"] == "crashed"


def test_missing_data_file_fails_that_run_only(demo_net, client, org_ids):
    name = _org_name(client, org_ids[1])
    path = demo_net.datasets[name]
    os.rename(path, path + ".moved")
    try:
        task = client.task.create(
            organizations=org_ids, image=DIAG, method="shape", databases=["default"]
        )
        task.wait(timeout=60, raise_on_failure=False)
    finally:
        os.rename(path + ".moved", path)
    status = task.status().set_index("organization")
    assert status.loc[name, "status"] == "failed"
    assert "does not exist" in status.loc[name, "reason"]
    others = status.drop(index=name)
    assert set(others["status"]) == {"completed"}


def test_kill_running_task(client, org_ids):
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="sleep", kwargs={"seconds": 60}
    )
    wait_for(lambda: set(task.status()["status"]) == {"active"}, what="all runs active")
    task.kill()
    task.wait(timeout=30, raise_on_failure=False)
    assert set(task.status()["status"]) == {"killed"}
    # the stations are free again: a new task completes
    client.task.create(organizations=org_ids, image=DIAG, method="echo").wait(timeout=60)


def test_node_restarted_mid_task(demo_net, client, org_ids):
    name = _org_name(client, org_ids[0])
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="sleep", kwargs={"seconds": 3}
    )
    wait_for(
        lambda: task.status().set_index("organization").loc[name, "status"] == "active",
        what="run active",
    )
    demo_net.stop_node(name, kill=True)
    demo_net.start_node(name)
    task.wait(timeout=90)
    assert set(task.status()["status"]) == {"completed"}


def test_server_restarted_mid_task(demo_net, client, org_ids):
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="sleep", kwargs={"seconds": 3}
    )
    wait_for(lambda: "active" in set(task.status()["status"]), what="a run active")
    demo_net.restart_server()
    task.wait(timeout=90)
    assert set(task.status()["status"]) == {"completed"}
    assert [r["slept"] >= 3 for r in task.results()] == [True] * 3


def test_offline_node_is_named_and_its_run_completes_when_it_returns(demo_net, client, org_ids):
    name = _org_name(client, org_ids[2])
    demo_net.stop_node(name)
    try:
        wait_for(
            lambda: client.nodes().set_index("organization").loc[name, "status"] == "offline",
            what="node offline",
        )
        task = client.task.create(organizations=org_ids, image=DIAG, method="echo")
        with pytest.raises(TaskTimeout) as info:
            task.wait(timeout=5)
        assert name in str(info.value) and "offline" in str(info.value)

        def others_completed() -> bool:
            status = task.status().set_index("organization")
            return bool((status.drop(index=name)["status"] == "completed").all())

        wait_for(others_completed, 60, "the online nodes' runs to complete")
        # the offline node's run waits for it
        assert task.status().set_index("organization").loc[name, "status"] == "pending"
    finally:
        demo_net.start_node(name)
    task.wait(timeout=60)
    assert set(task.status()["status"]) == {"completed"}


def test_status_changes_arrive_as_events(client, org_ids):
    seen: list[str] = []
    done = threading.Event()

    def on_status(task, event):
        seen.append(event["status"])
        if event["status"] == "completed":
            done.set()

    task = client.task.create(
        organizations=org_ids[:1], image=DIAG, method="sleep", kwargs={"seconds": 1}
    )
    task.on_change(on_status)
    task.wait(timeout=60)
    assert done.wait(5)
    assert "completed" in seen


def test_logs_and_subtasks_are_public(client, org_ids):
    crashed = client.task.create(
        organizations=org_ids[:1], image=DIAG, method="crash", kwargs={"message": "log-me"}
    )
    crashed.wait(timeout=60, raise_on_failure=False)
    (log,) = crashed.logs().values()
    assert "about to crash" in log and "log-me" in log

    central = client.task.create(
        organizations=org_ids[:1],
        image="v6nb/summary",
        method="summary",
        kwargs={"organizations": org_ids},
        databases=["default"],
    )
    central.wait(timeout=90)
    (sub,) = central.subtasks()
    assert sorted(r["organization_id"] for r in sub.runs) == sorted(org_ids)
    assert set(sub.status()["status"]) == {"completed"}


def test_concurrent_central_tasks_do_not_starve_their_partials(client, org_ids):
    # more central tasks than a node has execution slots (max_parallel_runs=2): each central run
    # gives its slot back once it has created its subtasks, so the partials on that node can run
    tasks = [
        client.task.create(
            organizations=org_ids[:1],
            image="v6nb/summary",
            method="summary",
            kwargs={"organizations": org_ids},
            databases=["default"],
        )
        for _ in range(4)
    ]
    for task in tasks:
        task.wait(timeout=120)
    assert all(set(t.status()["status"]) == {"completed"} for t in tasks)
