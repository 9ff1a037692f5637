"""Federated crosstab: the pooled contingency table of two categorical columns.

Each node returns the non-zero cells of ``pandas.crosstab(df[row], df[col], dropna=False)`` (a
missing value is its own category, labelled null, counted like any other; ``dropna=True`` leaves
out the records with a missing value, as ``pandas.crosstab`` does by default) as a typed
``count_table``; its node checks the table (the missing cells too)
against its disclosure policy (small cells, too many levels) and refuses it or nulls small cells.
The central part adds the released tables up; a pooled cell with a withheld part is null.

Image ``v6nb/crosstab``. Run it with :func:`vantage6nb.analysis.crosstab`, or by hand with
``method="crosstab", kwargs={"row": "species", "col": "island"}``, and turn its result into a
table with :func:`crosstab_frame` (on the researcher's side).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_table,
    is_suppressed,
    is_typed_value,
    suppressed,
    typed,
    unwrap,
)
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import ValidationError

from ._common import (
    Part,
    category_label,
    column_kind,
    label_identity,
    no_rows_notes,
    only_result,
    organization_names,
    pool_rows,
    run_partials,
    store_databases,
    store_organizations,
    where_kinds,
)

__all__ = ["crosstab", "crosstab_frame", "crosstab_partial", "value_key"]

# what a column kind is, for telling whether the nodes disagree: int and float do not (pandas
# itself reads an integer column with a missing value as float)
_KIND_CLASS = {"int": "number", "float": "number", "bool": "boolean", "numeric_text": "text"}
_KIND_CLASS.update(decimal_comma="text", text="text", category="text", mixed="text")


@entry_point
@algorithm_client
def crosstab(
    client: AlgorithmClient,
    row: str,
    col: str,
    organizations: Sequence[int] | None = None,
    dropna: bool = False,
) -> Any:
    """Pooled counts of (``row``, ``col``) value pairs over ``organizations`` (default: all).

    A missing value (None, NaN) is a category of its own, labelled null and sorted last, as
    ``pandas.crosstab(..., dropna=False)`` counts it; ``dropna=True`` leaves out the records
    with a missing value instead (``pandas.crosstab``'s default).

    Returns a typed result ``{"row": row, "col": col, "table": count_table, "rows": count,
    "suppressed": [...], "notes": [...]}``. The table's cells are ``[row_value, col_value, n]``
    for the pairs seen somewhere, sorted, with the values as they are (a year stays ``2007``);
    ``n`` is null where a node withheld its small cell of that pair. ``suppressed`` names, per
    rule, the organizations that withheld cells. :func:`crosstab_frame` makes the table (0 for
    pairs seen nowhere).

    One value is one category whatever its type at each node: ``1``, ``"1"`` and ``1.0`` are
    one, and booleans meeting 0/1 integers (a boolean column in SQLite) are one with them.
    ``notes`` says when the nodes' types differed, and names a node that has no rows.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> net = LocalNetwork("vantage6nb.algorithms.crosstab",
    ...                    [pd.DataFrame({"a": ["x"] * 6 + ["y"] * 5, "b": [1] * 11}),
    ...                     pd.DataFrame({"a": ["x"] * 20, "b": [2] * 20})])
    >>> net.run("crosstab", kwargs={"row": "a", "col": "b"})["table"]["cells"]
    [['x', 1, 6], ['x', 2, 20], ['y', 1, 5]]
    """
    _check_names(row, col)
    # dropna is sent only when set, so a node's older image (which always dropped) still runs
    partial_kwargs: dict[str, Any] = {"row": row, "col": col}
    if dropna:
        partial_kwargs["dropna"] = True
    parts = run_partials(
        client,
        "crosstab_partial",
        partial_kwargs,
        organizations,
        name="crosstab (partial)",
        columns=[row, col],
    )
    hidden_tables = [(p.organization_id, _table(p)) for p in parts if is_suppressed(_table(p))]
    out: dict[str, Any] = {"row": row, "col": col}
    withheld: list[dict[str, Any]] = []
    if hidden_tables:
        out["table"] = suppressed(
            str(hidden_tables[0][1].get("rule") or "unknown"),
            hidden_tables[0][1].get("threshold"),
            f"the table {row} x {col}",
            organizations=[org for org, _ in hidden_tables],
        )
    else:
        relabel = [_bools_with_numbers(parts, i) for i in (0, 1)]
        cells: dict[str, list[Any]] = {}  # identity of the labels -> [row label, col label, n]
        nulled: list[int] = []
        for part in parts:
            for r, c, n in _table(part)["cells"]:
                # one label per value: 1, "1" and 1.0 are one category (partials of this version
                # send them so already; an earlier version's may not)
                r, c = (relabel[i](category_label(v)) for i, v in enumerate((r, c)))
                cell = cells.setdefault(label_identity([r, c]), [r, c, 0])
                if n is None:
                    if part.organization_id not in nulled:
                        nulled.append(part.organization_id)
                    cell[2] = None
                elif cell[2] is not None:
                    cell[2] += int(n)
        rows_order = {_identity(v): i for i, v in enumerate(_sorted(c[0] for c in cells.values()))}
        cols_order = {_identity(v): i for i, v in enumerate(_sorted(c[1] for c in cells.values()))}
        ordered = sorted(
            cells.values(),
            key=lambda c: (rows_order[_identity(c[0])], cols_order[_identity(c[1])]),
        )
        out["table"] = count_table([row, col], ordered)
        if nulled:
            withheld.append(
                suppressed("min_count", None, f"cells of {row} x {col}", organizations=nulled)
            )
    name = organization_names(client)
    out["notes"] = [
        *(n for n in (_types_note(parts, i, axis, name) for i, axis in enumerate((row, col))) if n),
        *no_rows_notes(parts, name),
    ]
    out["rows"] = pool_rows(parts)
    out["suppressed"] = withheld
    return typed(out)


@federated
@data(1)
def crosstab_partial(df: Any, row: str, col: str, dropna: bool = False) -> Any:
    """This node's non-zero cells ``[row_value, col_value, n]`` of ``pandas.crosstab``, as a
    ``count_table``, its row ``count``, and what the two columns hold (``kinds``: kind and
    dtype). Labels are category labels (``category_label``): ``1``, ``"1"`` and ``1.0`` are one;
    a missing value is the label null (``dropna=True``: records with one are left out)."""
    import numpy as np

    _check_names(row, col)
    missing = [c for c in (row, col) if c not in df.columns]
    if missing:
        raise ValidationError(
            f"Column(s) {', '.join(repr(m) for m in missing)} not in this node's data; "
            f"it has {', '.join(map(str, df.columns))}.",
            errors={"columns": missing},
        )
    rows, row_labels = _codes(df[row])
    cols, col_labels = _codes(df[col])
    if not dropna:  # missing is a category of its own (label null), counted and checked
        rows, row_labels = _missing_code(rows, row_labels)
        cols, col_labels = _missing_code(cols, col_labels)
    both = (rows >= 0) & (cols >= 0)  # dropna: a pair with a missing value is left out
    counts = np.bincount(
        rows[both] * len(col_labels) + cols[both], minlength=len(row_labels) * len(col_labels)
    )
    cells = [
        [row_labels[i // len(col_labels)], col_labels[i % len(col_labels)], int(n)]
        for i, n in enumerate(counts.tolist())
        if n
    ]
    kinds = {"row": column_kind(df[row]), "col": column_kind(df[col])}
    return typed({"table": count_table([row, col], cells), "rows": count(len(df)), "kinds": kinds})


def _codes(series: Any) -> tuple[Any, list[Any]]:
    """Each value's category code (-1: missing) and the labels by code, one per value in any
    type (:func:`category_label`), so ``1`` and ``"1"`` in one column are one category."""
    import numpy as np
    import pandas as pd

    if series.dtype == object:  # hashing would merge True with 1: tell them apart by identity
        labels = [category_label(v) for v in series.tolist()]
        keys = pd.Series([None if v is None else label_identity(v) for v in labels], dtype=object)
        codes, uniques = pd.factorize(keys, use_na_sentinel=True)
        return np.asarray(codes, dtype="int64"), [json.loads(k) for k in uniques]
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    merged: dict[str, int] = {}
    labels, remap = [], []
    for value in list(uniques):
        label = category_label(value)
        key = label_identity(label)
        if key not in merged:
            merged[key] = len(labels)
            labels.append(label)
        remap.append(merged[key])
    table = np.asarray(remap + [-1], dtype="int64")  # code -1 (missing) maps to -1
    return table[np.asarray(codes, dtype="int64")], labels


def _missing_code(codes: Any, labels: list[Any]) -> tuple[Any, list[Any]]:
    """The codes with missing (-1) as one more category, labelled None, when any is missing."""
    if not (codes < 0).any():
        return codes, labels
    out = codes.copy()
    out[out < 0] = len(labels)
    return out, [*labels, None]


def _bools_with_numbers(parts: Sequence[Part], axis: int) -> Callable[[Any], Any]:
    """How to relabel one axis so a value is one category over the nodes: where booleans meet
    integers (a boolean column stored as 0/1, as SQLite does), ``True`` and ``1`` are one. With
    only 0 and 1 beside them the booleans stay; else they count as 1 and 0."""
    labels = {
        label_identity(v): v
        for part in parts
        if is_typed_value(_table(part), "count_table")
        for v in (category_label(c[axis]) for c in _table(part)["cells"])
    }.values()
    bools = any(isinstance(v, bool) for v in labels)
    ints = {v for v in labels if isinstance(v, int) and not isinstance(v, bool)}
    if not bools or not ints:
        return lambda v: v
    if ints <= {0, 1}:
        return lambda v: bool(v) if isinstance(v, int) else v
    return lambda v: int(v) if isinstance(v, bool) else v


def _types_note(
    parts: Sequence[Part], axis: int, column: str, name: Callable[[int], str]
) -> str | None:
    """A note when the column holds text at some nodes, numbers or booleans at others: their
    labels were read as values (``"1"`` as ``1``), so the same value is one category."""
    classes: dict[str, list[tuple[int, Any]]] = {}
    for part in parts:
        kinds = part.value.get("kinds") if isinstance(part.value, dict) else None
        kind = (kinds or {}).get("row" if axis == 0 else "col")
        if isinstance(kind, dict) and kind.get("kind") != "null":
            group = _KIND_CLASS.get(str(kind.get("kind")), "other")
            classes.setdefault(group, []).append((part.organization_id, kind))
    if len(classes) < 2:
        return None
    where = where_kinds([found for group in classes.values() for found in group], name)
    return (
        f"column '{column}' has different types at the organizations ({where}): labels that are "
        "the same value (1, '1' and 1.0; True and 1) are counted as one category."
    )


def value_key(value: Any) -> str:
    """The table key of a category value: a string as is, anything else as its JSON text.

    Examples
    --------
    >>> value_key("Adelie"), value_key(2007), value_key(True)
    ('Adelie', '2007', 'true')
    """
    return value if isinstance(value, str) else json.dumps(value)


def crosstab_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A crosstab result as the pooled contingency table, as ``pandas.crosstab`` gives it.

    Rows are labelled by the ``row`` values and columns by the ``col`` values, with their types
    (a year stays ``2007``, not ``"2007"``); counts are int64, 0 for pairs seen nowhere. The
    missing category (a null label) is labelled NaN and comes last, as in
    ``pandas.crosstab(..., dropna=False)`` (the index is then of dtype object, so a year stays an
    int); ``df.attrs["missing"]`` says which axes have one (``["row"]``, ``["col"]``). A cell a
    node's disclosure policy withheld is ``<NA>`` (the frame is then nullable ``Int64``) and
    ``df.attrs["suppressed"]`` lists those cells as ``(row value, col value)``, and
    ``df.attrs["notes"]`` what was harmonised between the nodes. ``results`` is
    what :func:`crosstab` returned (typed, with or without the result marker, or the plain shape
    of earlier versions) or a task's list of results; several :func:`crosstab_partial` results
    give one row per part and cell instead. ``kwargs`` (the task's arguments) names the axes
    when the result does not.

    Examples
    --------
    >>> df = crosstab_frame({"row": "a", "col": "b", "table": {"x": {"1": 2, "2": 0}},
    ...                      "row_values": ["x"], "col_values": [1, 2]})
    >>> df.to_dict(), df.index.name, df.columns.name
    ({1: {'x': 2}, 2: {'x': 0}}, 'a', 'b')
    >>> df = crosstab_frame({"table": {"@type": "count_table", "names": ["a", "b"],
    ...                                "cells": [["x", 1, 7], ["y", 2, None]]}})
    >>> df
    b  1     2
    a
    x  7     0
    y  0  <NA>
    >>> df.attrs["suppressed"]
    [('y', 2)]
    """
    import pandas as pd

    result = only_result(results)
    names = kwargs or {}
    if isinstance(result, dict) and is_typed_value(result.get("table"), "count_table"):
        table = result["table"]
        axes = list(table.get("names") or [])
        row_name = result.get("row", axes[0] if axes else names.get("row"))
        col_name = result.get("col", axes[1] if len(axes) > 1 else names.get("col"))
        cells = {(_identity(r), _identity(c)): n for r, c, n in table["cells"]}
        row_values = _sorted(r for r, _, _ in table["cells"])
        col_values = _sorted(c for _, c, _ in table["cells"])
        blank = [(_nan(r), _nan(c)) for r, c, n in table["cells"] if n is None]
        df = pd.DataFrame(
            [[cells.get((_identity(r), _identity(c)), 0) for c in col_values] for r in row_values],
            index=_axis(row_values, row_name),
            columns=_axis(col_values, col_name),
            dtype="Int64" if blank else "int64",
        )
        df.attrs["kind"] = "crosstab"
        df.attrs["missing"] = [
            axis for axis, values in (("row", row_values), ("col", col_values)) if None in values
        ]
        df.attrs["suppressed"] = blank
        df.attrs["notes"] = [str(n) for n in result.get("notes") or []]
        return df
    if isinstance(result, dict) and is_suppressed(result.get("table")):
        df = pd.DataFrame(
            index=pd.Index([], name=result.get("row", names.get("row"))),
            columns=pd.Index([], name=result.get("col", names.get("col"))),
            dtype="Int64",
        )
        df.attrs["kind"] = "crosstab"
        df.attrs["suppressed"] = [describe_suppressed(result["table"])]
        return df
    if isinstance(result, dict) and isinstance(result.get("table"), dict):
        plain: dict[str, dict[str, Any]] = result["table"]
        row_keys = list(plain)
        col_keys = list(dict.fromkeys(c for counts in plain.values() for c in counts))
        df = pd.DataFrame(
            [[int(plain[r].get(c, 0)) for c in col_keys] for r in row_keys],
            index=pd.Index(
                _labels(result.get("row_values"), row_keys),
                name=result.get("row", names.get("row")),
            ),
            columns=pd.Index(
                _labels(result.get("col_values"), col_keys),
                name=result.get("col", names.get("col")),
            ),
            dtype="int64",
        )
        df.attrs["kind"] = "crosstab"
        return df
    records = []
    for i, part in enumerate(results if isinstance(results, list) else [results]):
        part = unwrap(part) or {}
        table = part.get("table")
        typed_cells = (
            table["cells"]
            if isinstance(table, dict) and is_typed_value(table, "count_table")
            else None
        )
        cells = part.get("cells", []) if typed_cells is None else typed_cells
        records += [{"part": i, "row": r, "col": c, "count": n} for r, c, n in cells]
    return pd.DataFrame(records)


def _table(part: Part) -> Mapping[str, Any]:
    value = part.value
    table = value.get("table") if isinstance(value, dict) else None
    if not (is_typed_value(table, "count_table") or is_suppressed(table)):
        raise ValidationError(
            f"Organization {part.organization_id} returned no count table: {str(value)[:200]}. "
            "Is its image a different version of the algorithm?",
            errors={"organization": part.organization_id},
        )
    return table  # type: ignore[return-value]


def _labels(values: Any, keys: list[str]) -> list[Any]:
    # The table's keys are JSON object keys (strings); the typed values come alongside, sorted the
    # same way. Use them when they line up, so a year stays 2007 and not "2007".
    if isinstance(values, list) and len(values) == len(keys):
        if [value_key(v) for v in values] == keys:
            return list(values)
    return list(keys)


def _nan(label: Any) -> Any:
    """The frame's label of a category: the missing one (None) is NaN, as pandas labels it."""
    return float("nan") if label is None else label


def _axis(values: list[Any], name: Any) -> Any:
    """One axis of the table; with the missing category its dtype is object, so 2007 stays int."""
    import pandas as pd

    if None in values:
        return pd.Index([_nan(v) for v in values], name=name, dtype=object)
    return pd.Index(values, name=name)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _identity(value: Any) -> str:
    # a category value's identity is its JSON text, so 1, "1" and True stay three categories
    return json.dumps(value)


def _sorted(values: Iterable[Any]) -> list[Any]:
    unique = list({_identity(v): v for v in values}.values())
    return sorted(unique, key=_order)


def _order(value: Any) -> tuple[int, Any]:
    # numbers (booleans among them) by value, then text, then anything else by its text; the
    # missing category (None) last, as pandas puts NaN
    if value is None:
        return (3, "")
    if isinstance(value, (bool, int, float)):
        return (0, value)
    return (1, value) if isinstance(value, str) else (2, str(value))


def _check_names(row: Any, col: Any) -> None:
    bad = {
        k: "expected a column name"
        for k, v in (("row", row), ("col", col))
        if not isinstance(v, str) or not v
    }
    if bad:
        raise ValidationError("row and col must be column names (strings).", errors=bad)


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "crosstab",
    "image": "v6nb/crosstab",
    "description": "The pooled contingency table of two categorical columns.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/crosstab.py",
    "functions": [
        {
            "name": "crosstab",
            "display_name": "Contingency table",
            "type": "central",
            "description": "Pooled counts of (row, col) value pairs over the organizations.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "row",
                    "display_name": "Row",
                    "type": "column",
                    "description": "The column whose values are the rows.",
                },
                {
                    "name": "col",
                    "display_name": "Column",
                    "type": "column",
                    "description": "The column whose values are the columns.",
                },
                store_organizations(),
                {
                    "name": "dropna",
                    "display_name": "Leave out missing values",
                    "type": "boolean",
                    "description": "Leave out records with a missing value instead of counting "
                    "missing as a category of its own.",
                    "has_default_value": True,
                    "default_value": False,
                },
            ],
            "ui_visualizations": [
                {"name": "Counts", "type": "table", "schema": {"location": ["table"]}}
            ],
        },
        {
            "name": "crosstab_partial",
            "type": "federated",
            "description": "This node's non-zero cells of the table.",
            "databases": store_databases(),
            "arguments": [
                {"name": "row", "type": "column"},
                {"name": "col", "type": "column"},
                {
                    "name": "dropna",
                    "type": "boolean",
                    "has_default_value": True,
                    "default_value": False,
                },
            ],
        },
    ],
}
