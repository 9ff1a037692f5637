"""Federated crosstab: the pooled contingency table of two categorical columns.

Each node returns the non-zero cells of ``pandas.crosstab(df[row], df[col])`` (rows where either
value is missing are dropped, as pandas does); the central part adds them up. A node with
``V6NB_MIN_CELL_COUNT`` set refuses to release any cell above 0 and below that threshold.

Image ``v6nb/crosstab``. Run it with :func:`vantage6nb.analysis.crosstab`, or by hand with
``method="crosstab", kwargs={"row": "species", "col": "island"}``, and turn its result into a
table with :func:`crosstab_frame` (on the researcher's side).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, min_cell_count
from vantage6nb.common.errors import ValidationError

from ._common import check_cell, only_result, run_partials

__all__ = ["crosstab", "crosstab_frame", "crosstab_partial", "value_key"]


@algorithm_client
def crosstab(
    client: AlgorithmClient, row: str, col: str, organizations: Sequence[int] | None = None
) -> dict[str, Any]:
    """Pooled counts of (``row``, ``col``) value pairs over ``organizations`` (default: all).

    Returns ``{"row": row, "col": col, "table": {row_value: {col_value: n}}, "row_values": [...],
    "col_values": [...]}``. Table keys are strings (JSON object keys): strings as they are, other
    values as their JSON text (``2007``, ``true``); ``row_values``/``col_values`` keep the original
    values, sorted, so a client can rebuild typed labels with :func:`value_key`. Every row holds
    every column value, with 0 for pairs never seen.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> net = LocalNetwork("vantage6nb.algorithms.crosstab",
    ...                    [pd.DataFrame({"a": ["x", "y"], "b": [1, 1]}), pd.DataFrame({"a": ["x"], "b": [2]})])
    >>> net.run("crosstab", kwargs={"row": "a", "col": "b"})["table"]
    {'x': {'1': 1, '2': 1}, 'y': {'1': 1, '2': 0}}
    """
    _check_names(row, col)
    parts = run_partials(
        client,
        "crosstab_partial",
        {"row": row, "col": col},
        organizations,
        name="crosstab (partial)",
    )
    counts: dict[tuple[Any, Any], int] = {}
    for part in parts:
        for r, c, n in part["cells"]:
            counts[(r, c)] = counts.get((r, c), 0) + int(n)
    row_values = _sorted({r for r, _ in counts})
    col_values = _sorted({c for _, c in counts})
    table = {
        value_key(r): {value_key(c): counts.get((r, c), 0) for c in col_values} for r in row_values
    }
    return {
        "row": row,
        "col": col,
        "table": table,
        "row_values": row_values,
        "col_values": col_values,
    }


@data(1)
def crosstab_partial(df: Any, row: str, col: str) -> dict[str, Any]:
    """This node's non-zero cells ``[row_value, col_value, n]`` of ``pandas.crosstab``."""
    import pandas as pd

    _check_names(row, col)
    missing = [c for c in (row, col) if c not in df.columns]
    if missing:
        raise ValidationError(
            f"Column(s) {', '.join(repr(m) for m in missing)} not in this node's data; "
            f"it has {', '.join(map(str, df.columns))}.",
            errors={"columns": missing},
        )
    threshold = min_cell_count()
    table = pd.crosstab(df[row], df[col])
    cells = []
    for r, counts in table.iterrows():
        for c, n in counts.items():
            if n:
                check_cell(int(n), threshold, f"the cell ({r}, {c})")
                cells.append([_plain(r), _plain(c), int(n)])
    return {"cells": cells, "rows": int(len(df))}


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
    restored (a year stays ``2007``, not ``"2007"``) when the result carries them; counts are
    int64. ``results`` is what :func:`crosstab` returned or a task's list of results; several
    :func:`crosstab_partial` results give one row per part and cell instead. ``kwargs`` (the
    task's arguments) names the axes when the result does not.

    Examples
    --------
    >>> df = crosstab_frame({"row": "a", "col": "b", "table": {"x": {"1": 2, "2": 0}},
    ...                      "row_values": ["x"], "col_values": [1, 2]})
    >>> df.to_dict(), df.index.name, df.columns.name
    ({1: {'x': 2}, 2: {'x': 0}}, 'a', 'b')
    """
    import pandas as pd

    result = only_result(results)
    names = kwargs or {}
    if isinstance(result, dict) and isinstance(result.get("table"), dict):
        table: dict[str, dict[str, Any]] = result["table"]
        row_keys = list(table)
        col_keys = list(dict.fromkeys(c for counts in table.values() for c in counts))
        df = pd.DataFrame(
            [[int(table[r].get(c, 0)) for c in col_keys] for r in row_keys],
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
    records = [
        {"part": i, "row": r, "col": c, "count": n}
        for i, part in enumerate(results if isinstance(results, list) else [results])
        for r, c, n in (part or {}).get("cells", [])
    ]
    return pd.DataFrame(records)


def _labels(values: Any, keys: list[str]) -> list[Any]:
    # The table's keys are JSON object keys (strings); the typed values come alongside, sorted the
    # same way. Use them when they line up, so a year stays 2007 and not "2007".
    if isinstance(values, list) and len(values) == len(keys):
        if [value_key(v) for v in values] == keys:
            return list(values)
    return list(keys)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # mixed types: group by type, then by value
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _check_names(row: Any, col: Any) -> None:
    bad = {
        k: "expected a column name"
        for k, v in (("row", row), ("col", col))
        if not isinstance(v, str) or not v
    }
    if bad:
        raise ValidationError("row and col must be column names (strings).", errors=bad)
