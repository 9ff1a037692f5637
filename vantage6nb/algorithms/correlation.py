"""Federated Pearson correlation matrix of numeric columns, pairwise complete as ``pandas.DataFrame.corr``.

For each pair of columns, each node takes the rows where both are present and releases the typed
``moments`` of each of the two columns over those rows (count, mean, M2, with the dominance
evidence, checked as any moments) and their co-moment (the sum of the products of the deviations
from those means) as an ``estimates`` value over ``n`` records with 2 parameters (the slope and
intercept of a simple regression, which the correlation is a standardised form of): the node
suppresses it below ``min_count`` records or when ``2 > glm_ratio * n``. The central part pools
the co-moments exactly (``C = sum(C_k + n_k (mean_x_k - mean_x)(mean_y_k - mean_y))``); the
correlation is ``C / sqrt(M2_x M2_y)``.

Image ``v6nb/correlation``; run it with :func:`vantage6nb.analysis.correlation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    estimates,
    is_suppressed,
    is_typed_value,
    moments,
    typed,
)
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import ValidationError

from ._common import (
    only_result,
    pool_rows,
    run_partials,
    store_databases,
    store_organizations,
    withheld,
)
from ._stats import check_columns, is_numeric, need_columns, numeric_values, pool_moments

__all__ = ["correlation", "correlation_frame", "correlation_partial", "pair_key"]

PARAMETERS = 2  # what the node's glm_ratio weighs a co-moment as


def pair_key(x: str, y: str) -> str:
    """The key of a column pair in a correlation result.

    Examples
    --------
    >>> pair_key("a", "b")
    '["a", "b"]'
    """
    import json

    return json.dumps([x, y])


@entry_point
@algorithm_client
def correlation(
    client: AlgorithmClient,
    columns: Sequence[str] | str | None = None,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Pooled pairwise moments and co-moments of ``columns`` (default: every numeric column).

    Returns a typed result ``{"columns": [...], "pairs": {pair key: {"x", "y", "comoment"}},
    "rows"}``; :func:`correlation_frame` makes the matrix.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6, 7, 8], "b": [2.0, 1, 4, 3, 6, 5, 8, 7]})
    >>> out = LocalNetwork("vantage6nb.algorithms.correlation", [df, df]).run("correlation")
    >>> bool(abs(correlation_frame(out).loc["a", "b"] - df.corr().loc["a", "b"]) < 1e-12)
    True
    """
    cols = check_columns(columns)
    parts = run_partials(
        client,
        "correlation_partial",
        {"columns": cols},
        organizations,
        name="correlation (partial)",
        columns=cols or (),
    )
    names = list(cols or [])
    for part in parts:
        names += [n for n in part.value["columns"] if n not in names]
    pairs = {}
    for i, x in enumerate(names):
        for y in names[i:]:
            key = pair_key(x, y)
            found = [(p.organization_id, p.value["pairs"].get(key)) for p in parts]
            pairs[key] = _pool_pair(x, y, found)
    return typed({"columns": names, "pairs": pairs, "rows": pool_rows(parts)})


@federated
@data(1)
def correlation_partial(df: Any, columns: Sequence[str] | None = None) -> Any:
    """Per pair of columns (a column with itself too), this node's moments of both over the rows
    where both are present, and their co-moment as ``estimates``."""
    import numpy as np

    cols = check_columns(columns)
    if cols is None:
        cols = [str(c) for c in df.columns if is_numeric(df[c])]
    need_columns(df, cols)
    values = {c: numeric_values(df[c], c).to_numpy() if len(df) else np.array([]) for c in cols}
    pairs = {}
    for i, x in enumerate(cols):
        for y in cols[i:]:
            both = ~(np.isnan(values[x]) | np.isnan(values[y]))
            vx, vy = values[x][both], values[y][both]
            n = int(both.sum())
            mx = moments(vx, column=x)
            my = moments(vy, column=y)
            c = float(((vx - vx.mean()) * (vy - vy.mean())).sum()) if n else 0.0
            pairs[pair_key(x, y)] = {
                "x": mx,
                "y": my,
                # no complete pair here: nothing to release (an estimate over 0 records would be
                # suppressed, and withhold the pooled pair for no reason)
                "comoment": estimates({"comoment": c}, n=n, parameters=PARAMETERS) if n else None,
            }
    return typed({"columns": cols, "pairs": pairs, "rows": count(len(df))})


def _pool_pair(x: str, y: str, found: list[tuple[int, Any]]) -> Any:
    present = [(org, v) for org, v in found if v is not None]
    absent = [org for org, v in found if v is None]
    if absent:
        raise ValidationError(
            f"Columns '{x}' and '{y}' are not both at organization(s) "
            f"{', '.join(map(str, absent))}.",
            errors={"columns": [x, y]},
        )
    hidden = [
        (org, v.get(k))
        for org, v in present
        for k in ("x", "y", "comoment")
        if is_suppressed(v.get(k))
    ]
    if hidden:
        return withheld(hidden, f"the pair '{x}' x '{y}'")
    px = pool_moments(x, [(org, v["x"]) for org, v in present])
    py = pool_moments(y, [(org, v["y"]) for org, v in present])
    n = int(px["count"])
    c = 0.0
    for _, v in present:
        nk = int(v["x"]["count"])
        if nk:
            dx = (float(v["x"]["mean"]) - float(px["mean"])) + float(
                v["x"].get("mean_correction") or 0.0
            )
            dy = (float(v["y"]["mean"]) - float(py["mean"])) + float(
                v["y"].get("mean_correction") or 0.0
            )
            c += float(v["comoment"]["values"]["comoment"]) + nk * dx * dy
    return {
        "x": px,
        "y": py,
        "comoment": estimates({"comoment": c}, n=n, parameters=PARAMETERS),
    }


def correlation_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A correlation result as the matrix ``pandas.DataFrame.corr()`` gives (pairwise complete).

    ``df.attrs["n"]`` holds the number of complete pairs behind each entry (``{x: {y: n}}``), and
    ``df.attrs["suppressed"]`` the pairs a node withheld (NaN in the matrix).

    Examples
    --------
    >>> out = {"columns": ["a"], "pairs": {pair_key("a", "a"): {
    ...     "x": {"count": 3, "mean": 2.0, "m2": 2.0}, "y": {"count": 3, "mean": 2.0, "m2": 2.0},
    ...     "comoment": {"values": {"comoment": 2.0}, "n": 3}}}}
    >>> float(correlation_frame(out).loc["a", "a"])
    1.0
    """
    import pandas as pd

    result = only_result(results)
    if not isinstance(result, dict) or not isinstance(result.get("pairs"), dict):
        raise ValidationError(
            f"Not a correlation result: {str(result)[:200]}", errors={"result": "unexpected shape"}
        )
    names = list(result["columns"])
    r = pd.DataFrame(math.nan, index=pd.Index(names), columns=pd.Index(names), dtype="float64")
    n: dict[str, dict[str, int | None]] = {x: {} for x in names}
    notes = {}
    for i, x in enumerate(names):
        for y in names[i:]:
            pair = result["pairs"].get(pair_key(x, y))
            if pair is None or is_suppressed(pair) or is_suppressed(pair.get("comoment")):
                notes[f"{x} x {y}"] = (
                    describe_suppressed(pair) if is_suppressed(pair) else "withheld"
                )
                n[x][y] = n[y][x] = None
                continue
            m2x, m2y = float(pair["x"]["m2"]), float(pair["y"]["m2"])
            c = float(pair["comoment"]["values"]["comoment"])
            count_ = int(pair["x"]["count"])
            n[x][y] = n[y][x] = count_
            denominator = math.sqrt(m2x * m2y)
            value = c / denominator if count_ > 1 and denominator > 0 else math.nan
            if x == y and not math.isnan(value):
                value = 1.0  # as pandas: exactly 1 on the diagonal
            r.loc[x, y] = r.loc[y, x] = max(-1.0, min(1.0, value))
    r.attrs["kind"] = "correlation"
    r.attrs["n"] = n
    r.attrs["suppressed"] = notes
    return r


def _is_estimates(value: Any) -> bool:
    return is_typed_value(value, "estimates")


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "correlation",
    "image": "v6nb/correlation",
    "description": "The pooled Pearson correlation matrix of numeric columns.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/correlation.py",
    "functions": [
        {
            "name": "correlation",
            "display_name": "Correlation matrix",
            "type": "central",
            "description": "Pooled pairwise moments and co-moments of ``columns`` (default: every numeric column).",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "display_name": "Columns",
                    "type": "column_list",
                    "description": "Columns to correlate (default: every numeric column).",
                    "has_default_value": True,
                    "default_value": None,
                },
                store_organizations(),
            ],
            "ui_visualizations": [{"name": "Correlations", "type": "table", "schema": {}}],
        },
        {
            "name": "correlation_partial",
            "type": "federated",
            "description": "This node's moments and co-moment per pair of columns.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "type": "column_list",
                    "has_default_value": True,
                    "default_value": None,
                },
            ],
        },
    ],
}
