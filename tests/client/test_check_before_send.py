"""On the session's demo network: a typo'd method, keyword, type or column is refused before any
task exists (counted through the API before and after)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.waiting import wait_for
from vantage6nb import analysis
from vantage6nb.client._validate import TaskCheckFailed
from vantage6nb.common.errors import ValidationError

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def client(shared_demo_net):
    c = shared_demo_net.client()
    yield c
    c.close()


def _task_count(client: Any) -> int:
    return len(client.task.list())


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            {"method": "sumary", "kwargs": {"columns": ["bill_length_mm"]}},
            ["no method 'sumary'; did you mean 'summary'?", "Choose one of: summary."],
        ),
        (
            {"method": "summary", "kwargs": {"colums": ["bill_length_mm"]}},
            ["no argument 'colums'; did you mean 'columns'?", "Its arguments: columns"],
        ),
        (
            {"method": "summary", "kwargs": {"columns": 3}},
            ["argument 'columns' (column_list): expected a list of column names, got int 3"],
        ),
    ],
    ids=["method", "keyword", "type"],
)
def test_typos_are_refused_before_a_task_exists(client, call, expected):
    before = _task_count(client)
    with pytest.raises(TaskCheckFailed) as err:
        client.task.create(image="v6nb/summary", databases=["default"], **call)
    for part in expected:
        assert part in str(err.value)
    assert _task_count(client) == before


def _columns_reported(client: Any) -> bool:
    frame = client.columns()
    return set(frame["organization"]) >= {"Leiden"} and "bill_length_mm" in set(frame["column"])


def test_a_typod_column_is_refused_with_the_close_match(client):
    if not hasattr(client, "columns"):
        pytest.skip("client.columns() is not in this tree yet")
    # nodes report their columns at start: wait for the reports (not a speed check)
    wait_for(lambda: _columns_reported(client), timeout=60, what="column reports")
    before = _task_count(client)
    with pytest.raises(TaskCheckFailed) as err:
        client.task.create(
            image="v6nb/summary", method="summary", kwargs={"columns": ["bill_lenght_mm"]}
        )
    text = str(err.value)
    assert "column 'bill_lenght_mm' (argument 'columns') is not in the data" in text
    assert "did you mean 'bill_length_mm'?" in text and "Columns: " in text
    # the analysis helpers go through the same check
    with pytest.raises(ValidationError, match="did you mean 'species'"):
        analysis.crosstab(client, "specie", "island")
    assert _task_count(client) == before
