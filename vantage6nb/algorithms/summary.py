"""Federated summary statistics: count, missing, mean, std (ddof=1), min and max of numeric columns.

Each node returns, per numeric column, its non-null count, missing count, mean (with a sub-ulp
correction), M2 (the sum of squared deviations from its mean), min and max; the central part pools them with Chan et al.'s
parallel update, so the result equals pandas on the pooled data (to rounding) while no node
reveals more than these aggregates. A node with ``V6NB_MIN_CELL_COUNT`` set refuses to report a
column whose count or missing count is above 0 and below that threshold.

Image ``v6nb/summary``. Run it with :func:`vantage6nb.analysis.summary`, or by hand::

    client.task.create(..., image="v6nb/summary", method="summary", kwargs={"columns": ["bill_length_mm"]})

and turn its results into a table with :func:`summary_frame` (on the researcher's side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, min_cell_count
from vantage6nb.common.errors import ValidationError

from ._common import check_cell, only_result, run_partials

__all__ = ["SUMMARY_COLUMNS", "combine", "summary", "summary_frame", "summary_partial"]

#: The columns of a summary table, in this order.
SUMMARY_COLUMNS = ["count", "missing", "mean", "std", "min", "max"]


@algorithm_client
def summary(
    client: AlgorithmClient,
    columns: Sequence[str] | str | None = None,
    organizations: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Pooled summary of numeric ``columns`` (default: every numeric column) over ``organizations``.

    Returns ``{"columns": {name: {"count", "missing", "mean", "std", "min", "max"}}, "rows": n}``;
    ``mean``/``std``/``min``/``max`` are None when a column has no (or, for std, one) value.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> net = LocalNetwork("vantage6nb.algorithms.summary",
    ...                    [pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [3.0, None]})])
    >>> net.run("summary")["columns"]["x"]
    {'count': 3, 'missing': 1, 'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0}
    """
    cols = _check_columns(columns)
    parts = run_partials(
        client, "summary_partial", {"columns": cols}, organizations, name="summary (partial)"
    )
    names: list[str] = list(cols or [])
    for part in parts:
        names += [n for n in part["columns"] if n not in names]
    out: dict[str, Any] = {}
    for name in names:
        stats = [p["columns"].get(name) for p in parts]
        if all(s is None for s in stats):
            raise ValidationError(
                f"Column '{name}' exists at none of the organizations.", errors={"columns": name}
            )
        pooled = combine([s for s in stats if s is not None])
        # an organization without the column contributes its rows as missing, as pandas.concat does
        pooled["missing"] += sum(p["rows"] for p, s in zip(parts, stats, strict=True) if s is None)
        out[name] = _finish(pooled)
    return {"columns": out, "rows": sum(int(p["rows"]) for p in parts)}


@data(1)
def summary_partial(df: Any, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """This node's count, missing, mean, M2, min and max per numeric column (None: column absent)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    threshold = min_cell_count()
    cols = _check_columns(columns)
    if cols is None:
        cols = [c for c in df.columns if is_numeric_dtype(df[c]) and not is_bool_dtype(df[c])]
    stats: dict[str, Any] = {}
    for name in cols:
        if name not in df.columns:
            stats[name] = None
            continue
        series = df[name]
        if not is_numeric_dtype(series) or is_bool_dtype(series):
            raise ValidationError(
                f"Column '{name}' is not numeric ({series.dtype}); summarise numeric columns only, "
                "and use the crosstab algorithm for categories.",
                errors={"columns": name},
            )
        values = series.dropna().to_numpy(dtype="float64")
        n = len(values)
        check_cell(n, threshold, f"column '{name}'")
        check_cell(len(series) - n, threshold, f"the missing values of column '{name}'")
        mean = float(values.mean()) if n else None
        # the rounded mean is off by up to an ulp; the correction (sub-ulp) keeps the pooled mean
        # and std exact to rounding even for data far from 0 (Chan's update amplifies that error)
        dev = values - mean if n else values
        correction = float(dev.sum() / n) if n else 0.0
        stats[str(name)] = {
            "count": n,
            "missing": int(len(series) - n),
            "mean": mean,
            "mean_correction": correction,
            "m2": float((dev**2).sum() - n * correction * correction) if n else 0.0,
            "min": float(values.min()) if n else None,
            "max": float(values.max()) if n else None,
        }
    return {"columns": stats, "rows": int(len(df))}


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool partial statistics with Chan et al.'s parallel formula for the mean and M2.

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
        lo = float(p["min"]) if lo is None else min(lo, float(p["min"]))
        hi = float(p["max"]) if hi is None else max(hi, float(p["max"]))
    mean = base + offset if n else None
    return {"count": n, "missing": missing, "mean": mean, "m2": m2, "min": lo, "max": hi}


def summary_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A summary result as a DataFrame indexed by column: count, missing, mean, std, min, max.

    ``results`` is what :func:`summary` returned, or a task's list of results (one per
    organization). A list of several :func:`summary_partial` results gives one row per part and
    column instead, with its raw statistics. ``kwargs`` (the task's arguments) is not needed.

    Examples
    --------
    >>> df = summary_frame({"columns": {"x": {"count": 2, "missing": 0, "mean": 1.5, "std": 0.7,
    ...                                       "min": 1.0, "max": 2.0}}, "rows": 2})
    >>> df["mean"].to_dict(), str(df["count"].dtype), df.index.name
    ({'x': 1.5}, 'int64', 'column')
    """
    import pandas as pd

    result = only_result(results)
    if isinstance(result, dict) and isinstance(result.get("columns"), dict):
        df = pd.DataFrame.from_dict(result["columns"], orient="index")
        present = [c for c in SUMMARY_COLUMNS if c in df.columns]
        if present or df.columns.empty:  # an empty result still has the table's columns
            df = df.reindex(columns=present or SUMMARY_COLUMNS)
        for col in ("count", "missing"):
            if col in df.columns:
                df[col] = df[col].astype("int64")
        for col in ("mean", "std", "min", "max"):
            if col in df.columns:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        df.index.name = "column"
        df.attrs["kind"] = "summary"
        return df
    records = []
    for i, part in enumerate(results if isinstance(results, list) else [results]):
        for name, stats in ((part or {}).get("columns") or {}).items():
            records.append({"part": i, "column": name, **(stats or {})})
    return pd.DataFrame(records)


def _finish(pooled: dict[str, Any]) -> dict[str, Any]:
    n = pooled["count"]
    std = math.sqrt(pooled["m2"] / (n - 1)) if n > 1 else None
    return {
        "count": n,
        "missing": pooled["missing"],
        "mean": pooled["mean"],
        "std": std,
        "min": pooled["min"],
        "max": pooled["max"],
    }


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
