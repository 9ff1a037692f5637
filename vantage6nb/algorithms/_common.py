"""Helpers the shipped algorithms share: running a partial everywhere, reading what each part released,
and the types of the nodes' columns (one category label for one value, a column's kind)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vantage6nb.algorithm import AlgorithmClient
from vantage6nb.algorithm.results import count, count_of, suppressed, unwrap
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import DisclosureRefused, ValidationError

__all__ = [
    "NUMERIC_KINDS",
    "Part",
    "category_label",
    "column_kind",
    "describe_kind",
    "label_identity",
    "no_rows_notes",
    "only_result",
    "organization_names",
    "pool_rows",
    "run_partials",
    "store_databases",
    "store_organizations",
    "where_kinds",
    "withheld",
]

#: Column kinds that are numbers as they are (see :func:`column_kind`).
NUMERIC_KINDS = frozenset({"int", "float"})

# decimal text that is exactly a number: "1", "-2", "2.5" (not "01", " 1", "1e3" or "1_000")
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# text a pandas CSV reader would have read as a number: "27.2", "-3", "1e5", ".5"
_DECIMAL_POINT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]+(,[0-9]+)?")

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


def organization_names(client: AlgorithmClient) -> Callable[[int], str]:
    """A lookup of organization names by id (fetched once, when first asked), for messages.

    Examples
    --------
    >>> name = organization_names(client)  # doctest: +SKIP
    >>> name(2)  # doctest: +SKIP
    'Utrecht'
    """
    known: dict[int, str] = {}

    def name(org: int) -> str:
        if not known:
            try:
                known.update(
                    {
                        int(o["id"]): str(o.get("name") or o["id"])
                        for o in client.organization.list()
                    }
                )
            except Exception:  # a message still names the organization, by id
                known[-1] = ""
        return known.get(int(org), f"organization {org}")

    return name


def no_rows_notes(parts: Sequence[Part], name: Callable[[int], str]) -> list[str]:
    """One note per part whose node released a row count of 0: it has no rows to contribute.

    Examples
    --------
    >>> notes = no_rows_notes([Part(1, {"rows": count(0)}), Part(2, {"rows": count(9)})], str)
    >>> len(notes), notes[0][:30]
    (1, '1 has no rows in this database')
    """
    return [
        f"{name(p.organization_id)} has no rows in this database (its node read it, and found no "
        "records): the result is that of the other organizations."
        for p in parts
        if isinstance(p.value, Mapping) and count_of(p.value.get("rows")) == 0
    ]


def category_label(value: Any) -> Any:
    """The label of a category value, the same for the same value in any type; None when missing.

    numpy scalars become Python values, a whole float its int (``1.0`` -> ``1``), and text that is
    exactly a decimal number that number (``"1"`` -> ``1``, ``"2.5"`` -> ``2.5``), so a category
    stored as ``1`` at one node, ``"1"`` at another and ``1.0`` at a third is one category.
    Booleans stay booleans (the crosstab harmonises them with 0/1 over the nodes); other values
    (dates, ...) become their text.

    Examples
    --------
    >>> [category_label(v) for v in (1, "1", 1.0, "01", True, "a", float("nan"), None)]
    [1, 1, 1, '01', True, 'a', None, None]
    """
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):  # not a scalar after all
            return str(value)
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        if _NUMBER_TEXT.fullmatch(value):
            return category_label(float(value) if "." in value else int(value))
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def label_identity(label: Any) -> str:
    """The identity of a category label: its JSON text, so ``1`` and ``True`` are told apart
    (Python's ``1 == True`` would merge them in a dict).

    Examples
    --------
    >>> label_identity(1), label_identity(True), label_identity("1")
    ('1', 'true', '"1"')
    """
    return json.dumps(label)


def column_kind(series: Any) -> dict[str, str]:
    """What a column holds at this node: ``{"kind": ..., "dtype": ...}`` (no values).

    Kinds: ``int``, ``float`` (numbers), ``bool``, ``null`` (no values: every value missing, or
    no rows), ``numeric_text`` (text that is exactly numbers with a decimal point, such as
    ``"27.2"``), ``decimal_comma`` (text of numbers with a decimal comma, such as ``"27,2"``),
    ``text``, ``datetime``, ``category`` and ``mixed`` (values of several types).

    Examples
    --------
    >>> import pandas as pd
    >>> [column_kind(pd.Series(v))["kind"] for v in ([1, 2], [1.5, None], [True], ["27,2"], [])]
    ['int', 'float', 'bool', 'decimal_comma', 'null']
    """
    from pandas import CategoricalDtype
    from pandas.api.types import (
        infer_dtype,
        is_bool_dtype,
        is_datetime64_any_dtype,
        is_float_dtype,
        is_integer_dtype,
        is_numeric_dtype,
        is_timedelta64_dtype,
    )

    dtype = str(series.dtype)
    if isinstance(series.dtype, CategoricalDtype):
        kind = "category"
    elif is_bool_dtype(series.dtype):
        kind = "bool"
    elif is_integer_dtype(series.dtype):
        kind = "int"
    elif is_float_dtype(series.dtype) or is_numeric_dtype(series.dtype):
        kind = "float"
    elif is_datetime64_any_dtype(series.dtype) or is_timedelta64_dtype(series.dtype):
        kind = "datetime"
    else:
        inferred = infer_dtype(series, skipna=True)
        kind = {
            "empty": "null",
            "boolean": "bool",
            "integer": "int",
            "floating": "float",
            "mixed-integer-float": "float",
            "decimal": "float",
            "datetime": "datetime",
            "datetime64": "datetime",
            "date": "datetime",
            "timedelta": "datetime",
            "timedelta64": "datetime",
        }.get(inferred, "text" if inferred == "string" else "mixed")
        if kind == "text":
            values = series.dropna()
            if values.map(lambda v: bool(_DECIMAL_POINT.fullmatch(v))).all():
                kind = "numeric_text"
            elif values.map(lambda v: bool(_DECIMAL_COMMA.fullmatch(v))).all():
                kind = "decimal_comma"
    return {"kind": kind, "dtype": dtype}


_KIND_WORDS = {
    "int": "integers",
    "float": "numbers",
    "bool": "booleans",
    "null": "no values",
    "numeric_text": "numbers stored as text",
    "decimal_comma": "text with decimal commas",
    "text": "text",
    "datetime": "dates or times",
    "category": "categories",
    "mixed": "values of mixed types",
}


def describe_kind(kind: Mapping[str, Any] | None) -> str:
    """A column kind in words, with its dtype: ``integers (int64)``.

    Examples
    --------
    >>> describe_kind({"kind": "decimal_comma", "dtype": "object"})
    'text with decimal commas (object)'
    """
    if not kind:
        return "absent"
    words = _KIND_WORDS.get(str(kind.get("kind")), str(kind.get("kind")))
    return f"{words} ({kind.get('dtype')})" if kind.get("dtype") else words


def where_kinds(found: Sequence[tuple[int, Any]], name: Callable[[int], str]) -> str:
    """``(organization id, kind)`` pairs in words, organizations grouped by kind.

    Examples
    --------
    >>> where_kinds([(1, {"kind": "bool", "dtype": "bool"}), (2, {"kind": "bool", "dtype": "bool"}),
    ...              (3, {"kind": "int", "dtype": "int64"})], {1: "A", 2: "B", 3: "C"}.get)
    'booleans (bool) at A and B, integers (int64) at C'
    """
    by_kind: dict[str, list[str]] = {}
    for org, kind in found:
        by_kind.setdefault(describe_kind(kind), []).append(name(org))
    return ", ".join(f"{k} at {' and '.join(orgs)}" for k, orgs in by_kind.items())


# -- store-format metadata (vantage6nb.common.store_metadata): entries every algorithm declares ---


def store_databases() -> list[dict[str, str]]:
    """The store-format ``databases`` of a function that reads the node's default database.

    Examples
    --------
    >>> store_databases()
    [{'name': 'default', 'description': 'The data each node reads.'}]
    """
    return [{"name": "default", "description": "The data each node reads."}]


def store_organizations() -> dict[str, Any]:
    """The store-format ``organizations`` argument of a central function (default: all).

    Examples
    --------
    >>> store_organizations()["type"]
    'organization_list'
    """
    return {
        "name": "organizations",
        "display_name": "Organizations",
        "type": "organization_list",
        "description": "Organizations whose data are pooled (default: all of the collaboration).",
        "has_default_value": True,
        "default_value": None,
    }
