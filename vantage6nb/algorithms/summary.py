"""Federated summary statistics: count, missing, mean, std (ddof=1), min and max of numeric columns.

Each node returns, per numeric column, a typed ``moments`` value (non-null count, missing count,
mean with a sub-ulp correction, M2 = the sum of squared deviations from its mean, min, max, and
the evidence its node's dominance rules need); the node checks it against its disclosure policy
and may suppress it. The central part pools the released parts with Chan et al.'s parallel update,
so the result equals pandas on the pooled data (to rounding) while no node reveals more than
these aggregates. A column suppressed at any organization is suppressed in the pooled result too.

Image ``v6nb/summary``. Run it with :func:`vantage6nb.analysis.summary`, or by hand::

    client.task.create(..., image="v6nb/summary", method="summary", kwargs={"columns": ["bill_length_mm"]})

and turn its results into a table with :func:`summary_frame` (on the researcher's side).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_of,
    is_suppressed,
    is_typed_value,
    moments,
    pooled_moments,
    suppressed,
    typed,
    unwrap,
)
from vantage6nb.common.disclosure import TYPE_KEY, describe_suppressed
from vantage6nb.common.errors import ValidationError

from ._common import (
    NUMERIC_KINDS,
    Part,
    column_kind,
    describe_kind,
    no_rows_notes,
    only_result,
    organization_names,
    pool_rows,
    run_partials,
    store_databases,
    store_organizations,
    where_kinds,
    withheld,
)

__all__ = ["SUMMARY_COLUMNS", "combine", "summary", "summary_frame", "summary_partial"]

#: The columns of a summary table, in this order.
SUMMARY_COLUMNS = ["count", "missing", "mean", "std", "min", "max"]

# column kinds a node converts to numbers exactly when asked (booleans as 0/1, numbers as text)
AS_NUMBER = frozenset({"bool", "numeric_text"})
_WHOLE = re.compile(r"[+-]?[0-9]+")


@entry_point
@algorithm_client
def summary(
    client: AlgorithmClient,
    columns: Sequence[str] | str | None = None,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Pooled summary of numeric ``columns`` (default: every numeric column) over ``organizations``.

    Returns a typed result ``{"columns": {name: moments}, "rows": count, "notes": [...]}``: per
    column a pooled ``moments`` value (count, missing, mean, m2, min, max; std is
    ``sqrt(m2 / (count - 1))``), or a ``suppressed`` value naming the organizations whose nodes
    withheld it. ``min``/``max`` are None where a node's policy withholds extremes (and exact
    integers for integer columns); :func:`summary_frame` makes the table.

    A column whose type differs between the nodes is harmonised where that is exact (booleans
    as 0 and 1 next to numbers, numbers stored as text read as numbers; ``notes`` says so) and
    refused otherwise, with an error naming the organization, the column and both types. A node
    with no rows contributes nothing, and ``notes`` says so.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> net = LocalNetwork("vantage6nb.algorithms.summary",
    ...                    [pd.DataFrame({"x": [1.0, 2.0, 4, 5, 3]}), pd.DataFrame({"x": [3.0] * 5})])
    >>> print(summary_frame(net.run("summary")).round(3))  # no min/max: the default policy
            count  missing  mean    std  min  max
    column
    x          10        0   3.0  1.054  NaN  NaN
    """
    cols = _check_columns(columns)
    parts = run_partials(
        client,
        "summary_partial",
        {"columns": cols},
        organizations,
        name="summary (partial)",
        columns=cols or (),
    )
    name = organization_names(client)
    stats = {p.organization_id: dict(_columns(p)) for p in parts}
    kinds = {p.organization_id: dict(_kinds(p)) for p in parts}
    names = list(cols) if cols is not None else _numeric_names(parts, kinds)
    if cols is None:
        # a default part names its numeric columns only; ask the others what they hold of those
        # (the converted numbers at once, where exact: they will be pooled or the summary refused)
        ask = {org: [n for n in names if n not in k] for org, k in kinds.items()}
        _ask(client, {org: n for org, n in ask.items() if n}, stats, kinds, cols)
    plan = _plan(names, kinds, name, named=cols is not None)
    todo = {
        org: [c for c in found if not is_typed_value(stats[org].get(c))]
        for org, found in plan.convert.items()
    }
    _ask(client, {org: c for org, c in todo.items() if c}, stats, kinds, cols)
    rows = {p.organization_id: p.value.get("rows") for p in parts}
    pooled = {col: _pool_column(col, stats, rows) for col in plan.names}
    notes = plan.notes + no_rows_notes(parts, name)
    return typed({"columns": pooled, "rows": pool_rows(parts), "notes": notes})


@federated
@data(1)
def summary_partial(
    df: Any, columns: Sequence[str] | None = None, as_number: Sequence[str] | None = None
) -> Any:
    """This node's ``moments`` per numeric column (None: column absent), what each column holds
    (``kinds``: kind and dtype, no values) and its row ``count``.

    With ``columns`` None: its numeric columns only. Named columns that are not numbers have a
    kind and no moments, unless named in ``as_number`` and exactly convertible: booleans become
    0 and 1, numbers stored as text their numbers.
    """
    cols = _check_columns(columns)
    convert = set(_check_columns(as_number) or ())
    pairs = [(str(c), c) for c in df.columns] if cols is None else [(c, c) for c in cols]
    named = cols is not None
    stats: dict[str, Any] = {}
    kinds: dict[str, Any] = {}
    for key, name in pairs:
        if name not in df.columns:
            stats[key] = None
            continue
        series = df[name]
        kind = column_kind(series)
        if not named and kind["kind"] not in NUMERIC_KINDS:
            continue  # default columns: name the numeric ones only (the central asks the rest)
        kinds[key] = kind
        values = series.dropna()
        if kind["kind"] in AS_NUMBER and key in convert:
            values = _as_numbers(values, kind["kind"])
        elif kind["kind"] not in NUMERIC_KINDS and kind["kind"] != "null":
            continue
        stats[key] = _moments(values, key, missing=int(len(series) - len(values)))
    return typed({"columns": stats, "kinds": kinds, "rows": count(len(df))})


def combine(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool partial statistics with Chan et al.'s parallel formula for the mean and M2.

    ``min``/``max`` are None when a part with values withheld its own (a node's extremes policy):
    the pooled extreme is then unknown, not the extreme of the others.

    Examples
    --------
    >>> a = {"count": 2, "missing": 0, "mean": 1.5, "m2": 0.5, "min": 1.0, "max": 2.0}
    >>> b = {"count": 1, "missing": 1, "mean": 3.0, "m2": 0.0, "min": 3.0, "max": 3.0}
    >>> combine([a, b])["mean"], combine([a, b])["m2"]
    (2.0, 2.0)
    """
    n, base, offset, m2, missing = 0, 0.0, 0.0, 0.0, 0
    # extremes keep their type: integers at or above 2**53 stay exact (float() would round them)
    lo: float | int | None = None
    hi: float | int | None = None
    lo_known = hi_known = True
    for p in parts:
        missing += int(p["missing"])
        nb = int(p["count"])
        if nb == 0:
            continue
        mb, cb = float(p["mean"]), float(p.get("mean_correction") or 0.0)
        if n == 0:
            base, offset, m2, n = mb, cb, float(p["m2"]), nb
        else:
            # running mean = base + offset; (mb - base) is exact for nearby means
            delta = (mb - base) + (cb - offset)
            total = n + nb
            offset += delta * nb / total
            m2 += float(p["m2"]) + delta * delta * n * nb / total
            n = total
        lo_known &= p.get("min") is not None
        hi_known &= p.get("max") is not None
        if lo_known:
            lo = _extreme(p["min"]) if lo is None else min(lo, _extreme(p["min"]))
        if hi_known:
            hi = _extreme(p["max"]) if hi is None else max(hi, _extreme(p["max"]))
    mean = base + offset if n else None
    return {
        "count": n,
        "missing": missing,
        "mean": mean,
        "m2": m2,
        "min": lo if lo_known else None,
        "max": hi if hi_known else None,
    }


def summary_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A summary result as a DataFrame indexed by column: count, missing, mean, std, min, max.

    ``results`` is what :func:`summary` returned (typed, with or without the result marker, or
    the plain shape of earlier versions), or a task's list of results (one per organization). A
    column a node's disclosure policy withheld is a row of NaN (count and missing then nullable
    ``Int64`` with ``<NA>``), and ``df.attrs["suppressed"]`` says why, per column. A list of
    several :func:`summary_partial` results gives one row per part and column instead, with its
    raw statistics. ``kwargs`` (the task's arguments) is not needed. ``min`` and ``max`` are
    float64, unless an integer extreme is beyond what a float64 holds exactly (at or above
    2**53): that column then holds the exact Python ints (dtype object). ``df.attrs["notes"]``
    lists what the analysis harmonised between the nodes (a column's type, a node without rows).

    Examples
    --------
    >>> df = summary_frame({"columns": {"x": {"count": 2, "missing": 0, "mean": 1.5, "std": 0.7,
    ...                                       "min": 1.0, "max": 2.0}}, "rows": 2})
    >>> df["mean"].to_dict(), str(df["count"].dtype), df.index.name
    ({'x': 1.5}, 'int64', 'column')
    >>> df = summary_frame({"columns": {"x": {"@type": "suppressed", "rule": "min_count",
    ...                                       "threshold": 5, "organizations": [2]}}})
    >>> df.loc["x", "count"], df.attrs["suppressed"]["x"]
    (<NA>, "suppressed by organization 2's disclosure policy (rule min_count, threshold 5)")
    """
    import pandas as pd

    result = only_result(results)
    if isinstance(result, dict) and isinstance(result.get("columns"), dict):
        rows: dict[str, dict[str, Any]] = {}
        withheld: dict[str, str] = {}
        for name, stats in result["columns"].items():
            if is_suppressed(stats) or stats is None:
                withheld[name] = (
                    describe_suppressed(stats) if stats else "no organization has this column"
                )
                rows[name] = dict.fromkeys(SUMMARY_COLUMNS)
            elif is_typed_value(stats, "moments"):
                rows[name] = _table_row(stats)
            else:
                rows[name] = dict(stats)
        df = pd.DataFrame.from_dict(rows, orient="index")
        present = [c for c in SUMMARY_COLUMNS if c in df.columns]
        if present or df.columns.empty:  # an empty result still has the table's columns
            df = df.reindex(columns=present or SUMMARY_COLUMNS)
        for col in ("count", "missing"):
            if col in df.columns:
                values = pd.to_numeric(df[col], errors="coerce")
                df[col] = values.astype("Int64" if values.isna().any() else "int64")
        for col in ("mean", "std", "min", "max"):
            if col in df.columns:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in ("min", "max"):  # integers a float64 cannot hold exactly stay Python ints
            exact = [rows[n].get(col) for n in df.index] if col in df.columns else []
            if any(_beyond_float(v) for v in exact):
                df[col] = pd.Series(
                    [float("nan") if v is None else v for v in exact], index=df.index, dtype=object
                )
        df.index.name = "column"
        df.attrs["kind"] = "summary"
        df.attrs["suppressed"] = withheld
        df.attrs["notes"] = [str(n) for n in result.get("notes") or []]
        return df
    records = []
    for i, part in enumerate(results if isinstance(results, list) else [results]):
        for name, stats in ((unwrap(part) or {}).get("columns") or {}).items():
            if is_suppressed(stats):
                stats = {"suppressed": describe_suppressed(stats)}
            elif isinstance(stats, dict):
                stats = {k: v for k, v in stats.items() if k not in (TYPE_KEY, "evidence")}
            records.append({"part": i, "column": name, **(stats or {})})
    return pd.DataFrame(records)


def _table_row(stats: Mapping[str, Any]) -> dict[str, Any]:
    n = int(stats.get("count") or 0)
    m2 = stats.get("m2")
    std = math.sqrt(max(float(m2), 0.0) / (n - 1)) if n > 1 and m2 is not None else None
    return {
        "count": n,
        "missing": stats.get("missing"),
        "mean": stats.get("mean"),
        "std": std,
        "min": stats.get("min"),
        "max": stats.get("max"),
    }


def _columns(part: Part) -> dict[str, Any]:
    value = part.value
    if not isinstance(value, dict) or not isinstance(value.get("columns"), dict):
        raise ValidationError(
            f"Organization {part.organization_id} returned no summary columns: "
            f"{str(value)[:200]}. Is its image a different version of the algorithm?",
            errors={"organization": part.organization_id},
        )
    return value["columns"]


def _pool_column(
    name: str, stats: Mapping[int, Mapping[str, Any]], rows: Mapping[int, Any]
) -> dict[str, Any]:
    found = [(org, cols.get(name), rows.get(org)) for org, cols in stats.items()]
    if all(s is None for _, s, _ in found):
        raise ValidationError(
            f"Column '{name}' exists at none of the organizations.", errors={"columns": name}
        )
    # never silently wrong: what one node withheld makes the pooled value unknown
    hidden = [(org, s) for org, s, _ in found if is_suppressed(s)]
    if hidden:
        return withheld(hidden, f"column '{name}'")
    no_missing = [(org, s) for org, s, _ in found if s is not None and s.get("missing") is None]
    if no_missing:
        marks = [(org, suppressed("missing", None, "its missing count")) for org, _ in no_missing]
        return withheld(marks, f"the missing count of column '{name}'")
    # an organization without the column contributes its rows as missing, as pandas.concat does
    absent = [(org, n) for org, s, n in found if s is None]
    no_rows = [(org, n) for org, n in absent if count_of(n) is None]
    if no_rows:
        return withheld(no_rows, f"the missing count of column '{name}' (its row count)")
    pooled = combine([s for _, s, _ in found if s is not None])
    pooled["missing"] += sum(count_of(n) or 0 for _, n in absent)
    out = pooled_moments(column=name, **pooled)
    for key in ("min", "max"):  # pooled_moments makes floats; whole numbers stay exact
        if isinstance(pooled[key], int):
            out[key] = pooled[key]
    return out


@dataclass
class _Plan:
    """What the central does with each column: pool it (``names``), convert it first at some
    organizations (``convert``: organization id -> columns), and what it tells the researcher."""

    names: list[str] = field(default_factory=list)
    convert: dict[int, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _kinds(part: Part) -> dict[str, Any]:
    kinds = part.value.get("kinds") if isinstance(part.value, dict) else None
    if isinstance(kinds, dict):
        return kinds
    # a part of an earlier version: its columns with moments are its numeric columns
    return {n: {"kind": "float"} for n, s in _columns(part).items() if s is not None}


def _numeric_names(parts: Sequence[Part], kinds: Mapping[int, Mapping[str, Any]]) -> list[str]:
    """The columns that are numbers at some organization, in the nodes' column order (a name one
    node adds goes before the next name of that node already listed)."""
    names: list[str] = []
    for part in parts:
        own = [n for n, k in kinds[part.organization_id].items() if k.get("kind") in NUMERIC_KINDS]
        for i, n in enumerate(own):
            if n in names:
                continue
            later = [names.index(m) for m in own[i + 1 :] if m in names]
            names.insert(min(later) if later else len(names), n)
    return names


def _ask(
    client: AlgorithmClient,
    ask: Mapping[int, list[str]],
    stats: dict[int, dict[str, Any]],
    kinds: dict[int, dict[str, Any]],
    cols: list[str] | None,
) -> None:
    """Ask organizations about named columns (``ask``: organization id -> columns), as numbers
    where that is exact, and put what they answer in place."""
    if not ask:
        return
    wanted = sorted({c for names in ask.values() for c in names})
    again = run_partials(
        client,
        "summary_partial",
        {"columns": wanted, "as_number": wanted},
        sorted(ask),
        name="summary (partial, more columns)",
        columns=cols or wanted,
    )
    for part in again:
        answer, held = _columns(part), _kinds(part)
        for col in ask.get(part.organization_id, []):
            stats[part.organization_id][col] = answer.get(col)
            if held.get(col) is not None:
                kinds[part.organization_id][col] = held[col]


def _plan(
    names: list[str],
    kinds: Mapping[int, Mapping[str, Any]],
    name: Callable[[int], str],
    *,
    named: bool,
) -> _Plan:
    """Decide per column: pool, harmonise exactly, leave out (default columns that are not
    numbers anywhere, as pandas does), or refuse with the organization, column and both types."""
    plan = _Plan()
    for col in names:
        found = [(org, k.get(col)) for org, k in kinds.items() if k.get(col) is not None]
        numeric = [(org, k) for org, k in found if k.get("kind") in NUMERIC_KINDS]
        convertible = [(org, k) for org, k in found if k.get("kind") in AS_NUMBER]
        other = [
            (org, k)
            for org, k in found
            if k.get("kind") not in NUMERIC_KINDS | AS_NUMBER | {"null"}
        ]
        if other:
            raise _not_numbers(col, other, numeric or convertible, name, named=named)
        if convertible and not numeric and any(k.get("kind") == "bool" for _, k in convertible):
            raise ValidationError(
                f"Column '{col}' holds booleans ({where_kinds(convertible, name)}), not numbers: "
                "count it with analysis.crosstab, or summarise numeric columns only.",
                errors={"columns": col},
            )
        for org, _ in convertible:
            plan.convert.setdefault(org, []).append(col)
        if convertible:
            bools = any(k.get("kind") == "bool" for _, k in convertible)
            plan.notes.append(
                f"column '{col}': {where_kinds(convertible, name)} counted as numbers"
                + (" (True as 1, False as 0)" if bools else "")
                + (f", to pool with {where_kinds(numeric, name)}" if numeric else "")
                + "."
            )
        plan.names.append(col)
    return plan


def _not_numbers(
    col: str,
    bad: list[tuple[int, Any]],
    numbers: list[tuple[int, Any]],
    name: Callable[[int], str],
    *,
    named: bool,
) -> ValidationError:
    org, kind = bad[0]
    hint = " with a decimal point" if kind.get("kind") == "decimal_comma" else ""
    if numbers:
        what = (
            f"Column '{col}' is {describe_kind(kind)} at {name(org)} but "
            f"{where_kinds(numbers, name)}, so it cannot be pooled exactly. Ask {name(org)} to store it "
            f"as numbers{hint}, or leave it out"
            + (" (name the other columns in columns=[...])." if not named else ".")
        )
    else:
        what = (
            f"Column '{col}' is not numeric: {where_kinds(bad, name)}. Summarise "
            "numeric columns only (count categories with analysis.crosstab)"
            + (f", or ask {name(org)} to store it as numbers{hint}." if hint else ".")
        )
    return ValidationError(
        what,
        errors={"columns": col, "organization": name(org), "dtype": str(kind.get("dtype"))},
    )


def _as_numbers(values: Any, kind: str) -> Any:
    """Booleans as 0 and 1, numbers stored as text as their numbers (exactly: whole numbers as
    integers, the others as the float nearest their decimal text)."""
    import pandas as pd

    if kind == "bool":
        return values.astype("int64")
    numbers = [int(v) if _WHOLE.fullmatch(v) else float(v) for v in values]
    if all(isinstance(v, int) for v in numbers):
        if all(-(2**63) <= v < 2**63 for v in numbers):
            return pd.Series(numbers, dtype="int64", index=values.index)
        return pd.Series(numbers, dtype=object, index=values.index)
    return pd.Series([float(v) for v in numbers], dtype="float64", index=values.index)


def _moments(values: Any, column: str, *, missing: int) -> dict[str, Any]:
    """The typed moments of ``values`` (non-null); integer columns keep exact extremes."""
    from pandas.api.types import infer_dtype

    out = moments(values, column=column, missing=missing)
    if len(values) and infer_dtype(values, skipna=True) == "integer":
        out["min"], out["max"] = int(values.min()), int(values.max())
    return out


def _beyond_float(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and float(value) != value


def _extreme(value: Any) -> float | int:
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def _check_columns(columns: Any) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return [columns]
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise ValidationError(
            "columns must be a column name or a list of column names.",
            errors={"columns": "expected a list of str"},
        )
    if not columns:
        raise ValidationError(
            "columns is empty: name at least one column, or pass None for all.",
            errors={"columns": "empty"},
        )
    return list(columns)


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "summary statistics",
    "image": "v6nb/summary",
    "description": "Count, missing, mean, standard deviation, minimum and maximum of numeric columns, pooled over organizations.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/summary.py",
    "functions": [
        {
            "name": "summary",
            "display_name": "Summary statistics",
            "type": "central",
            "description": "Pooled summary of numeric columns (default: every numeric column).",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "display_name": "Columns",
                    "type": "column_list",
                    "description": "Columns to summarise (default: every numeric column).",
                    "has_default_value": True,
                    "default_value": None,
                },
                store_organizations(),
            ],
            "ui_visualizations": [
                {"name": "Summary", "type": "table", "schema": {"location": ["columns"]}}
            ],
        },
        {
            "name": "summary_partial",
            "type": "federated",
            "description": "This node's moments per numeric column and what each column holds.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "type": "column_list",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "as_number",
                    "type": "column_list",
                    "has_default_value": True,
                    "default_value": None,
                },
            ],
        },
    ],
}
