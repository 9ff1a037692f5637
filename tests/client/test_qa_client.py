"""QA regressions: bad task arguments, a bad server URL, and results of a task that failed."""

from __future__ import annotations

from typing import Any

import pytest

from vantage6nb import Client, errors


def test_a_url_without_scheme_is_a_validation_error() -> None:
    with pytest.raises(errors.ValidationError, match="http://127.0.0.1:7601"):
        Client("127.0.0.1:7601")


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


def test_setup_encryption_with_bytes_says_what_to_pass():
    from vantage6nb import Client
    from vantage6nb.errors import ValidationError

    with pytest.raises(ValidationError, match="OrgKey.from_bytes"):
        Client("http://127.0.0.1:9").setup_encryption(b"not a path")
