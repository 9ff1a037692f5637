"""AlgorithmClient: built from the contract's environment, typed errors from a real node proxy, waiting."""

from __future__ import annotations

import pandas as pd
import pytest

from node_app.proxy import AlgorithmProxy, RunContext
from node_app.server_client import ServerClient
from tests.support import free_port
from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, typed
from vantage6nb.algorithm.results import count
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.common import contract
from vantage6nb.common.errors import (
    AuthenticationError,
    ConfigurationError,
    DisclosureRefused,
    NotFound,
    ServerUnavailable,
    TaskFailed,
)


@pytest.fixture
def proxy():
    # a real node proxy whose server is a closed port: token checks and error mapping are real
    p = AlgorithmProxy(ServerClient(f"http://127.0.0.1:{free_port()}", "no-key"), port=0)
    p.start()
    p.register(
        "good-token",
        RunContext(
            run_id=1, task_id=1, collaboration_id=1, organization_id=1, image="v6nb/summary"
        ),
    )
    yield p
    p.stop()


def _set_env(monkeypatch, tmp_path, port, token, api_path=""):
    (tmp_path / "token").write_text(token + "\n")
    env = contract.build_environment(
        input_file="in",
        output_file="out",
        token_file=str(tmp_path / "token"),
        temporary_folder=str(tmp_path),
        host="http://127.0.0.1",
        port=port,
        api_path=api_path,
        databases={},
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("api_path", ["", "/api", "api"])
def test_from_environment_decodes_host_port_path_and_token(monkeypatch, tmp_path, api_path):
    _set_env(monkeypatch, tmp_path, 7654, "tok", api_path)
    client = AlgorithmClient.from_environment()
    assert client.url == "http://127.0.0.1:7654" + ("/api" if api_path else "")
    assert client.token == "tok"


def test_missing_environment_says_how_to_run_locally(monkeypatch):
    for name in (contract.HOST, contract.TOKEN_FILE, contract.ENCODED_MARKER):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="LocalNetwork"):
        AlgorithmClient.from_environment()


def test_bad_token_is_an_authentication_error(monkeypatch, tmp_path, proxy):
    _set_env(monkeypatch, tmp_path, proxy.port, "forged")
    with pytest.raises(AuthenticationError, match="container token"):
        AlgorithmClient.from_environment().organization.list()


def test_proxy_errors_become_typed_errors(monkeypatch, tmp_path, proxy):
    _set_env(monkeypatch, tmp_path, proxy.port, "good-token", "/api")
    client = AlgorithmClient.from_environment()
    with pytest.raises(ServerUnavailable):  # the proxy cannot reach its server: 503
        client.organization.list()
    with pytest.raises(NotFound, match="no GET /nowhere"):
        client._request("GET", "/nowhere")


def test_unreachable_proxy_is_server_unavailable():
    client = AlgorithmClient(f"http://127.0.0.1:{free_port()}", token="t", timeout=5)
    with pytest.raises(ServerUnavailable, match="algorithm proxy"):
        client.task.get(1)


def test_task_create_checks_its_input():
    client = AlgorithmClient("http://127.0.0.1:9", token="t")
    with pytest.raises(ValueError, match="method"):
        client.task.create({"kwargs": {}}, organizations=[1])
    with pytest.raises(ValueError, match="at least one"):
        client.task.create({"method": "m"}, organizations=[])


# --- waiting and failures, through a LocalNetwork (same client code, in-memory proxy) ---
@data(1)
def _rows(df):
    if "boom" in df.columns:
        raise RuntimeError("partial exploded")
    return len(df)


@data(1)
def _typed_rows(df):
    if "boom" in df.columns:
        raise RuntimeError("partial exploded")
    return typed({"rows": count(len(df))})


@algorithm_client
def _central(client, organizations=None):
    orgs = organizations or [o["id"] for o in client.organization.list()]
    task = client.task.create({"method": "rows"}, organizations=orgs, name="rows")
    return client.wait_for_results(task["id"], timeout=10)


class _Module:
    __name__ = "local_test_algorithm"
    rows = staticmethod(_rows)
    typed_rows = staticmethod(_typed_rows)
    central = staticmethod(_central)


def test_wait_for_results_returns_one_result_per_organization_in_id_order():
    net = LocalNetwork(
        _Module,
        [pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1, 2, 3]})],
        organization_ids=[7, 3],
        policy=False,  # plain JSON results, released unchecked
    )
    assert net.run("central") == [3, 1]
    assert net.run("central", kwargs={"organizations": [7]}) == [1]


def test_failed_subtask_raises_task_failed_naming_the_organization():
    net = LocalNetwork(
        _Module, [pd.DataFrame({"a": [1]}), pd.DataFrame({"boom": [1]})], policy=False
    )
    with pytest.raises(
        TaskFailed, match=r"1 of 2.*organization 1: crashed \(RuntimeError: partial exploded\)"
    ):
        net.run("central")
    with pytest.raises(NotFound, match="not in this local network"):
        net.run("central", organization=5)


def _subtask(net, method, organizations):
    client = net.client()
    task = client.task.create({"method": method}, organizations=organizations)
    return client, task["id"]


def test_a_refused_subtask_raises_disclosure_refused_naming_the_organization_and_rule():
    frames = [pd.DataFrame({"a": range(9)}), pd.DataFrame({"a": [1, 2]})]
    net = LocalNetwork(_Module, frames, organization_ids=[7, 3])
    client, task_id = _subtask(net, "typed_rows", [7, 3])
    assert [r["status"] for r in net.tasks[task_id]["runs"]] == ["completed", "completed"]
    rows = client.wait_for_result_rows(task_id)
    assert [(r["organization_id"], r["result"]["value"]["rows"]) for r in rows] == [
        (3, {"@type": "suppressed", "rule": "min_count", "threshold": 5}),
        (7, {"@type": "count", "n": 9}),
    ]
    client, task_id = _subtask(net, "rows", [7, 3])  # plain JSON: both nodes refuse it
    with pytest.raises(DisclosureRefused, match="organization.s. 3, 7") as caught:
        client.wait_for_results(task_id)
    assert (caught.value.organization, caught.value.rule, caught.value.threshold) == (
        "3",
        "untyped",
        None,
    )
    assert isinstance(caught.value, TaskFailed)


def test_a_refusal_next_to_a_crash_is_a_task_failure():
    frames = [pd.DataFrame({"a": [1]}), pd.DataFrame({"boom": [1]})]
    client, task_id = _subtask(LocalNetwork(_Module, frames), "rows", [0, 1])
    with pytest.raises(TaskFailed, match="failed at 2 of 2") as caught:
        client.wait_for_results(task_id)
    assert not isinstance(caught.value, DisclosureRefused)
    assert any("refused" in why for why in caught.value.errors.values())
