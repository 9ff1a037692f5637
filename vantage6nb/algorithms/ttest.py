"""Federated two-sample t-test: the pooled count, mean and M2 of a numeric column in each group.

Each node releases, per level of ``group``, a typed ``moments`` value of ``column`` (count,
missing, mean, M2 and the dominance evidence), which its node checks like any moments: below
``min_count`` or dominated, it is suppressed. The central part pools them exactly (Chan's update);
Welch's and the pooled-variance t-test are functions of these pooled moments alone, so the
researcher's side computes them (:func:`ttest_frame`, with ``scipy.stats``) exactly as
``scipy.stats.ttest_ind`` does on the pooled data.

Image ``v6nb/ttest``; run it with :func:`vantage6nb.analysis.ttest`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import count, is_suppressed, typed
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import ValidationError

from ._common import only_result, pool_rows, run_partials, store_databases, store_organizations
from ._stats import (
    check_column,
    label_key,
    label_of,
    need_columns,
    numeric_values,
    pool_moments,
    strata,
    stratum_moments,
)

__all__ = ["ttest", "ttest_frame", "ttest_partial", "ttest_stats"]


@entry_point
@algorithm_client
def ttest(
    client: AlgorithmClient, column: str, group: str, organizations: Sequence[int] | None = None
) -> Any:
    """Pooled ``moments`` of ``column`` per level of ``group`` over ``organizations``.

    Returns a typed result ``{"column", "group", "strata": {label key: moments}, "rows"}``;
    :func:`ttest_frame` gives the tests for two of the levels.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> df = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 6, "x": [1.0, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7, 8]})
    >>> out = LocalNetwork("vantage6nb.algorithms.ttest", [df]).run(
    ...     "ttest", kwargs={"column": "x", "group": "g"})
    >>> float(round(ttest_frame(out).loc["welch", "statistic"], 4))
    -1.8516
    """
    column = check_column(column, "column")  # type: ignore[assignment]
    group = check_column(group, "group")  # type: ignore[assignment]
    parts = run_partials(
        client,
        "ttest_partial",
        {"column": column, "group": group},
        organizations,
        name="ttest (partial)",
        columns=[column, group],
    )
    keys: list[str] = []
    for part in parts:
        keys += [k for k in part.value["strata"] if k not in keys]
    pooled = {
        key: pool_moments(column, [(p.organization_id, p.value["strata"].get(key)) for p in parts])
        for key in keys
    }
    return typed({"column": column, "group": group, "strata": pooled, "rows": pool_rows(parts)})


@federated
@data(1)
def ttest_partial(df: Any, column: str, group: str) -> Any:
    """This node's ``moments`` of ``column`` per level of ``group``, and its row ``count``."""
    column = check_column(column, "column")  # type: ignore[assignment]
    group = check_column(group, "group")  # type: ignore[assignment]
    need_columns(df, [column, group])
    if len(df):
        numeric_values(df[column], column)  # a clear error for text
    groups, _ = strata(df, group)
    stats = {key: stratum_moments(rows, column) for key, rows in groups}
    return typed({"strata": stats, "rows": count(len(df))})


def ttest_stats(
    a: tuple[int, float, float], b: tuple[int, float, float], *, equal_var: bool
) -> dict[str, float]:
    """t, degrees of freedom, two-sided p and the 95% interval of ``mean_a - mean_b`` from
    ``(n, mean, m2)`` of each group, as ``scipy.stats.ttest_ind`` reports them.

    Examples
    --------
    >>> out = ttest_stats((6, 3.5, 17.5), (6, 5.5, 17.5), equal_var=True)
    >>> round(out["statistic"], 4), out["df"]
    (-1.8516, 10.0)
    """
    from scipy import stats

    (na, ma, m2a), (nb, mb, m2b) = a, b
    va, vb = m2a / (na - 1), m2b / (nb - 1)
    if equal_var:
        df = float(na + nb - 2)
        pooled = ((na - 1) * va + (nb - 1) * vb) / df
        se = math.sqrt(pooled * (1.0 / na + 1.0 / nb))
    else:
        qa, qb = va / na, vb / nb
        df = (qa + qb) ** 2 / (qa**2 / (na - 1) + qb**2 / (nb - 1))
        se = math.sqrt(qa + qb)
    diff = ma - mb
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.975, df)) * se
    return {"statistic": t, "df": df, "p_value": p, "ci_low": diff - half, "ci_high": diff + half}


def ttest_frame(
    results: Any, kwargs: dict[str, Any] | None = None, *, levels: Sequence[Any] | None = None
) -> Any:
    """Welch's and the pooled t-test of a ttest result, one row each: ``statistic``, ``df``,
    ``p_value``, ``mean_diff`` (first level minus second), ``ci_low``, ``ci_high`` (95%).

    ``levels`` picks the two groups (default: the only two there are). The groups' ``n``,
    ``mean`` and ``std`` are in ``df.attrs["groups"]``.
    """
    import pandas as pd

    result = only_result(results)
    if not isinstance(result, dict) or not isinstance(result.get("strata"), dict):
        raise ValidationError(
            f"Not a ttest result: {str(result)[:200]}", errors={"result": "unexpected shape"}
        )
    strata_ = result["strata"]
    found = {label_of(k): v for k, v in strata_.items()}
    chosen = list(levels) if levels is not None else list(found)
    if len(chosen) != 2:
        raise ValidationError(
            f"A t-test compares two groups; {result.get('group')!r} has "
            f"{', '.join(map(repr, found))}: pick two with levels=[...].",
            errors={"levels": [str(v) for v in found]},
        )
    picked = []
    for level in chosen:
        key = label_key(level)
        if key not in strata_:
            raise ValidationError(
                f"Group {level!r} is not a level of {result.get('group')!r}; it has "
                f"{', '.join(map(repr, found))}.",
                errors={"levels": str(level)},
            )
        m = strata_[key]
        if is_suppressed(m):
            from vantage6nb.common.errors import DisclosureRefused

            raise DisclosureRefused(
                f"The moments of {result.get('column')!r} in group {level!r} were "
                f"{describe_suppressed(m)}: the t-test needs them. Ask for a coarser group or "
                "more records.",
                rule=str(m.get("rule") or ""),
                threshold=m.get("threshold"),
                what=f"group {level!r}",
            )
        n = int(m.get("count") or 0)
        if n < 2:
            raise ValidationError(
                f"Group {level!r} has {n} value(s) of {result.get('column')!r}; a t-test needs "
                "at least 2 per group.",
                errors={"levels": str(level)},
            )
        picked.append((n, float(m["mean"]), float(m["m2"])))
    rows = {
        "welch": ttest_stats(picked[0], picked[1], equal_var=False),
        "pooled": ttest_stats(picked[0], picked[1], equal_var=True),
    }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.insert(3, "mean_diff", picked[0][1] - picked[1][1])
    df.index.name = "test"
    df.attrs["kind"] = "ttest"
    df.attrs["column"] = result.get("column")
    df.attrs["group"] = result.get("group")
    df.attrs["groups"] = {
        str(level): {"n": n, "mean": mean, "std": math.sqrt(m2 / (n - 1))}
        for level, (n, mean, m2) in zip(chosen, picked, strict=True)
    }
    return df


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "t-test",
    "image": "v6nb/ttest",
    "description": "Two-sample t-tests (Student and Welch) of a numeric column between groups.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/ttest.py",
    "functions": [
        {
            "name": "ttest",
            "display_name": "t-test",
            "type": "central",
            "description": "Pooled moments of ``column`` per level of ``group``.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "column",
                    "display_name": "Column",
                    "type": "column",
                    "description": "The numeric column to compare.",
                },
                {
                    "name": "group",
                    "display_name": "Group",
                    "type": "column",
                    "description": "The column whose levels are compared.",
                },
                store_organizations(),
            ],
            "ui_visualizations": [{"name": "Tests", "type": "table", "schema": {}}],
        },
        {
            "name": "ttest_partial",
            "type": "federated",
            "description": "This node's moments of ``column`` per level of ``group``.",
            "databases": store_databases(),
            "arguments": [
                {"name": "column", "type": "column"},
                {"name": "group", "type": "column"},
            ],
        },
    ],
}
