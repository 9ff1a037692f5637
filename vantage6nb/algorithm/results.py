"""Typed results: values that say what they release, so the node can check them before they leave.

An algorithm returns ``typed(tree)``; the wrapper writes ``{"v6nb.result": 1, "value": tree}``.
Inside the tree, numbers travel only in typed values (dicts with ``"@type"``) made here::

    from vantage6nb.algorithm import data, federated
    from vantage6nb.algorithm.results import count, moments, typed

    @federated
    @data(1)
    def partial(df, column):
        values = df[column].dropna()
        return typed({"stats": moments(values, column=column, missing=len(df) - len(values)),
                      "rows": count(len(df))})

The node checks each value against its disclosure policy (small counts, dominance, extremes, ...) and
may replace one with a ``suppressed`` value or refuse the whole run; a central method reads what
was released with :func:`unwrap`, :func:`is_suppressed` and :func:`count_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..common.disclosure import RESULT_MARKER, TYPE_KEY

__all__ = [
    "TypedResult",
    "count",
    "count_of",
    "count_table",
    "estimates",
    "is_suppressed",
    "is_typed_value",
    "moments",
    "pooled_moments",
    "refusal",
    "suppressed",
    "typed",
    "unwrap",
]

# how many of the largest absolute values a moments value carries as evidence (dominance, p-percent)
EVIDENCE_TOP = 10  # a node's dominance rule may look at up to this many


@dataclass(frozen=True)
class TypedResult:
    """A method's typed result; the wrapper writes it as ``{"v6nb.result": 1, "value": value}``."""

    value: Any

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the node receives, marker key first."""
        return {RESULT_MARKER: 1, "value": self.value}


def typed(value: Any) -> TypedResult:
    """Mark ``value`` (a JSON tree of typed values, names and labels) as a typed result.

    Examples
    --------
    >>> typed({"rows": count(12)}).to_wire()
    {'v6nb.result': 1, 'value': {'rows': {'@type': 'count', 'n': 12}}}
    """
    return TypedResult(value)


def count(n: Any) -> dict[str, Any]:
    """A count of records: released when 0 or at least the node's ``min_count``.

    Examples
    --------
    >>> count(7)
    {'@type': 'count', 'n': 7}
    """
    return {TYPE_KEY: "count", "n": _whole(n, "count")}


def count_table(
    names: Sequence[str], cells: Iterable[Sequence[Any]], total: int | None = None
) -> dict[str, Any]:
    """A contingency table: ``cells`` are ``[k1, ..., kd, n]`` rows, one key per name in ``names``.

    Zero cells are left out (a missing cell means 0). Keys are category labels (numpy scalars
    become Python values); ``total`` is the number of records behind the table, when known. An
    ``n`` of None is a cell a node withheld: only in a table an entry point pooled from parts.

    Examples
    --------
    >>> count_table(["species", "island"], [["Adelie", "Dream", 56], ["Gentoo", "Biscoe", 0]])
    {'@type': 'count_table', 'names': ['species', 'island'], 'cells': [['Adelie', 'Dream', 56]]}
    """
    names = [str(n) for n in names]
    if not names:
        raise ValueError("count_table needs at least one dimension name")
    rows = []
    for cell in cells:
        cell = list(cell)
        if len(cell) != len(names) + 1:
            raise ValueError(
                f"a count_table cell is [key per name ({len(names)}), n], got {cell!r}"
            )
        n = None if cell[-1] is None else _whole(cell[-1], "count_table cell")
        if n != 0:
            rows.append([_plain(k) for k in cell[:-1]] + [n])
    out: dict[str, Any] = {TYPE_KEY: "count_table", "names": names, "cells": rows}
    if total is not None:
        out["total"] = _whole(total, "count_table total")
    return out


def moments(values: Any, *, column: str | None = None, missing: int = 0) -> dict[str, Any]:
    """Count, mean, M2 (sum of squared deviations), min and max of ``values``, with their evidence.

    ``values`` are a column's non-null values (numpy array, pandas Series or list); nulls still in
    it are counted as missing. The mean carries a sub-ulp ``mean_correction`` so that pooling
    (:func:`vantage6nb.algorithms.summary.combine`) stays exact to rounding far from 0. The
    ``evidence`` (sum of absolute values and the largest ones) lets the node apply its dominance
    and p-percent rules; the node always removes it before release.

    Examples
    --------
    >>> m = moments([1.0, 2.0, 6.0], column="x", missing=1)
    >>> m["count"], m["mean"], m["m2"], m["min"], m["max"], m["evidence"]
    (3, 3.0, 14.0, 1.0, 6.0, {'abs_sum': 9.0, 'top': [6.0, 2.0, 1.0]})
    """
    import numpy as np

    arr = values.to_numpy(dtype="float64") if hasattr(values, "to_numpy") else values
    arr = np.asarray(arr, dtype="float64").ravel()
    nulls = np.isnan(arr)
    if nulls.any():
        arr = arr[~nulls]
    n = int(arr.size)
    out: dict[str, Any] = {TYPE_KEY: "moments"}
    if column is not None:
        out["column"] = str(column)
    mean = float(arr.mean()) if n else None
    # the rounded mean is off by up to an ulp; the correction (sub-ulp) keeps the pooled mean and
    # std exact to rounding even for data far from 0 (Chan's update amplifies that error)
    dev = arr - mean if n else arr
    correction = float(dev.sum() / n) if n else 0.0
    top = np.sort(np.abs(arr))[::-1][:EVIDENCE_TOP]
    out.update(
        count=n,
        missing=_whole(missing, "missing") + int(nulls.sum()),
        mean=mean,
        mean_correction=correction,
        m2=float((dev**2).sum() - n * correction * correction) if n else 0.0,
        min=float(arr.min()) if n else None,
        max=float(arr.max()) if n else None,
        evidence={"abs_sum": float(np.abs(arr).sum()), "top": [float(v) for v in top]},
    )
    return out


def pooled_moments(
    *,
    count: int,
    missing: int | None,
    mean: float | None,
    m2: float,
    min: float | None = None,
    max: float | None = None,
    column: str | None = None,
) -> dict[str, Any]:
    """A moments value pooled from released (checked) parts, without evidence: for an entry point.

    Examples
    --------
    >>> pooled_moments(count=10, missing=0, mean=2.5, m2=4.0)["@type"]
    'moments'
    """
    out: dict[str, Any] = {TYPE_KEY: "moments"}
    if column is not None:
        out["column"] = str(column)
    out.update(
        count=_whole(count, "count"),
        missing=None if missing is None else _whole(missing, "missing"),
        mean=None if mean is None else float(mean),
        m2=float(m2),
        min=None if min is None else float(min),
        max=None if max is None else float(max),
    )
    return out


def estimates(values: Any, *, n: int, parameters: int) -> dict[str, Any]:
    """Model estimates (nested numbers) fitted on ``n`` records with ``parameters`` parameters.

    Examples
    --------
    >>> estimates([0.5, -1.25], n=120, parameters=2)
    {'@type': 'estimates', 'values': [0.5, -1.25], 'n': 120, 'parameters': 2}
    """
    return {
        TYPE_KEY: "estimates",
        "values": _plain(values),
        "n": _whole(n, "n"),
        "parameters": _whole(parameters, "parameters"),
    }


def suppressed(
    rule: str,
    threshold: float | int | None = None,
    what: str = "",
    *,
    organizations: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A value withheld under ``rule``; ``organizations`` names where, when pooled from parts.

    Examples
    --------
    >>> suppressed("min_count", 5, "column 'x'")
    {'@type': 'suppressed', 'rule': 'min_count', 'threshold': 5, 'what': "column 'x'"}
    """
    out: dict[str, Any] = {TYPE_KEY: "suppressed", "rule": str(rule), "threshold": threshold}
    out["what"] = str(what)
    if organizations is not None:
        out["organizations"] = [int(o) for o in organizations]
    return out


def refusal(
    *,
    rule: str,
    threshold: float | int | None = None,
    organization_id: int | None = None,
    columns: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole value of an entry point passing on a part's refusal; the node renders the reason.

    Examples
    --------
    >>> refusal(rule="min_count", threshold=5, organization_id=2)["@type"]
    'refusal'
    """
    return {
        TYPE_KEY: "refusal",
        "organization_id": None if organization_id is None else int(organization_id),
        "rule": str(rule),
        "threshold": threshold,
        "columns": [str(c) for c in columns],
    }


def unwrap(result: Any) -> Any:
    """The tree of a typed result (``{"v6nb.result": 1, "value": tree}`` or a TypedResult); other
    values unchanged.

    Examples
    --------
    >>> unwrap({"v6nb.result": 1, "value": {"rows": count(3)}}), unwrap([1])
    ({'rows': {'@type': 'count', 'n': 3}}, [1])
    """
    if isinstance(result, TypedResult):
        return result.value
    if isinstance(result, Mapping) and RESULT_MARKER in result and "value" in result:
        return result["value"]
    return result


def is_typed_value(x: Any, kind: str | None = None) -> bool:
    """Whether ``x`` is a typed value (of ``@type`` ``kind``, when given).

    Examples
    --------
    >>> is_typed_value(count(3), "count"), is_typed_value({"n": 3})
    (True, False)
    """
    return isinstance(x, Mapping) and TYPE_KEY in x and (kind is None or x[TYPE_KEY] == kind)


def is_suppressed(x: Any) -> bool:
    """Whether the node (or a central) withheld ``x``.

    Examples
    --------
    >>> is_suppressed(suppressed("min_count", 5)), is_suppressed(count(3))
    (True, False)
    """
    return is_typed_value(x, "suppressed")


def count_of(x: Any) -> int | None:
    """The ``n`` of a released count (a plain int is taken as it is); None when suppressed.

    Examples
    --------
    >>> count_of(count(4)), count_of(4), count_of(suppressed("min_count", 5))
    (4, 4, None)
    """
    if is_typed_value(x, "count"):
        return None if x.get("n") is None else int(x["n"])
    if is_suppressed(x) or x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a count, got {str(x)[:80]}")
    return int(x)


def _whole(n: Any, what: str) -> int:
    if isinstance(n, bool):
        raise TypeError(f"{what} must be a whole number, got {n!r}")
    value = n.item() if hasattr(n, "item") else n
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, got {n!r}")
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
