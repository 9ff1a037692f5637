"""Federated Table 1: per group, counts, mean and std of numeric columns, category counts, binned quartiles.

Each node releases, per group (a level of ``group``; one stratum without it):
- a ``count_table`` of the group sizes, and per categorical column a ``count_table`` of
  (group, value) with the missing values as a ``null`` value: the node checks each cell against
  ``min_count`` (the default policy refuses a table with a small cell), ``max_levels`` and
  ``levels_density``;
- per numeric column a ``moments`` value (count, missing, mean, M2 and the dominance evidence):
  suppressed when below ``min_count`` or dominated.
The central part pools them exactly (Chan's update, as :mod:`~vantage6nb.algorithms.summary`).

Median and quartiles are **binned**: with ``bins``, a second part releases per numeric column a
``count_table`` of (group, bin) over fixed bin edges (from the researcher, or at the pooled normal
quantiles of the pooled mean and std), checked like any table; the quartiles are interpolated
within the bin that holds them (the grouped-data quantile), so they are within one bin of the
exact ones. A node that refuses its histogram leaves the quartiles withheld, not the table.

Image ``v6nb/table1``; run it with :func:`vantage6nb.analysis.table1` and read a result with
:func:`table1_frame`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_of,
    count_table,
    is_suppressed,
    is_typed_value,
    typed,
)
from vantage6nb.common.disclosure import describe_suppressed
from vantage6nb.common.errors import ValidationError

from ._common import (
    Part,
    only_result,
    pool_rows,
    run_partials,
    store_databases,
    store_organizations,
    withheld,
)
from ._stats import (
    category_label,
    check_column,
    check_columns,
    is_numeric,
    label_key,
    label_of,
    need_columns,
    pool_moments,
    run_lenient,
    strata,
    stratum_moments,
)

__all__ = [
    "binned_quantile",
    "normal_edges",
    "pool_tables",
    "table1",
    "table1_bins_partial",
    "table1_frame",
    "table1_partial",
]

NUMERIC, CATEGORICAL, EMPTY = "numeric", "categorical", "empty"
QUANTILES = {"q1": 0.25, "median": 0.5, "q3": 0.75}
MAX_BINS = 40  # a node's max_levels default: more bins would be refused anyway


@entry_point
@algorithm_client
def table1(
    client: AlgorithmClient,
    columns: Sequence[str] | str | None = None,
    group: str | None = None,
    categorical: Sequence[str] | str | None = None,
    bins: int | Mapping[str, Sequence[float]] | None = None,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Table 1 of ``columns`` (default: all but ``group``) by ``group``, pooled over organizations.

    ``categorical`` names numeric columns to count by value instead; ``bins`` asks for binned
    quartiles: a number of bins (edges at the normal quantiles of the pooled mean and std) or
    ``{column: [edges]}``. Returns a typed result; :func:`table1_frame` makes the table.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> df = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 6, "x": [1.0, 2, 3, 4, 5, 6] * 2})
    >>> out = LocalNetwork("vantage6nb.algorithms.table1", [df, df]).run(
    ...     "table1", kwargs={"columns": ["x"], "group": "g"})
    >>> table1_frame(out).loc[("x", "", "mean")].tolist()
    [3.5, 3.5, 3.5]
    """
    group = check_column(group, "group", optional=True)
    cols = check_columns(columns)
    cats = check_columns(categorical, "categorical") or []
    kwargs = {"columns": cols, "group": group, "categorical": cats or None}
    parts = run_partials(
        client, "table1_partial", kwargs, organizations, name="table1 (partial)", columns=cols or ()
    )
    orgs = [p.organization_id for p in parts]
    names = _names(parts, cols)
    kinds = _kinds(parts, names)
    keys = _strata_keys(parts)
    out: dict[str, Any] = {"group": group, "columns": names, "kinds": kinds, "strata": keys}
    out["rows"] = pool_rows(parts)
    if group is not None:
        out["group_missing"] = _pool_counts(parts, "group_missing", "rows without a group")
        out["sizes"] = pool_tables([(p.organization_id, p.value["sizes"]) for p in parts])
    numeric: dict[str, Any] = {}
    for name in [n for n in names if kinds[n] == NUMERIC]:
        by_stratum = {
            key: pool_moments(
                name,
                [(p.organization_id, (p.value["numeric"].get(name) or {}).get(key)) for p in parts],
            )
            for key in keys
        }
        overall = pool_moments(
            name,
            [
                (p.organization_id, m)
                for p in parts
                for m in (p.value["numeric"].get(name) or {}).values()
            ],
        )
        numeric[name] = {"overall": overall, "strata": by_stratum}
    out["numeric"] = numeric
    out["categorical"] = {
        name: pool_tables(
            [(p.organization_id, p.value["categorical"].get(name)) for p in parts],
            names=[group, name] if group else [name],
        )
        for name in names
        if kinds[name] == CATEGORICAL
    }
    if bins is not None and numeric:
        out["histograms"] = _histograms(client, bins, numeric, group, orgs)
    return typed(out)


@federated
@data(1)
def table1_partial(
    df: Any,
    columns: Sequence[str] | None = None,
    group: str | None = None,
    categorical: Sequence[str] | None = None,
) -> Any:
    """This node's group sizes, per numeric column and group ``moments``, per categorical column a
    (group, value) ``count_table`` (missing values under ``null``), and its row ``count``."""
    group = check_column(group, "group", optional=True)
    cols = check_columns(columns)
    cats = set(check_columns(categorical, "categorical") or [])
    need_columns(df, ([group] if group else []) + (cols or []))
    if cols is None:
        cols = [str(c) for c in df.columns if c != group]
    groups, no_group = strata(df, group)
    kinds: dict[str, str] = {}
    numeric: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for name in cols:
        if name == group:
            raise ValidationError(
                f"Column '{name}' is the group; leave it out of columns.", errors={"columns": name}
            )
        if len(df) == 0:
            kinds[name] = EMPTY
        elif is_numeric(df[name]) and name not in cats:
            kinds[name] = NUMERIC
            numeric[name] = {key: stratum_moments(rows, name) for key, rows in groups}
        else:
            kinds[name] = CATEGORICAL
            tables[name] = _value_table(groups, group, name)
    out: dict[str, Any] = {"kinds": kinds, "numeric": numeric, "categorical": tables}
    out["strata"] = [key for key, _ in groups]
    if group is not None:
        out["sizes"] = count_table(
            [group], [[label_of(key), len(rows)] for key, rows in groups], total=len(df) - no_group
        )
        out["group_missing"] = count(no_group)
    out["rows"] = count(len(df))
    return typed(out)


@federated
@data(1)
def table1_bins_partial(
    df: Any, edges: Mapping[str, Sequence[float]], group: str | None = None
) -> Any:
    """Per column, this node's ``count_table`` of (group, bin): bin ``i`` holds the values in
    ``(edges[i-1], edges[i]]`` (bin 0 everything up to the first edge, the last everything above
    the last), as ``pandas.cut`` with ``right=True`` counts them."""
    import numpy as np

    group = check_column(group, "group", optional=True)
    edges = _check_edges(edges)
    need_columns(df, ([group] if group else []) + list(edges))
    groups, _ = strata(df, group)
    tables = {}
    for name, cuts in edges.items():
        cells = []
        for key, rows in groups:
            values = rows[name].dropna().to_numpy(dtype="float64")
            index = np.searchsorted(np.asarray(cuts, dtype="float64"), values, side="left")
            found = np.bincount(index, minlength=len(cuts) + 1)
            lead = [label_of(key)] if group else []
            cells += [[*lead, i, int(n)] for i, n in enumerate(found) if n]
        tables[name] = count_table([group, name] if group else [name], cells)
    return typed({"bins": tables, "rows": count(len(df))})


def pool_tables(
    found: Sequence[tuple[int, Any]], *, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Add up ``(organization id, count_table)`` parts; a cell withheld anywhere is null, a
    table withheld anywhere withholds the pooled one. Parts that are None are skipped.

    Examples
    --------
    >>> a = count_table(["g"], [["x", 6], ["y", 5]])
    >>> pool_tables([(1, a), (2, count_table(["g"], [["x", 7]]))])["cells"]
    [['x', 13], ['y', 5]]
    """
    hidden = [(org, t) for org, t in found if is_suppressed(t)]
    if hidden:
        return withheld(hidden, f"the table {' x '.join(names or [])}".rstrip())
    tables = [t for _, t in found if t is not None]
    axes = list(names or (tables[0]["names"] if tables else []))
    cells: dict[str, list[Any]] = {}
    for table in tables:
        for cell in table["cells"]:
            keys, n = cell[:-1], cell[-1]
            entry = cells.setdefault(label_key(keys), [*keys, 0])
            entry[-1] = None if n is None or entry[-1] is None else entry[-1] + int(n)
    ordered = sorted(cells.values(), key=lambda c: [_order(k) for k in c[:-1]])
    return count_table(axes or ["value"], ordered)


def normal_edges(mean: float, std: float, k: int) -> list[float]:
    """``k - 1`` bin edges at the normal quantiles ``i / k`` of ``N(mean, std)``: ``k`` bins of
    about equal size for roughly normal data, so few of them are small.

    Examples
    --------
    >>> [round(e, 3) for e in normal_edges(0.0, 1.0, 4)]
    [-0.674, 0.0, 0.674]
    """
    dist = NormalDist(mean, std)
    return [dist.inv_cdf(i / k) for i in range(1, k)]


def binned_quantile(counts: Sequence[int], edges: Sequence[float], p: float) -> float:
    """The ``p`` quantile of binned data, interpolated linearly within its bin (grouped data).

    ``counts[i]`` is the number of values in bin ``i`` (bin 0 up to ``edges[0]``, the last above
    ``edges[-1]``). NaN when the quantile falls in one of the two open bins, or there are no values.

    Examples
    --------
    >>> binned_quantile([0, 4, 4, 0], [0.0, 1.0, 2.0], 0.5)
    1.0
    >>> binned_quantile([0, 4, 2, 2], [0.0, 1.0, 2.0], 0.625)
    1.5
    """
    total = sum(counts)
    if total <= 0:
        return math.nan
    rank, below = p * total, 0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i == 0 or i == len(counts) - 1:
                return math.nan
            lo, hi = edges[i - 1], edges[i]
            return lo + (rank - below) / n * (hi - lo)
        below += n
    return math.nan


def table1_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A table1 result as a DataFrame: rows ``(variable, value, statistic)``, a column per group
    and ``Overall`` (the rows that have a group).

    Numeric columns give ``count``, ``missing``, ``mean``, ``std`` (ddof=1) and, with bins,
    ``q1``, ``median``, ``q3``; categorical columns give per value ``count`` and ``percent`` (of
    the group's rows with a value; missing values under value ``<missing>``, their percent of
    all the group's rows). The first row ``("n", "", "count")`` holds the group sizes.
    Withheld values are NaN and ``df.attrs["suppressed"]`` says why.

    Examples
    --------
    >>> import pandas as pd
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> df = pd.DataFrame({"s": ["m", "f"] * 6})
    >>> out = LocalNetwork("vantage6nb.algorithms.table1", [df]).run("table1")
    >>> table1_frame(out)["Overall"].tolist()
    [12.0, 6.0, 50.0, 6.0, 50.0]
    """
    import pandas as pd

    result = only_result(results)
    if not isinstance(result, dict) or "kinds" not in result:
        raise ValidationError(
            f"Not a table1 result: {str(result)[:200]}", errors={"result": "unexpected shape"}
        )
    group = result.get("group")
    keys = list(result.get("strata") or [])
    heads = [label_of(k) for k in keys] if group else []
    columns = [*heads, "Overall"] if group else ["Overall"]
    rows: dict[tuple[str, str, str], list[float]] = {}
    notes: dict[str, str] = {}

    def put(index: tuple[str, str, str], values: list[Any]) -> None:
        rows[index] = [math.nan if v is None else float(v) for v in values]

    # the group sizes
    sizes = _cells(result.get("sizes"), notes, "n") if group else None
    if group:
        by_key = {label_key(c[0]): c[-1] for c in sizes or []}
        known = [by_key.get(k, 0) for k in keys]
        put(("n", "", "count"), [*known, None if None in known else sum(known)])
    else:
        total = count_of(result.get("rows"))
        if is_suppressed(result.get("rows")):
            notes["n"] = describe_suppressed(result["rows"])
        put(("n", "", "count"), [total])
    histograms = result.get("histograms")
    if is_suppressed(histograms):
        notes["quartiles"] = describe_suppressed(histograms)
    for name in result.get("columns") or []:
        kind = result["kinds"].get(name)
        if kind == NUMERIC:
            stats = result["numeric"][name]
            values = [stats["strata"].get(k) for k in keys] if group else []
            values.append(stats["overall"])
            for i, m in enumerate(values):
                if is_suppressed(m):
                    where = columns[i]
                    notes[f"{name} ({where})"] = describe_suppressed(m)
            moments_rows = [_moment_row(m) for m in values]
            for stat in ("count", "missing", "mean", "std"):
                put((name, "", stat), [r[stat] for r in moments_rows])
            if isinstance(histograms, dict) and name in histograms:
                for stat, quantiles in _quantiles(histograms[name], keys, group, notes, name):
                    put((name, "", stat), quantiles)
            elif is_suppressed(histograms):
                for stat in QUANTILES:
                    put((name, "", stat), [None] * len(columns))
        elif kind == CATEGORICAL:
            cells = _cells(result["categorical"].get(name), notes, name)
            if cells is None:
                put((name, "", "count"), [None] * len(columns))
                continue
            for index, values in _category_rows(name, cells, keys, group).items():
                rows[index] = values
    index = pd.MultiIndex.from_tuples(list(rows), names=["variable", "value", "statistic"])
    df = pd.DataFrame(list(rows.values()), index=index, columns=pd.Index(columns, name=group))
    df.attrs["kind"] = "table1"
    df.attrs["suppressed"] = notes
    if group:
        df.attrs["group_missing"] = count_of(result.get("group_missing"))
    return df


# -- the central part's pooling -------------------------------------------------------------------
def _names(parts: Sequence[Part], cols: list[str] | None) -> list[str]:
    names = list(cols or [])
    for part in parts:
        names += [n for n in _value(part)["kinds"] if n not in names]
    return names


def _kinds(parts: Sequence[Part], names: Sequence[str]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name in names:
        seen = {p.organization_id: _value(p)["kinds"].get(name) for p in parts}
        real = {org: k for org, k in seen.items() if k in (NUMERIC, CATEGORICAL)}
        if len(set(real.values())) > 1:
            detail = ", ".join(f"organization {o}: {k}" for o, k in sorted(real.items()))
            raise ValidationError(
                f"Column '{name}' is numeric at some organizations and not at others ({detail}): "
                f"give it one type at every node, or pass categorical=['{name}'] to count its "
                "values everywhere.",
                errors={"columns": name, "kinds": {str(o): k for o, k in real.items()}},
            )
        kinds[name] = next(iter(real.values()), EMPTY)
    return kinds


def _strata_keys(parts: Sequence[Part]) -> list[str]:
    keys: list[str] = []
    for part in parts:
        keys += [k for k in _value(part).get("strata") or [] if k not in keys]
    return sorted(keys, key=lambda k: _order(label_of(k)))


def _pool_counts(parts: Sequence[Part], key: str, what: str) -> dict[str, Any]:
    found = [(p.organization_id, p.value.get(key)) for p in parts]
    hidden = [(org, c) for org, c in found if count_of(c) is None]
    if hidden:
        return withheld(hidden, what)
    return count(sum(count_of(c) or 0 for _, c in found))


def _histograms(
    client: AlgorithmClient,
    bins: Any,
    numeric: Mapping[str, Any],
    group: str | None,
    orgs: list[int],
) -> Any:
    edges: dict[str, list[float]] = {}
    notes: dict[str, Any] = {}
    for name, stats in numeric.items():
        if isinstance(bins, Mapping):
            if name in bins:
                edges[name] = _check_edges({name: bins[name]})[name]
            continue
        overall = stats["overall"]
        n = 0 if is_suppressed(overall) else int(overall.get("count") or 0)
        if n < 2 or not overall.get("m2"):
            notes[name] = suppressed_note(overall)
            continue
        k = _check_bins(bins)
        std = math.sqrt(float(overall["m2"]) / (n - 1))
        edges[name] = normal_edges(float(overall["mean"]), std, k)
    if not edges:
        return None
    parts, refused = run_lenient(
        client,
        "table1_bins_partial",
        {"edges": edges, "group": group},
        orgs,
        name="table1 (bins)",
        what="the binned quartiles",
    )
    if refused is not None:
        return refused
    out: dict[str, Any] = {}
    for name, cuts in edges.items():
        tables = [(p.organization_id, p.value["bins"].get(name)) for p in parts or []]
        out[name] = {
            "edges": [repr(float(e)) for e in cuts],  # text: labels, not released numbers
            "table": pool_tables(tables, names=[group, name] if group else [name]),
        }
    return out


def suppressed_note(value: Any) -> str:
    return describe_suppressed(value) if is_suppressed(value) else "too few values"


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise ValidationError(
            f"bins must be a whole number of bins from 2 to {MAX_BINS}, or {{column: [edges]}}.",
            errors={"bins": bins},
        )
    return bins


def _check_edges(edges: Any) -> dict[str, list[float]]:
    ok = isinstance(edges, Mapping) and all(
        isinstance(k, str)
        and isinstance(v, (list, tuple))
        and 0 < len(v) < MAX_BINS
        and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
        and all(math.isfinite(float(e)) for e in v)
        and all(float(a) < float(b) for a, b in zip(v, v[1:], strict=False))
        for k, v in edges.items()
    )
    if not ok:
        raise ValidationError(
            f"bin edges must be {{column: [increasing finite numbers]}} with fewer than "
            f"{MAX_BINS} edges each.",
            errors={"bins": "expected {column: [edges]}"},
        )
    return {k: [float(e) for e in v] for k, v in edges.items()}


def _value(part: Part) -> dict[str, Any]:
    if not isinstance(part.value, dict) or "kinds" not in part.value:
        raise ValidationError(
            f"Organization {part.organization_id} returned no table1 part: "
            f"{str(part.value)[:200]}. Is its image a different version of the algorithm?",
            errors={"organization": part.organization_id},
        )
    return part.value


def _value_table(groups: Sequence[tuple[str, Any]], group: str | None, name: str) -> Any:
    cells = []
    for key, rows in groups:
        labels = rows[name].map(category_label)
        found: dict[str, list[Any]] = {}
        for value in labels:
            found.setdefault(label_key(value), [value, 0])[1] += 1
        lead = [label_of(key)] if group else []
        cells += [[*lead, value, n] for value, n in found.values()]
    return count_table([group, name] if group else [name], cells)


# -- the researcher's table --------------------------------------------------------------------
def _order(label: Any) -> tuple[int, Any]:
    if label is None:
        return (3, "")
    if isinstance(label, bool):
        return (0, int(label))
    if isinstance(label, (int, float)):
        return (1, label)
    return (2, str(label))


def _cells(table: Any, notes: dict[str, str], name: str) -> list[list[Any]] | None:
    if is_suppressed(table):
        notes[name] = describe_suppressed(table)
        return None
    if not is_typed_value(table, "count_table"):
        return None
    if any(c[-1] is None for c in table["cells"]):
        notes[name] = "cells withheld by a node's disclosure policy (small counts)"
    return table["cells"]


def _moment_row(m: Any) -> dict[str, Any]:
    if m is None or is_suppressed(m):
        return dict.fromkeys(("count", "missing", "mean", "std"))
    n = int(m.get("count") or 0)
    m2 = m.get("m2")
    std = math.sqrt(max(float(m2), 0.0) / (n - 1)) if n > 1 and m2 is not None else None
    return {"count": n, "missing": m.get("missing"), "mean": m.get("mean"), "std": std}


def _quantiles(
    histogram: Any, keys: list[str], group: str | None, notes: dict[str, str], name: str
) -> list[tuple[str, list[float]]]:
    table = histogram.get("table")
    edges = [float(e) for e in histogram.get("edges") or []]
    width = len(keys) + 1 if group else 1
    if is_suppressed(table) or not is_typed_value(table, "count_table"):
        notes[f"{name} quartiles"] = suppressed_note(table)
        return [(stat, [math.nan] * width) for stat in QUANTILES]
    bins = len(edges) + 1
    per: dict[str, list[int | None]] = {k: [0] * bins for k in keys} if group else {}
    overall: list[int | None] = [0] * bins
    for cell in table["cells"]:
        n, i = cell[-1], int(cell[-2])
        targets = [overall] + ([per.setdefault(label_key(cell[0]), [0] * bins)] if group else [])
        for counts in targets:
            counts[i] = None if n is None or counts[i] is None else counts[i] + n  # type: ignore[operator]
    series = [per[k] for k in keys] + [overall] if group else [overall]
    out = []
    for stat, p in QUANTILES.items():
        values = []
        for counts in series:
            if any(c is None for c in counts):
                values.append(math.nan)
                notes[f"{name} quartiles"] = "bins withheld by a node's disclosure policy"
            else:
                values.append(binned_quantile(counts, edges, p))  # type: ignore[arg-type]
        out.append((stat, values))
    return out


def _category_rows(
    name: str, cells: list[list[Any]], keys: list[str], group: str | None
) -> dict[tuple[str, str, str], list[float]]:
    columns = keys if group else []
    values = sorted({label_key(c[-2]) for c in cells}, key=lambda k: _order(label_of(k)))
    table: dict[str, dict[str, float | None]] = {v: {} for v in values}
    for cell in cells:
        where = label_key(cell[0]) if group else "all"
        table[label_key(cell[-2])][where] = cell[-1]
    places = [*columns, "all"] if group else ["all"]
    if group:  # the overall column adds the groups up
        for v in values:
            row = table[v]
            parts = [row.get(k, 0) for k in columns]
            row["all"] = None if None in parts else sum(parts)  # type: ignore[arg-type]
    present = [v for v in values if label_of(v) is not None]
    totals = {}
    for place in places:
        col = [table[v].get(place, 0) for v in present]
        totals[place] = None if None in col else sum(col)  # type: ignore[arg-type]
    everything = {}
    for place in places:
        col = [table[v].get(place, 0) for v in values]
        everything[place] = None if None in col else sum(col)  # type: ignore[arg-type]
    out: dict[tuple[str, str, str], list[float]] = {}
    for v in values:
        label = label_of(v)
        shown = "<missing>" if label is None else str(label)
        counts = [table[v].get(place, 0) for place in places]
        base = everything if label is None else totals
        percents = [
            math.nan if n is None or not base[place] else 100.0 * n / base[place]  # type: ignore[operator]
            for n, place in zip(counts, places, strict=True)
        ]
        out[(name, shown, "count")] = [math.nan if n is None else float(n) for n in counts]
        out[(name, shown, "percent")] = percents
    return out


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "table 1",
    "image": "v6nb/table1",
    "description": "Table 1 (baseline characteristics) by group, pooled over organizations.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/table1.py",
    "functions": [
        {
            "name": "table1",
            "display_name": "Table 1",
            "type": "central",
            "description": "Table 1 of ``columns`` (default: all but ``group``) by ``group``.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "display_name": "Columns",
                    "type": "column_list",
                    "description": "Columns to describe (default: all but the group).",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "group",
                    "display_name": "Group by",
                    "type": "column",
                    "description": "Column whose levels are the table's columns (default: none).",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "categorical",
                    "display_name": "Categorical",
                    "type": "column_list",
                    "description": "Numeric columns to count by value instead.",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "bins",
                    "display_name": "Quartile bins",
                    "type": "json",
                    "description": "Binned quartiles: a number of bins, or {column: [edges]}.",
                    "has_default_value": True,
                    "default_value": None,
                },
                store_organizations(),
            ],
            "ui_visualizations": [{"name": "Table 1", "type": "table", "schema": {}}],
        },
        {
            "name": "table1_partial",
            "type": "federated",
            "description": "This node's group sizes, moments and count tables.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "columns",
                    "type": "column_list",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "group",
                    "type": "column",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "categorical",
                    "type": "column_list",
                    "has_default_value": True,
                    "default_value": None,
                },
            ],
        },
        {
            "name": "table1_bins_partial",
            "type": "federated",
            "description": "This node's counts per (group, bin) for given bin edges.",
            "databases": store_databases(),
            "arguments": [
                {"name": "edges", "type": "json"},
                {
                    "name": "group",
                    "type": "column",
                    "has_default_value": True,
                    "default_value": None,
                },
            ],
        },
    ],
}
