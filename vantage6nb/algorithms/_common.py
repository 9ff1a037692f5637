"""Helpers the shipped algorithms share: running a partial everywhere, the small-cell check, results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient
from vantage6nb.common.errors import PermissionDenied, ValidationError

__all__ = ["check_cell", "only_result", "run_partials"]

# subtasks of a shipped algorithm should not wait forever on a node that never answers
PARTIAL_TIMEOUT_S = 3600.0


def run_partials(
    client: AlgorithmClient,
    method: str,
    kwargs: dict[str, Any],
    organizations: Sequence[int] | None,
    *,
    name: str,
) -> list[Any]:
    """Run ``method`` at ``organizations`` (default: every organization of the collaboration)."""
    if organizations is None:
        organizations = [int(o["id"]) for o in client.organization.list()]
    else:
        if isinstance(organizations, (int, str)) or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in organizations
        ):
            raise ValidationError(
                "organizations must be a list of organization ids, e.g. [1, 2].",
                errors={"organizations": "expected a list of int"},
            )
        organizations = list(organizations)
    if not organizations:
        raise ValidationError(
            "No organizations to run at: give at least one organization id.",
            errors={"organizations": "empty"},
        )
    task = client.task.create({"method": method, "kwargs": kwargs}, organizations, name=name)
    return client.wait_for_results(task["id"], timeout=PARTIAL_TIMEOUT_S)


def check_cell(n: int, threshold: int, what: str) -> None:
    """Refuse to release a count ``0 < n < threshold`` (the node's small-cell policy)."""
    if threshold and 0 < n < threshold:
        raise PermissionDenied(
            f"Refused by this node's small-cell policy: {what} counts {n} record(s), below the "
            f"node's minimum of {threshold}. Pool categories or choose other columns.",
            errors={"min_cell_count": threshold},
        )


def only_result(results: Any) -> Any:
    """The pooled answer of a task's results: a central method runs at one organization, so its
    one result is it; anything else (one result per organization) is returned as it is.

    Examples
    --------
    >>> only_result([{"n": 3}]), only_result([1, 2]), only_result({"n": 3})
    ({'n': 3}, [1, 2], {'n': 3})
    """
    return results[0] if isinstance(results, list) and len(results) == 1 else results
