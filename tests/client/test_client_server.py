"""The client against a real server process: login, DataFrames, tasks, waiting and events.

No node runs here, so tasks stay pending: that is what the timeout and kill paths need. The full
round trip with nodes is covered by tests/integration on the demo network.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
import socketio

from tests.support import free_port, wait_for
from vantage6nb import Client, Task, errors
from vantage6nb.common import events

from .conftest import RESEARCHER_PASSWORD

EVENT_WAIT_S = 30  # generous upper bound for an event to arrive; not a speed assertion


# -- login and lists ---------------------------------------------------------------------------
@pytest.mark.parametrize(("username", "password"), [("researcher", "wrong"), ("nobody", "x")])
def test_wrong_credentials(network: dict[str, Any], username: str, password: str) -> None:
    c = Client(network["url"])
    with pytest.raises(errors.AuthenticationError, match="wrong username or password"):
        c.login(username, password)
    assert not c.logged_in
    assert "not logged in" in repr(c)


def test_calls_before_login_say_to_log_in(network: dict[str, Any]) -> None:
    with pytest.raises(errors.AuthenticationError, match="client.login"):
        Client(network["url"]).organizations()


def test_unreachable_server() -> None:
    c = Client(f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(errors.ServerUnavailable, match="v6nb server start"):
        c.login("researcher", "x")


def test_a_url_without_scheme_is_a_validation_error() -> None:
    with pytest.raises(errors.ValidationError, match="http://127.0.0.1:7601"):
        Client("127.0.0.1:7601")


def test_whoami_and_repr(client: Client) -> None:
    me = client.whoami
    assert me["username"] == "researcher"
    assert me["organization_name"] == "Leiden"
    assert repr(client) == f"<Client {client.url} — 'researcher' of 'Leiden'>"


def test_dataframes(client: Client, network: dict[str, Any]) -> None:
    orgs = client.organizations()
    assert {"Leiden", "Utrecht"} <= set(orgs["name"])
    assert orgs["id"].dtype == "int64"

    collabs = client.collaborations()
    assert collabs["name"].tolist() == ["study"]
    assert collabs.loc[0, "organizations"] == ["Leiden", "Utrecht"]

    nodes = client.nodes()
    assert sorted(nodes["name"]) == ["leiden-node", "utrecht-node"]
    assert sorted(nodes["organization"]) == ["Leiden", "Utrecht"]
    assert not nodes["online"].any()
    assert set(nodes["status"]) == {"offline"}
    assert (client.nodes(collaboration="study")["collaboration"] == "study").all()

    users = client.users()
    assert "researcher" in set(users["username"])
    assert users.loc[users["username"] == "researcher", "organization"].item() == "Leiden"


# -- creating tasks ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "cls", "match"),
    [
        ({"organizations": ["Nowhere"]}, errors.NotFound, "Its organizations are: 'Leiden'"),
        ({"organizations": ["Elsewhere"]}, errors.NotFound, "not in collaboration 'study'"),
        ({"organizations": []}, errors.ValidationError, "at least one organization"),
        ({"collaboration": "nope"}, errors.NotFound, "Yours are: 'study'"),
        ({"collaboration": 999}, errors.NotFound, None),
        ({"image": ""}, errors.ValidationError, "image is required"),
        ({"databases": [3]}, errors.ValidationError, "label"),
    ],
)
def test_create_rejects_bad_input(
    client: Client, kwargs: dict[str, Any], cls: type, match: str
) -> None:
    args = {"image": "v6nb/summary", "method": "summary", **kwargs}
    with pytest.raises(cls, match=match):
        client.task.create(**args)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"kwargs": [1, 2]}, "kwargs"),
        ({"kwargs": "columns=age"}, "kwargs"),
        ({"args": "abc"}, "args"),
        ({"args": {"a": 1}}, "args"),
        ({"kwargs": {"x": object()}}, "kwargs"),
        ({"kwargs": {"s": {1, 2}}}, "kwargs"),
        ({"args": [float("nan"), object()]}, "kwargs"),
    ],
)
def test_bad_task_arguments_are_validation_errors_sent_nowhere(
    client: Client, arguments: dict[str, Any], field: str
) -> None:
    before = len(client.task.list())
    with pytest.raises(errors.ValidationError) as info:
        client.task.create(image="v6nb/diagnostics", method="echo", **arguments)
    assert field in info.value.errors
    assert len(client.task.list()) == before


def test_create_get_list_and_status(client: Client, network: dict[str, Any]) -> None:
    task = client.task.create(
        organizations=["Utrecht", network["orgs"]["Leiden"]["id"]],
        image="v6nb/summary",
        method="summary_partial",
        kwargs={"columns": ["x"]},
        databases=["default"],
        name="pending one",
    )
    assert isinstance(task, Task)
    assert task.name == "pending one" and task.image == "v6nb/summary"
    assert task.organization_ids == [
        network["orgs"]["Utrecht"]["id"],
        network["orgs"]["Leiden"]["id"],
    ]
    assert not task.done

    status = task.status()
    assert list(status.columns[:6]) == [
        "organization",
        "node",
        "status",
        "reason",
        "started",
        "finished",
    ]
    assert status["organization"].tolist() == ["Utrecht", "Leiden"]
    assert status["node"].tolist() == ["utrecht-node", "leiden-node"]
    assert set(status["status"]) == {"pending"}
    assert status.attrs["task_id"] == task.id

    again = client.task.get(task.id)
    assert again.id == task.id and again.name == "pending one" and again.method == "summary_partial"
    assert "pending" in repr(again) and "Utrecht" in repr(again) and str(task.id) in repr(again)

    listed = client.task.list()
    assert task.id in set(listed["id"])
    assert listed.loc[listed["id"] == task.id, "image"].item() == "v6nb/summary"

    with pytest.raises(errors.NotFound):
        client.task.get(10**6)


def test_input_is_the_algorithm_document(client: Client, network: dict[str, Any]) -> None:
    task = client.task.create(
        # an image without store metadata: v6nb/summary's would refuse method "m" before sending
        organizations=["Leiden"],
        image="test/probe",
        method="m",
        args=[1],
        kwargs={"a": "b"},
    )
    run = client._transport.request("GET", f"/run/{task.runs[0]['id']}")
    import json

    assert json.loads(run["input"]) == {"method": "m", "args": [1], "kwargs": {"a": "b"}}
    assert len(client._transport.request("GET", f"/task/{task.id}")["uid"]) == 32


# -- waiting ----------------------------------------------------------------------------------
def test_wait_timeout_names_the_offline_nodes(client: Client) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial")
    with pytest.raises(errors.TaskTimeout) as info:
        task.wait(timeout=0.5, progress=False)
    msg = str(info.value)
    assert isinstance(info.value, TimeoutError)
    assert "node 'leiden-node' of organization 'Leiden' is offline" in msg
    assert "node 'utrecht-node' of organization 'Utrecht' is offline" in msg
    assert "v6nb node start" in msg and "pending" in msg
    task.kill()


def test_kill_then_wait_reports_each_organization(client: Client) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial", name="to kill")
    task.kill()
    assert task.done
    assert set(task.status()["status"]) == {"killed"}
    with pytest.raises(errors.TaskFailed) as info:
        task.wait(timeout=5)
    msg = str(info.value)
    assert "Leiden: killed" in msg and "Utrecht: killed" in msg and "researcher" in msg
    assert task.wait(timeout=5, raise_on_failure=False) is task
    assert task.results() == [None, None]
    assert task.results_by_organization() == {"Leiden": None, "Utrecht": None}
    with pytest.raises(errors.TaskError, match="2 results"):
        task.result()


def test_results_of_a_failed_task_raise_unless_failures_were_accepted(client: Client) -> None:
    task = client.task.create(image="v6nb/summary", method="summary_partial", name="qa killed")
    task.kill()
    with pytest.raises(errors.TaskFailed, match="Leiden: killed"):
        client.task.get(task.id).results()  # a fresh handle on a final, failed task
    with pytest.raises(errors.TaskFailed):
        task.results_by_organization()
    with pytest.raises(errors.TaskFailed):
        task.wait(timeout=5)
    with pytest.raises(errors.TaskFailed):  # after a raising wait, results still raise
        task.results()
    assert task.wait(timeout=5, raise_on_failure=False) is task
    assert task.results() == [None, None]


# -- events ----------------------------------------------------------------------------------
class Collector:
    """Collects payloads in a thread-safe list and signals when a predicate holds."""

    def __init__(self, predicate: Any) -> None:
        self.items: list[Any] = []
        self.predicate = predicate
        self.hit = threading.Event()

    def __call__(self, payload: Any, *rest: Any) -> None:
        self.items.append(payload if not rest else (payload, *rest))
        if self.predicate(self.items):
            self.hit.set()


def test_run_status_events_reach_subscribers_and_on_change(client: Client) -> None:
    def boom(_: Any) -> None:
        raise RuntimeError("a subscriber bug")

    client.events.on(events.RUN_STATUS, boom)  # must not break the others or the connection
    task = client.task.create(image="v6nb/summary", method="summary_partial")
    mine = Collector(
        lambda xs: sum(x.get("task_id") == task.id and x["status"] == "killed" for x in xs) == 2
    )
    off = client.events.on(events.RUN_STATUS, mine)
    changes = Collector(lambda xs: len(xs) == 2)
    off_change = task.on_change(lambda t, ev: changes((t, ev)))
    assert client.events.connected
    task.kill()
    assert mine.hit.wait(EVENT_WAIT_S), mine.items
    assert changes.hit.wait(EVENT_WAIT_S), changes.items
    assert all(t is task and ev["status"] == "killed" for t, ev in changes.items)
    assert client.events.connected
    off()
    off_change()
    before = len(mine.items)
    later = client.task.create(image="v6nb/summary", method="summary_partial")
    still_on = Collector(
        lambda xs: sum(x.get("task_id") == later.id and x["status"] == "killed" for x in xs) == 2
    )
    client.events.on(events.RUN_STATUS, still_on)
    later.kill()
    # once a subscriber still on has the events, the unsubscribed one would have them too
    assert still_on.hit.wait(EVENT_WAIT_S), still_on.items
    assert client.events.connected and len(mine.items) == before  # unsubscribed


def _node_socket(url: str, api_key: str) -> socketio.Client:
    token = requests.post(url + "/api/token/node", json={"api_key": api_key}, timeout=10).json()[
        "access_token"
    ]
    sio = socketio.Client(reconnection=False)
    sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    return sio


def test_node_online_event_and_timeout_message_for_online_node(
    client: Client, network: dict[str, Any]
) -> None:
    online = Collector(lambda xs: any(x.get("name") == "leiden-node" for x in xs))
    offline = Collector(lambda xs: any(x.get("name") == "leiden-node" for x in xs))
    client.events.on(events.NODE_ONLINE, online)
    client.events.on(events.NODE_OFFLINE, offline)
    node = _node_socket(network["url"], network["nodes"]["Leiden"]["api_key"])
    try:
        assert online.hit.wait(EVENT_WAIT_S), online.items
        wait_for(
            lambda: client.nodes().set_index("name").loc["leiden-node", "online"],
            EVENT_WAIT_S,
            "leiden-node to be listed online",
        )
        task = client.task.create(
            organizations=["Leiden", "Utrecht"], image="test/probe", method="m"
        )
        with pytest.raises(errors.TaskTimeout) as info:
            task.wait(timeout=0.5, progress=False)
        msg = str(info.value)
        assert (
            "'leiden-node' of organization 'Leiden' is online but has not picked the run up" in msg
        )
        assert "node 'utrecht-node' of organization 'Utrecht' is offline" in msg
        task.kill()
    finally:
        node.disconnect()
    assert offline.hit.wait(EVENT_WAIT_S), offline.items


def test_second_client_login_keeps_sessions_apart(network: dict[str, Any]) -> None:
    with Client(network["url"]).login("researcher", RESEARCHER_PASSWORD) as a:
        with Client(network["url"]).login("root", "root-Secret-1") as b:
            assert a.whoami["username"] == "researcher" and b.whoami["username"] == "root"
            assert b.whoami["is_admin"]


def test_events_refresh_a_refused_token(network: dict[str, Any]) -> None:
    with Client(network["url"]).login("researcher", RESEARCHER_PASSWORD) as c:
        c._transport.access_token = "not-a-valid-token"  # as if it had expired
        assert c.events.connect()
        assert c._transport.access_token != "not-a-valid-token"
        assert c.events.last_error is None


def test_events_without_login_do_not_connect(network: dict[str, Any]) -> None:
    c = Client(network["url"])
    c.events.on(events.RUN_STATUS, lambda _: None)
    assert not c.events.connected and c.events.last_error == "not logged in"
