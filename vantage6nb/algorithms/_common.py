"""Helpers the shipped algorithms share: running a partial everywhere, reading what each part released."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vantage6nb.algorithm import AlgorithmClient
from vantage6nb.algorithm.results import count, count_of, suppressed, unwrap
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import DisclosureRefused, ValidationError

__all__ = ["Part", "only_result", "pool_rows", "run_partials", "withheld"]

# subtasks of a shipped algorithm should not wait forever on a node that never answers
PARTIAL_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Part:
    """What one organization's node released of a partial (the typed-result marker removed)."""

    organization_id: int
    value: Any


def run_partials(
    client: AlgorithmClient,
    method: str,
    kwargs: dict[str, Any],
    organizations: Sequence[int] | None,
    *,
    name: str,
    columns: Sequence[str] = (),
) -> list[Part]:
    """Run ``method`` at ``organizations`` (default: every organization of the collaboration).

    A part refused by its node raises :class:`DisclosureRefused` naming ``columns`` (what the
    researcher asked about), for the wrapper to pass on as this run's refusal.
    """
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
        organizations = list(dict.fromkeys(organizations))
    if not organizations:
        raise ValidationError(
            "No organizations to run at: give at least one organization id.",
            errors={"organizations": "empty"},
        )
    task = client.task.create({"method": method, "kwargs": kwargs}, organizations, name=name)
    try:
        rows = client.wait_for_result_rows(task["id"], timeout=PARTIAL_TIMEOUT_S)
    except DisclosureRefused as exc:
        if columns and "columns" not in exc.errors:
            exc.errors["columns"] = list(columns)
        raise
    return [Part(int(r["organization_id"]), unwrap(r.get("result"))) for r in rows]


def only_result(results: Any) -> Any:
    """The pooled answer of a task's results: a central method runs at one organization, so its
    one result is it; anything else (one result per organization) is returned as it is. The
    typed-result marker is removed.

    Examples
    --------
    >>> only_result([{"n": 3}]), only_result([1, 2]), only_result({"v6nb.result": 1, "value": {"n": 3}})
    ({'n': 3}, [1, 2], {'n': 3})
    """
    one = results[0] if isinstance(results, list) and len(results) == 1 else results
    return unwrap(one)


def pool_rows(parts: Sequence[Part]) -> dict[str, Any]:
    """The pooled ``rows`` count of the parts, or a suppressed value when a node withheld its own.

    Examples
    --------
    >>> pool_rows([Part(1, {"rows": count(6)}), Part(2, {"rows": count(9)})])
    {'@type': 'count', 'n': 15}
    """
    rows = [(p.organization_id, p.value.get("rows")) for p in parts]
    hidden = [(org, r) for org, r in rows if count_of(r) is None]
    if hidden:
        return withheld(hidden, "the number of rows")
    return count(sum(count_of(r) or 0 for _, r in rows))


def withheld(found: list[tuple[int, Any]], what: str) -> dict[str, Any]:
    """One suppressed value for the pooled ``what``, naming every organization that withheld it.

    ``found`` holds ``(organization id, that part's suppressed value)``; the rule (and threshold,
    when every part names the same rule) is the first part's.

    Examples
    --------
    >>> withheld([(2, suppressed("min_count", 5))], "column 'x'")["organizations"]
    [2]
    """
    first = found[0][1] if isinstance(found[0][1], Mapping) else {}
    rules = list(dict.fromkeys(str(s.get("rule")) for _, s in found if isinstance(s, Mapping)))
    detail = "; ".join(
        f"organization {org}: {describe_suppressed(s) if isinstance(s, Mapping) else s}"
        for org, s in found
    )
    return suppressed(
        str(first.get("rule") or "unknown"),
        first.get("threshold") if len(rules) == 1 else None,
        f"{what} ({detail})",
        organizations=[org for org, _ in found],
    )
