"""vantage6 algorithms unmodified, process runtime: a vantage6-style package (central plus
partials, @algorithm_client, @data, @metadata, subtasks, vantage6's wrap_algorithm) installed with
the real vantage6-algorithm-tools from PyPI in a venv of its own, on a real demo network, compared
with pandas on the pooled data."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.data.v6_algorithms.tools import AVERAGE_IMAGE, AVERAGE_MODULE, venv_python
from vantage6nb import demo
from vantage6nb.errors import ValidationError

pytestmark = pytest.mark.integration

TIMEOUT = 120


@pytest.fixture(scope="module")
def v6_net():
    python = venv_python()
    with demo.start(
        nodes=3,
        algorithms={AVERAGE_IMAGE: {"module": AVERAGE_MODULE, "python": str(python)}},
        node_settings={"disclosure": {"algorithm_env": {"V6_AVERAGE_MIN_COUNT": "1"}}},
    ) as net:
        yield net


@pytest.fixture(scope="module")
def pooled(v6_net) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in v6_net.datasets.values()], ignore_index=True)


def test_central_with_subtasks_in_vantage6_calling_style(v6_net, pooled):
    client = v6_net.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        collaboration=v6_net.collaboration_id,
        organizations=[orgs[0]],
        name="v6 average",
        image=AVERAGE_IMAGE,
        description="",
        input_={"method": "central_average", "kwargs": {"column": "bill_length_mm"}},
        databases=[{"label": "default"}],
    )
    assert task["id"] == task.get("id") == task.id
    result = task.result(timeout=TIMEOUT)
    column = pooled["bill_length_mm"]
    assert result["average"] == pytest.approx(column.mean(), rel=1e-9)
    assert result["count"] == column.count()
    assert result["organizations"] == result["runs"] == len(orgs)
    assert result["subtask_status"] == "completed"  # GET /task/<id>/status through the proxy
    (sub,) = task.subtasks()
    assert sub.results_frame()["count"].sum() == column.count()
    frame = task.results_frame()
    assert frame.loc[:, "average"].iloc[0] == pytest.approx(column.mean(), rel=1e-9)
    assert frame.attrs["task_id"] == task.id


def test_counts_with_the_operators_algorithm_env(v6_net, pooled):
    client = v6_net.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        organizations=[orgs[1]],
        image=AVERAGE_IMAGE,
        input_={"method": "central_counts", "kwargs": {"column": "species"}},
        databases=[{"label": "default"}],
    )
    expected = pooled["species"].value_counts()
    assert task.result(timeout=TIMEOUT) == {str(k): int(v) for k, v in expected.items()}


def test_partial_sees_a_decoded_environment_and_the_token_identity(v6_net):
    client = v6_net.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        organizations=orgs,
        image=AVERAGE_IMAGE,
        method="env_probe",
        databases=["default"],
    )
    results = task.results(timeout=TIMEOUT)
    for org_id, name, got in zip(orgs, v6_net.node_names, results, strict=True):
        assert got["rows"] == len(pd.read_csv(v6_net.datasets[name]))
        assert got["label"] == "default" and got["uri_exists"] and got["input_file_exists"]
        assert got["task_id"] == task.id and got["organization_id"] == org_id
        assert got["collaboration_id"] == v6_net.collaboration_id and got["node_id"]
        assert got["min_count"] == "1"  # disclosure.algorithm_env, decoded


@pytest.mark.parametrize(
    "given",
    [
        {"input_": {"method": "central_average"}, "method": "central_average"},
        {"input_": {"method": "central_average"}, "kwargs": {"column": "x"}},
        {"input_": {"kwargs": {"column": "x"}}},
        {"input_": ["central_average"]},
    ],
)
def test_vantage6_calling_style_says_what_is_wrong(v6_net, given):
    with pytest.raises(ValidationError, match="input_"):
        v6_net.client().task.create(image=AVERAGE_IMAGE, **given)
