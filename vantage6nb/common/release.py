"""The node's check of an algorithm's output against its disclosure policy, before any encryption.

:func:`check_output` takes the bytes an algorithm wrote and returns what may leave the node: the
typed values checked (and, where the policy says so, suppressed), the evidence they carried for
the check removed, or a :class:`~vantage6nb.common.disclosure.Refusal` when nothing may leave.
The node does this, not the algorithm: the check runs after the algorithm ended.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .disclosure import RESULT_MARKER, TYPE_KEY, DisclosurePolicy, Refusal
from .images import image_matches

__all__ = ["Release", "check_output", "check_request", "is_typed"]

_PREFIX = b'{"' + RESULT_MARKER.encode() + b'":'
_MAX_DETAILS = 20  # decisions with a location kept per run for the audit log


@dataclass
class Release:
    """What a node may release of one output: ``data`` (None when refused) or ``refusal``;
    ``decisions`` summarises each rule's outcomes and ``columns`` names the columns the typed
    values declare, for the audit log."""

    data: bytes | None
    refusal: Refusal | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.what)
        self.refusal = refusal


def is_typed(head: bytes) -> bool:
    """Whether an output (its first bytes suffice) is a typed result.

    Examples
    --------
    >>> is_typed(b' {"v6nb.result": 1, "value": 3}'), is_typed(b'{"n": 3}')
    (True, False)
    """
    return head.lstrip()[: len(_PREFIX)] == _PREFIX


def check_request(asked: bytes, policy: DisclosurePolicy) -> Refusal | None:
    """Refuse a request that names a denied column (any string of the input equal to one).

    Examples
    --------
    >>> policy = DisclosurePolicy(denied_columns=("ssn",))
    >>> check_request(b'{"method": "summary", "kwargs": {"columns": ["ssn"]}}', policy).rule
    'denied_column'
    """
    if not policy.enabled or not policy.denied_columns:
        return None
    for name in policy.denied_columns:
        if json.dumps(name).encode() in asked:
            return Refusal(
                "denied_column",
                None,
                f"the request names column {name!r}, which this node's policy denies",
            )
    return None


def check_output(
    data: bytes,
    policy: DisclosurePolicy,
    *,
    image: str,
    entry_point: bool = False,
    asked: bytes = b"",
) -> Release:
    """Check an algorithm's output ``data`` against ``policy``; return what may be released.

    ``image`` is the run's image (for the trust of untyped output), ``entry_point`` whether the
    run is an entry point (its values are pooled from parts that were checked where they were
    computed), ``asked`` the run's input (a name occurs in a refusal only when the researcher
    asked for it).

    Examples
    --------
    >>> out = b'{"v6nb.result": 1, "value": {"rows": {"@type": "count", "n": 3}}}'
    >>> release = check_output(out, DisclosurePolicy(), image="v6nb/summary")
    >>> release.data
    b'{"v6nb.result": 1, "value": {"rows": {"@type": "suppressed", "rule": "min_count", "threshold": 5}}}'
    >>> check_output(b'{"n": 3}', DisclosurePolicy(), image="x/y").refusal.rule
    'untyped'
    """
    if not policy.enabled:
        return Release(data, decisions=[{"rule": "disabled", "outcome": "unchecked"}])
    if not is_typed(data[:64]):
        if image_matches(image, policy.untyped_images):
            return Release(data, decisions=[{"rule": "untyped", "outcome": "trusted"}])
        return Release(
            None,
            Refusal(
                "untyped",
                None,
                f"image '{image}' returned an untyped result, which this node releases only for "
                "images its administrator trusts (`disclosure.untyped_images` in node.yaml)",
            ),
            [{"rule": "untyped", "outcome": "refused"}],
        )
    checker = _Checker(policy, entry_point, asked.decode("utf-8", "replace"))
    try:
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise checker.malformed("$", f"not JSON: {exc}") from None
        if not isinstance(document, dict) or set(document) != {RESULT_MARKER, "value"}:
            raise checker.malformed(
                "$", f"a typed result is {{{RESULT_MARKER!r}: 1, 'value': ...}}"
            )
        value = document["value"]
        if isinstance(value, dict) and value.get(TYPE_KEY) == "refusal":
            raise _Refused(checker.passed_on(value))
        released = checker.walk(value, "$")
        if checker.cells_suppressed:
            released = checker.secondary(released, "$")
    except _Refused as refused:
        checker.note(refused.refusal.rule, "refused", refused.refusal.local or refused.refusal.what)
        return Release(None, refused.refusal, checker.decisions(), sorted(checker.columns))
    body = json.dumps({RESULT_MARKER: 1, "value": released}, allow_nan=True)
    return Release(body.encode("utf-8"), None, checker.decisions(), sorted(checker.columns))


class _Checker:
    """One output's walk: the policy, what the researcher asked, and the decisions so far."""

    def __init__(self, policy: DisclosurePolicy, entry_point: bool, asked: str) -> None:
        self.policy = policy
        self.entry_point = entry_point
        self.asked = asked
        self.counts: Counter[tuple[str, str]] = Counter()
        self.details: list[dict[str, Any]] = []
        self.columns: set[str] = set()
        self.cells_suppressed = False  # then no count of the same result may be released

    # -- bookkeeping --------------------------------------------------------------------------
    def note(self, rule: str, outcome: str, where: str = "") -> None:
        self.counts[(rule, outcome)] += 1
        if where and outcome != "passed" and len(self.details) < _MAX_DETAILS:
            self.details.append({"rule": rule, "outcome": outcome, "where": where})

    def decisions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"rule": rule, "outcome": outcome, "count": n}
            for (rule, outcome), n in sorted(self.counts.items())
        ]
        return out + self.details

    def shown(self, name: Any) -> str:
        """A column name as a refusal may show it: only when the request named it."""
        if isinstance(name, str) and json.dumps(name) in self.asked:
            return name
        return "a column"

    def malformed(self, path: str, problem: str) -> _Refused:
        return _Refused(
            Refusal(
                "malformed",
                None,
                "the algorithm's typed result is malformed; its author can check it with "
                "vantage6nb.algorithm.testing",
                local=f"{path}: {problem}",
            )
        )

    def suppressed(self, rule: str, threshold: float | int | None, where: str) -> dict[str, Any]:
        self.note(rule, "suppressed", where)
        return {TYPE_KEY: "suppressed", "rule": rule, "threshold": threshold}

    # -- the walk -------------------------------------------------------------------------------
    def walk(self, node: Any, path: str) -> Any:
        if isinstance(node, dict):
            kind = node.get(TYPE_KEY)
            if kind is None:
                return {k: self.walk(v, f"{path}.{k}") for k, v in node.items()}
            handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise self.malformed(path, f"unknown type {kind!r}")
            return handler(self, node, path)
        if isinstance(node, list):
            return [self.walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if node is None or isinstance(node, str | bool):
            return node
        raise _Refused(
            Refusal(
                "untyped_number",
                None,
                "the result holds a number that is not a typed value (count, table, moments, "
                "estimates), so this node cannot check it",
                local=f"a bare number at {path}",
            )
        )

    def secondary(self, node: Any, path: str) -> Any:
        """Suppress every count next to a table with suppressed cells: a total minus the
        released cells would give a suppressed cell back."""
        if isinstance(node, dict):
            if node.get(TYPE_KEY) == "count":
                return self.suppressed("min_count", self.policy.min_count, f"{path} (secondary)")
            if TYPE_KEY in node:
                return node
            return {k: self.secondary(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [self.secondary(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    def column_rule(self, name: Any, path: str) -> dict[str, Any] | None:
        """A suppression when ``name`` is a column the policy does not release."""
        if not isinstance(name, str):
            return None
        self.columns.add(name)
        if name in self.policy.denied_columns:
            return self.suppressed("denied_column", None, path)
        if self.policy.allowed_columns and name not in self.policy.allowed_columns:
            return self.suppressed("not_allowed_column", None, path)
        return None

    def count(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        n = _whole(node.get("n"))
        if n is None or n < 0:
            raise self.malformed(path, "a count's n is a whole number >= 0")
        if n == 0 and self.policy.zeros == "refuse":  # as a small count: the rule must not say 0
            return self.suppressed("min_count", self.policy.min_count, f"{path} (zero)")
        if 0 < n < self.policy.min_count:
            return self.suppressed("min_count", self.policy.min_count, path)
        self.note("min_count", "passed")
        return {TYPE_KEY: "count", "n": n}

    def count_table(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        names, cells = node.get("names"), node.get("cells")
        if not isinstance(names, list) or not names or not isinstance(cells, list):
            raise self.malformed(path, "a count_table has names (a list) and cells (a list)")
        width = len(names) + 1
        levels: list[set[Any]] = [set() for _ in names]
        records = 0
        for cell in cells:
            if not isinstance(cell, list) or len(cell) != width:
                raise self.malformed(path, f"each cell is [{len(names)} keys..., n]")
            n = _whole(cell[-1])
            if cell[-1] is not None and (n is None or n < 0):
                raise self.malformed(
                    path, "a cell's n is a whole number >= 0 (or null: suppressed)"
                )
            records += n or 0
            for i, key in enumerate(cell[:-1]):
                levels[i].add(
                    key
                    if isinstance(key, str | int | float | bool) or key is None
                    else json.dumps(key)
                )
        label = " x ".join(self.shown(n) for n in names)
        for name, found in zip(names, levels, strict=True):
            if (reason := self.column_rule(name, path)) is not None:
                rule = reason["rule"]
                raise _Refused(
                    Refusal(
                        rule,
                        None,
                        f"the table uses {self.shown(name)}, which this node's policy "
                        + ("denies" if rule == "denied_column" else "does not release"),
                        local=f"{path}: column {name!r}",
                    )
                )
            if len(found) > self.policy.max_levels:
                raise _Refused(
                    Refusal(
                        "max_levels",
                        self.policy.max_levels,
                        f"{self.shown(name)} has more levels than this node releases in a table "
                        f"({self.policy.max_levels}); group its values first",
                        local=f"{path}: {len(found)} levels of {name!r}",
                    )
                )
            if records and len(found) > 1 and len(found) / records > self.policy.levels_density:
                raise _Refused(
                    Refusal(
                        "levels_density",
                        self.policy.levels_density,
                        f"{self.shown(name)} has too many levels for the records behind the table "
                        "(it looks continuous or identifying); group its values first",
                        local=f"{path}: {len(found)} levels over {records} records of {name!r}",
                    )
                )
        self.note("max_levels", "passed")
        if self.policy.zeros == "refuse" and len(cells) < math.prod(len(f) for f in levels):
            raise _Refused(
                Refusal(
                    "zeros",
                    None,
                    f"a table of {label} has empty cells, which this node does not release",
                    local=path,
                )
            )
        out_cells, small = [], 0
        for cell in cells:
            n = cell[-1]
            if n is None:  # suppressed where it was computed (a pooled table passes it on)
                small += 1
                out_cells.append(list(cell))
            elif 0 < n < self.policy.min_count:
                small += 1
                if self.policy.small_cells == "refuse":
                    raise _Refused(
                        Refusal(
                            "min_count",
                            self.policy.min_count,
                            f"a cell of {label} is below this node's minimum of "
                            f"{self.policy.min_count} records; group categories or choose "
                            "other columns",
                            local=f"{path}: cell {cell[:-1]!r}",
                        )
                    )
                out_cells.append([*cell[:-1], None])
            else:
                out_cells.append(list(cell))
        released: dict[str, Any] = {TYPE_KEY: "count_table", "names": names, "cells": out_cells}
        if small:
            self.cells_suppressed = True
            self.note("min_count", "suppressed", f"{path}: {small} cell(s)")
        else:
            self.note("min_count", "passed")
            if _whole(node.get("total")) is not None:  # with a cell suppressed it would undo it
                released["total"] = node["total"]
        return released

    def moments(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        policy = self.policy
        count, missing = _whole(node.get("count")), _whole(node.get("missing", 0))
        if node.get("missing", 0) is None:  # suppressed where it was computed
            missing = None
        elif missing is None or missing < 0:
            raise self.malformed(path, "moments' missing is a whole number >= 0 (or null)")
        if count is None or count < 0:
            raise self.malformed(path, "moments have a whole count >= 0")
        if (rule := self.column_rule(node.get("column"), path)) is not None:
            return rule
        out: dict[str, Any] = {TYPE_KEY: "moments"}
        if "column" in node:
            out["column"] = node["column"]
        out.update(
            count=count,
            missing=missing,
            mean=None,
            m2=0.0,
            mean_correction=0.0,
            min=None,
            max=None,
        )
        if policy.missing == "suppress" and missing is not None and 0 < missing < policy.min_count:
            out["missing"] = None
            self.note("missing", "suppressed", path)
        if count == 0:
            return out
        if count < policy.min_count:
            return self.suppressed("min_count", policy.min_count, path)
        self.note("min_count", "passed")
        evidence = node.get("evidence")
        if isinstance(evidence, dict):
            top = sorted((abs(float(v)) for v in evidence.get("top") or []), reverse=True)
            total = abs(float(evidence.get("abs_sum") or 0.0))
            if len(top) < min(count, max(policy.dominance_n, 2)):  # too little to check with
                return self.suppressed("evidence", None, path)
            if total > 0 and sum(top[: policy.dominance_n]) > policy.dominance_k * total:
                return self.suppressed("dominance", policy.dominance_k, path)
            self.note("dominance", "passed")
            first, second = (top + [0.0, 0.0])[:2]
            if first > 0 and total - first - second < policy.p_percent * first:
                return self.suppressed("p_percent", policy.p_percent, path)
            self.note("p_percent", "passed")
        elif not self.entry_point:
            return self.suppressed("evidence", None, path)
        for key in ("mean", "m2", "mean_correction"):
            value = node.get(key)
            if value is not None and not _is_number(value):
                raise self.malformed(path, f"moments' {key} is a number")
            if value is not None:
                out[key] = float(value)
        for key in ("min", "max"):
            value = node.get(key)
            if value is None:
                continue
            if not _is_number(value):
                raise self.malformed(path, f"moments' {key} is a number")
            if policy.extremes == "allow":
                out[key] = value
            elif policy.extremes == "round":
                out[key] = _significant(float(value), policy.extremes_digits)
                self.note("extremes", "rounded")
            else:
                self.note("extremes", "withheld")
        return out

    def estimates(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        n, parameters = _whole(node.get("n")), _whole(node.get("parameters"))
        if n is None or parameters is None or n < 0 or parameters < 0:
            raise self.malformed(path, "estimates have whole n and parameters")
        if n < self.policy.min_count:
            return self.suppressed("min_count", self.policy.min_count, path)
        if parameters > self.policy.glm_ratio * n:
            return self.suppressed("estimates", self.policy.glm_ratio, path)
        _numbers_only(node.get("values"), self, path)
        self.note("estimates", "passed")
        return {
            TYPE_KEY: "estimates",
            "values": node.get("values"),
            "n": n,
            "parameters": parameters,
        }

    def suppressed_value(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """A value an algorithm passes on as suppressed (a pooled one): normalised, nothing added."""
        out: dict[str, Any] = {
            TYPE_KEY: "suppressed",
            "rule": str(node.get("rule") or "unknown")[:40],
        }
        threshold = node.get("threshold")
        out["threshold"] = threshold if _is_number(threshold) else None
        orgs = node.get("organizations")
        if isinstance(orgs, list) and all(_whole(o) is not None for o in orgs):
            out["organizations"] = orgs
        self.note("suppressed", "passed on")
        return out

    def passed_on(self, node: dict[str, Any]) -> Refusal:
        """An entry point passing on a part's refusal: the reason is rendered here, from fields."""
        org = _whole(node.get("organization_id"))
        rule = node.get("rule")
        rule = (
            rule if isinstance(rule, str) and rule.isidentifier() and len(rule) <= 40 else "unknown"
        )
        threshold = node.get("threshold")
        columns = [c for c in node.get("columns") or [] if isinstance(c, str)]
        shown = [self.shown(c) for c in columns if self.shown(c) != "a column"]
        on = f" on {' x '.join(shown)}" if shown else ""
        return Refusal(
            rule,
            threshold if _is_number(threshold) else None,
            f"a part of this analysis was refused by a data station{on}; see that run's reason",
            None if org is None else str(org),
        )


_HANDLERS = {
    "count": _Checker.count,
    "count_table": _Checker.count_table,
    "estimates": _Checker.estimates,
    "moments": _Checker.moments,
    "suppressed": _Checker.suppressed_value,
}


def _numbers_only(node: Any, checker: _Checker, path: str) -> None:
    """Estimates hold numbers (and names, lists, null): no typed values, nothing else."""
    if isinstance(node, dict):
        if TYPE_KEY in node:
            raise checker.malformed(path, "estimates' values hold no typed values")
        for k, v in node.items():
            _numbers_only(v, checker, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _numbers_only(v, checker, f"{path}[{i}]")


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (0 and non-finite values unchanged)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, max(0, digits) - 1 - math.floor(math.log10(abs(value))))
