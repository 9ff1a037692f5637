"""What the statistics pack's algorithms share: category labels, strata, pooled moments, lenient parts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient
from vantage6nb.algorithm.results import (
    count_of,
    is_suppressed,
    is_typed_value,
    moments,
    pooled_moments,
    suppressed,
)
from vantage6nb.common.errors import DisclosureRefused, ValidationError

from ._common import Part, category_label, label_identity, run_partials, withheld
from .summary import combine

__all__ = [
    "category_label",
    "check_column",
    "check_columns",
    "label_key",
    "label_of",
    "pool_moments",
    "run_lenient",
    "strata",
    "stratum_moments",
]


def label_key(label: Any) -> str:
    """The key of a label in a result's mapping: its identity, the JSON text (``1`` and ``True``
    stay apart); labels are :func:`~vantage6nb.algorithms._common.category_label`'s.

    Examples
    --------
    >>> label_key(1), label_key("a"), label_of(label_key(True))
    ('1', '"a"', True)
    """
    return label_identity(label)


def label_of(key: str) -> Any:
    """The label behind a :func:`label_key`."""
    return json.loads(key)


def strata(df: Any, group: str | None) -> tuple[list[tuple[str, Any]], int]:
    """``([(key, rows of that group)], rows with no group)``; one stratum ``"null"`` without a group.

    Groups are sorted by label (numbers before text); rows whose group is missing are left out
    (as pandas ``groupby`` does) and counted.
    """
    if group is None:
        return [(label_key(None), df)], 0
    labels = df[group].map(category_label)
    present = labels.notna()
    keys = labels[present].map(label_key)
    out = []
    for key in sorted(set(keys), key=lambda k: _order(label_of(k))):
        out.append((key, df[present][keys == key]))
    return out, int((~present).sum())


def stratum_moments(df: Any, column: str) -> dict[str, Any]:
    """The typed ``moments`` of a numeric column in these rows (nulls counted as missing)."""
    values = df[column].dropna()
    return moments(values, column=column, missing=int(len(df) - len(values)))


def pool_moments(name: str, found: Sequence[tuple[int, Any]]) -> dict[str, Any]:
    """Pool ``(organization id, moments or None)`` of one column; a suppressed part suppresses it.

    Examples
    --------
    >>> from vantage6nb.algorithm.results import moments
    >>> pool_moments("x", [(1, moments([1.0, 2.0])), (2, moments([3.0]))])["mean"]
    2.0
    """
    hidden = [(org, m) for org, m in found if is_suppressed(m)]
    if hidden:
        return withheld(hidden, f"column '{name}'")
    no_missing = [org for org, m in found if m is not None and m.get("missing") is None]
    if no_missing:
        marks = [(org, suppressed("missing", None, "its missing count")) for org in no_missing]
        return withheld(marks, f"the missing count of column '{name}'")
    stats = [m for _, m in found if m is not None]
    if not stats:
        return pooled_moments(column=name, count=0, missing=0, mean=None, m2=0.0)
    return pooled_moments(column=name, **combine(stats))


def run_lenient(
    client: AlgorithmClient,
    method: str,
    kwargs: dict[str, Any],
    organizations: Sequence[int],
    *,
    name: str,
    what: str,
) -> tuple[list[Part] | None, dict[str, Any] | None]:
    """Run a part whose refusal should not sink the analysis: ``(parts, None)`` or ``(None,
    suppressed value naming the refusing organizations)``."""
    try:
        return run_partials(client, method, kwargs, organizations, name=name), None
    except DisclosureRefused as exc:
        orgs = sorted(_refused_organizations(exc))
        return None, suppressed(exc.rule or "unknown", exc.threshold, what, organizations=orgs)


def _refused_organizations(exc: DisclosureRefused) -> list[int]:
    # errors: {"organization 2, 3": "refused (...)", ...}: the organizations whose runs were refused
    found: list[int] = []
    for key, why in (exc.errors or {}).items():
        if key.startswith("organization ") and str(why).startswith("refused"):
            found += [int(o) for o in key[len("organization ") :].split(", ") if o.isdigit()]
    if not found and exc.organization and str(exc.organization).isdigit():
        found.append(int(exc.organization))
    return found


def check_column(value: Any, what: str, *, optional: bool = False) -> str | None:
    """A column name argument, checked: a non-empty string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{what} must be a column name (a non-empty string), got {value!r}.",
            errors={what: "expected a column name"},
        )
    return value


def check_columns(value: Any, what: str = "columns") -> list[str] | None:
    """A list of column names (a single name is a list of one), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(c, str) and c for c in value)
    ):
        raise ValidationError(
            f"{what} must be a column name or a non-empty list of column names.",
            errors={what: "expected a list of str"},
        )
    return list(dict.fromkeys(value))


def need_columns(df: Any, names: Sequence[str]) -> None:
    """Raise naming the columns this node's data lacks (and the ones it has)."""
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValidationError(
            f"Column(s) {', '.join(repr(m) for m in missing)} not in this node's data; it has "
            f"{', '.join(map(str, df.columns)) or 'no columns'}.",
            errors={"columns": missing},
        )


def is_numeric(series: Any) -> bool:
    """Whether a column is numeric for statistics (booleans are categories)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(series) and not is_bool_dtype(series))


def numeric_values(series: Any, column: str) -> Any:
    """The column as float64, or a ValidationError naming the column and its type."""
    if not is_numeric(series):
        raise ValidationError(
            f"Column '{column}' is not numeric here ({series.dtype}); give it numbers at every "
            "node (a decimal comma or text needs converting in the data first).",
            errors={"columns": column, "dtype": str(series.dtype)},
        )
    return series.astype("float64")


def rows_of(value: Any) -> int | None:
    """The released row count of a part (None when withheld)."""
    return count_of(value.get("rows")) if isinstance(value, Mapping) else None


def is_moments(value: Any) -> bool:
    return is_typed_value(value, "moments")


def _order(label: Any) -> tuple[int, Any]:
    if isinstance(label, bool):
        return (0, int(label))
    if isinstance(label, (int, float)):
        return (1, label)
    return (2, str(label))
