"""Runs a node's disclosure policy refused: the status through the server, DisclosureRefused out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.client.test_round_trip_requests import NodeAgent
from vantage6nb import Client, errors
from vantage6nb.common.disclosure import Refusal
from vantage6nb.common.errors import error_from_payload

WAIT_S = 20.0
WHAT = "a cell of species x island is below this node's minimum of 5 records"
REASON = Refusal("min_count", 5, WHAT).reason()


@pytest.fixture
def nodes(network: dict[str, Any]) -> dict[str, NodeAgent]:
    return {
        name: NodeAgent(network["url"], node["api_key"]) for name, node in network["nodes"].items()
    }


def _runs(task: Any) -> dict[str, int]:
    names = task.organization_names()
    return {names[int(r["organization_id"])]: int(r["id"]) for r in task.runs}


def _refuse(node: NodeAgent, run_id: int, reason: str = REASON) -> None:
    node.patch(run_id, {"status": "initializing"})
    node.patch(run_id, {"status": "active"})
    run = node.patch(
        run_id, {"status": "refused", "reason": reason, "finished_at": "2024-05-01T10:02:11Z"}
    )
    assert run["status"] == "refused"


def test_a_refusal_raises_disclosure_refused_naming_the_organization(
    client: Client, nodes: dict[str, NodeAgent]
) -> None:
    task = client.task.create(image="v6nb/crosstab", method="crosstab", name="refused")
    runs = _runs(task)
    _refuse(nodes["Leiden"], runs["Leiden"])
    nodes["Utrecht"].complete(runs["Utrecht"], {"n": 7})  # the other one released its result
    with pytest.raises(errors.DisclosureRefused) as info:
        task.wait(timeout=WAIT_S, progress=False)
    exc = info.value
    assert isinstance(exc, errors.TaskFailed) and exc.status == 403
    assert (exc.organization, exc.rule, exc.threshold, exc.what) == ("Leiden", "min_count", 5, WHAT)
    msg = str(exc)
    assert "refused by the disclosure policy of Leiden" in msg
    assert f"Leiden: refused — {REASON}" in msg and "Utrecht" not in msg.splitlines()[1]
    assert "coarser groups" in msg  # what to do next, for the rule that refused
    assert exc.errors["failed_runs"] == [runs["Leiden"]]
    # the status as the researcher reads it, and results of a fresh handle raise the same
    status = task.status().set_index("organization")
    assert status.loc["Leiden", "status"] == "refused"
    assert status.loc["Leiden", "reason"] == REASON
    with pytest.raises(errors.DisclosureRefused):
        client.task.get(task.id).results()
    assert task.wait(timeout=WAIT_S, raise_on_failure=False).results_by_organization() == {
        "Leiden": None,
        "Utrecht": {"n": 7},
    }
    listed = client.task.list().set_index("id")
    # a task's derived status, as its monitor shows it (common.schemas.task_status)
    assert listed.loc[task.id, "status"] == "refused"


def test_the_error_survives_the_wire(client: Client, nodes: dict[str, NodeAgent]) -> None:
    task = client.task.create(image="v6nb/crosstab", method="crosstab", organizations=["Utrecht"])
    _refuse(nodes["Utrecht"], _runs(task)["Utrecht"])
    with pytest.raises(errors.DisclosureRefused) as info:
        task.wait(timeout=WAIT_S, progress=False)
    exc = info.value
    back = error_from_payload(exc.status, json.loads(json.dumps(exc.to_dict())))
    assert type(back) is errors.DisclosureRefused and back.msg == exc.msg
    assert (back.organization, back.rule, back.threshold, back.what) == (
        "Utrecht",
        "min_count",
        5,
        WHAT,
    )
    assert back.errors == exc.errors and str(back) == str(exc)


def test_a_passed_on_refusal_names_the_refusing_part(
    client: Client, nodes: dict[str, NodeAgent], network: dict[str, Any]
) -> None:
    # Leiden's entry point passed on Utrecht's refusal: Utrecht is the organization to ask
    utrecht = network["orgs"]["Utrecht"]["id"]
    reason = Refusal("max_levels", 40, "a column has too many levels", str(utrecht)).reason()
    task = client.task.create(image="v6nb/crosstab", method="crosstab", organizations=["Leiden"])
    _refuse(nodes["Leiden"], _runs(task)["Leiden"], reason)
    with pytest.raises(errors.DisclosureRefused) as info:
        task.wait(timeout=WAIT_S, progress=False)
    assert info.value.organization == "Utrecht" and info.value.rule == "max_levels"
    assert "refused by the disclosure policy of Utrecht" in str(info.value)
    assert "fewer levels" in str(info.value)


def test_a_refusal_among_other_failures_is_a_task_failed_listing_all(
    client: Client, nodes: dict[str, NodeAgent]
) -> None:
    task = client.task.create(image="v6nb/crosstab", method="crosstab", name="mixed")
    runs = _runs(task)
    _refuse(nodes["Leiden"], runs["Leiden"])
    nodes["Utrecht"].patch(runs["Utrecht"], {"status": "crashed", "reason": "exit code 1"})
    with pytest.raises(errors.TaskFailed) as info:
        task.wait(timeout=WAIT_S, progress=False)
    assert type(info.value) is errors.TaskFailed  # not every failure was a refusal
    msg = str(info.value)
    assert f"Leiden: refused — {REASON}" in msg and "Utrecht: crashed — exit code 1" in msg
    assert sorted(info.value.errors["failed_runs"]) == sorted(runs.values())
