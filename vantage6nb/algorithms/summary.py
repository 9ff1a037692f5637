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
from collections.abc import Mapping, Sequence
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

from ._common import Part, only_result, pool_rows, run_partials, withheld

__all__ = ["SUMMARY_COLUMNS", "combine", "summary", "summary_frame", "summary_partial"]

#: The columns of a summary table, in this order.
SUMMARY_COLUMNS = ["count", "missing", "mean", "std", "min", "max"]


@entry_point
@algorithm_client
def summary(
    client: AlgorithmClient,
    columns: Sequence[str] | str | None = None,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Pooled summary of numeric ``columns`` (default: every numeric column) over ``organizations``.

    Returns a typed result ``{"columns": {name: moments}, "rows": count}``: per column a pooled
    ``moments`` value (count, missing, mean, m2, min, max; std is ``sqrt(m2 / (count - 1))``), or a
    ``suppressed`` value naming the organizations whose nodes withheld it. ``min``/``max`` are
    None where a node's policy withholds extremes; :func:`summary_frame` makes the table.

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
    names: list[str] = list(cols or [])
    for part in parts:
        names += [n for n in _columns(part) if n not in names]
    pooled = {name: _pool_column(name, parts) for name in names}
    return typed({"columns": pooled, "rows": pool_rows(parts)})


@federated
@data(1)
def summary_partial(df: Any, columns: Sequence[str] | None = None) -> Any:
    """This node's ``moments`` per numeric column (None: column absent) and its row ``count``."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    cols = _check_columns(columns)
    if cols is None:
        cols = [c for c in df.columns if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]
    stats: dict[str, Any] = {}
    for name in cols:
        if name not in df.columns:
            stats[str(name)] = None
            continue
        series = df[name]
        if not is_numeric_dtype(series) or is_bool_dtype(series):
            raise ValidationError(
                f"Column '{name}' is not numeric ({series.dtype}); summarise numeric columns only, "
                "and use the crosstab algorithm for categories.",
                errors={"columns": name},
            )
        values = series.dropna()
        stats[str(name)] = moments(values, column=str(name), missing=int(len(series) - len(values)))
    return typed({"columns": stats, "rows": count(len(df))})


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
    lo: float | None = None
    hi: float | None = None
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
            lo = float(p["min"]) if lo is None else min(lo, float(p["min"]))
        if hi_known:
            hi = float(p["max"]) if hi is None else max(hi, float(p["max"]))
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
    raw statistics. ``kwargs`` (the task's arguments) is not needed.

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
        df.index.name = "column"
        df.attrs["kind"] = "summary"
        df.attrs["suppressed"] = withheld
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


def _pool_column(name: str, parts: Sequence[Part]) -> dict[str, Any]:
    stats = [(p.organization_id, _columns(p).get(name), p.value.get("rows")) for p in parts]
    if all(s is None for _, s, _ in stats):
        raise ValidationError(
            f"Column '{name}' exists at none of the organizations.", errors={"columns": name}
        )
    # never silently wrong: what one node withheld makes the pooled value unknown
    hidden = [(org, s) for org, s, _ in stats if is_suppressed(s)]
    if hidden:
        return withheld(hidden, f"column '{name}'")
    no_missing = [(org, s) for org, s, _ in stats if s is not None and s.get("missing") is None]
    if no_missing:
        marks = [(org, suppressed("missing", None, "its missing count")) for org, _ in no_missing]
        return withheld(marks, f"the missing count of column '{name}'")
    # an organization without the column contributes its rows as missing, as pandas.concat does
    absent = [(org, rows) for org, s, rows in stats if s is None]
    no_rows = [(org, rows) for org, rows in absent if count_of(rows) is None]
    if no_rows:
        return withheld(no_rows, f"the missing count of column '{name}' (its row count)")
    pooled = combine([s for _, s, _ in stats if s is not None])
    pooled["missing"] += sum(count_of(rows) or 0 for _, rows in absent)
    return pooled_moments(column=name, **pooled)


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
