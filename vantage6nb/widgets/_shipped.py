"""Declarations of the shipped algorithms (v6nb/summary, v6nb/crosstab) and their result tables."""

from __future__ import annotations

from typing import Any

from ._catalog import _REGISTRY, algorithm_from_module, register_algorithm

__all__ = ["crosstab_frame", "register_shipped", "summary_frame"]

SUMMARY_COLUMNS = ["count", "missing", "mean", "std", "min", "max"]


def _only(results: list[Any]) -> Any:
    # a central method runs at one organization: its one result is the pooled answer
    return results[0] if isinstance(results, list) and len(results) == 1 else results


def summary_frame(results: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    """A summary result as a DataFrame indexed by column: count, missing, mean, std, min, max.

    A ``summary_partial`` task (one result per organization) gives one row per organization and
    column instead, with its raw statistics.

    Examples
    --------
    >>> summary_frame([{"columns": {"x": {"count": 2, "missing": 0, "mean": 1.5, "std": 0.7,
    ...                                    "min": 1.0, "max": 2.0}}, "rows": 2}])["mean"].to_dict()
    {'x': 1.5}
    """
    import pandas as pd

    result = _only(results)
    if isinstance(result, dict) and isinstance(result.get("columns"), dict):
        df = pd.DataFrame.from_dict(result["columns"], orient="index")
        df = df.reindex(columns=[c for c in SUMMARY_COLUMNS if c in df.columns] or df.columns)
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


def crosstab_frame(results: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    """A crosstab result as the pooled contingency table (rows: ``row`` values, columns: ``col`` values).

    Examples
    --------
    >>> crosstab_frame([{"row": "a", "col": "b", "table": {"x": {"1": 2}}}]).to_dict()
    {'1': {'x': 2}}
    """
    import pandas as pd

    result = _only(results)
    if isinstance(result, dict) and isinstance(result.get("table"), dict):
        df = pd.DataFrame.from_dict(result["table"], orient="index").fillna(0).astype("int64")
        df.index.name = result.get("row")
        df.columns.name = result.get("col")
        df.attrs["kind"] = "crosstab"
        return df
    records = [
        {"part": i, "row": r, "col": c, "count": n}
        for i, part in enumerate(results if isinstance(results, list) else [results])
        for r, c, n in (part or {}).get("cells", [])
    ]
    return pd.DataFrame(records)


def register_shipped() -> None:
    """Declare the shipped algorithms from their modules' signatures (once)."""
    if "v6nb/summary" not in _REGISTRY:
        register_algorithm(
            algorithm_from_module(
                "vantage6nb.algorithms.summary",
                image="v6nb/summary",
                name="summary statistics",
                methods=["summary", "summary_partial"],
                kind="summary",
                to_frame=summary_frame,
            )
        )
    if "v6nb/crosstab" not in _REGISTRY:
        register_algorithm(
            algorithm_from_module(
                "vantage6nb.algorithms.crosstab",
                image="v6nb/crosstab",
                name="crosstab",
                methods=["crosstab", "crosstab_partial"],
                kind="crosstab",
                to_frame=crosstab_frame,
            )
        )
