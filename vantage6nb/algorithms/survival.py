"""Federated Kaplan-Meier curves by group, and the log-rank test, from pooled event and censor counts.

Each node releases one typed ``count_table`` over (group, time, event): how many records ended at
each time with an event (1) or censored (0). With ``bins``, the times are first rounded **up** to
the bin edges (or to a multiple of a bin width), so the table holds counts per time bin; times
beyond the last edge are censored there (follow-up ends at the last edge). The node checks the
table as any table: every non-zero cell at least ``min_count`` (the default policy refuses a table
with a smaller cell; with ``small_cells: suppress`` it releases the cell as null),
``max_levels`` and ``levels_density``. Exact times are rarely releasable; bins of a few weeks or
months usually are.

The central part adds the tables up. The Kaplan-Meier estimate, its exponential-Greenwood
interval and the log-rank test are functions of the pooled table alone, so they equal
``lifelines`` on the pooled data with the same times (the binned times, with bins): the curve is
exact, not approximated, for the times it is released at. A null cell (withheld) leaves its
group's curve unknown as a whole (the numbers at risk before it depend on it) and the log-rank
test too: the curve is exact or withheld, never estimated from what is left.

Image ``v6nb/survival``; run it with :func:`vantage6nb.analysis.kaplan_meier`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_of,
    count_table,
    is_suppressed,
    suppressed,
    typed,
)
from vantage6nb.common.errors import ValidationError

from ._common import (
    only_result,
    pool_rows,
    run_partials,
    store_databases,
    store_organizations,
    withheld,
)
from ._stats import (
    check_column,
    label_key,
    label_of,
    need_columns,
    numeric_values,
    strata,
)
from .table1 import pool_tables

__all__ = [
    "bin_times",
    "kaplan_meier",
    "kaplan_meier_partial",
    "km_estimate",
    "logrank",
    "survival_frame",
]


@entry_point
@algorithm_client
def kaplan_meier(
    client: AlgorithmClient,
    time: str,
    event: str,
    group: str | None = None,
    bins: float | Sequence[float] | None = None,
    organizations: Sequence[int] | None = None,
) -> Any:
    """The pooled (group, time, event) table of ``organizations``: counts of events and censored
    records per time (per bin with ``bins``: a width, or increasing edges).

    Returns a typed result ``{"time", "event", "group", "bins", "table": count_table, "rows",
    "dropped"}``; :func:`survival_frame` makes the curves and :func:`logrank` the test.

    Examples
    --------
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [1.0] * 5 + [2.0] * 5 + [3.0] * 5, "e": [1] * 10 + [0] * 5})
    >>> out = LocalNetwork("vantage6nb.algorithms.survival", [df]).run(
    ...     "kaplan_meier", kwargs={"time": "t", "event": "e"})
    >>> survival_frame(out)["survival"].round(4).tolist()
    [1.0, 0.6667, 0.3333, 0.3333]
    """
    time = check_column(time, "time")  # type: ignore[assignment]
    event = check_column(event, "event")  # type: ignore[assignment]
    group = check_column(group, "group", optional=True)
    _check_bins(bins)
    names = [c for c in (group, time, event) if c]
    parts = run_partials(
        client,
        "kaplan_meier_partial",
        {"time": time, "event": event, "group": group, "bins": bins},
        organizations,
        name="kaplan_meier (partial)",
        columns=names,
    )
    table = pool_tables([(p.organization_id, p.value["table"]) for p in parts], names=names)
    found = [(p.organization_id, p.value.get("dropped")) for p in parts]
    hidden = [(org, c) for org, c in found if count_of(c) is None]
    dropped = (
        withheld(hidden, f"the records without {time} or {event}")
        if hidden
        else count(sum(count_of(c) or 0 for _, c in found))
    )
    nulled = [
        p.organization_id
        for p in parts
        if not is_suppressed(p.value["table"])
        and any(c[-1] is None for c in p.value["table"]["cells"])
    ]
    out = {
        "suppressed": (
            [suppressed("min_count", None, "cells of the event table", organizations=nulled)]
            if nulled
            else []
        ),
        "time": time,
        "event": event,
        "group": group,
        "bins": None if bins is None else repr(bins),  # text: the researcher's own choice
        "table": table,
        "dropped": dropped,
        "rows": pool_rows(parts),
    }
    return typed(out)


@federated
@data(1)
def kaplan_meier_partial(
    df: Any,
    time: str,
    event: str,
    group: str | None = None,
    bins: float | Sequence[float] | None = None,
) -> Any:
    """This node's ``count_table`` of (group, time, event) (times binned with ``bins``), the
    ``count`` of records dropped for a missing time or event, and its row ``count``."""
    import numpy as np

    time = check_column(time, "time")  # type: ignore[assignment]
    event = check_column(event, "event")  # type: ignore[assignment]
    group = check_column(group, "group", optional=True)
    _check_bins(bins)
    need_columns(df, [c for c in (group, time, event) if c])
    groups, _ = strata(df, group)
    cells = []
    dropped = 0
    for key, rows in groups:
        t = numeric_values(rows[time], time).to_numpy() if len(rows) else np.array([])
        e = _events(rows[event], event) if len(rows) else np.array([])
        keep = ~(np.isnan(t) | np.isnan(e))
        dropped += int((~keep).sum())
        t, e = bin_times(t[keep], e[keep].astype(int), bins)
        lead = [label_of(key)] if group else []
        found: dict[tuple[float, int], int] = {}
        for ti, ei in zip(t.tolist(), e.tolist(), strict=True):
            found[(ti, ei)] = found.get((ti, ei), 0) + 1
        cells += [[*lead, ti, ei, n] for (ti, ei), n in sorted(found.items())]
    names = [c for c in (group, time, event) if c]
    return typed(
        {
            "table": count_table(names, cells),
            "dropped": count(dropped),
            "rows": count(len(df)),
        }
    )


def bin_times(times: Any, events: Any, bins: float | Sequence[float] | None) -> tuple[Any, Any]:
    """Times rounded up to the bin edges (``bins``: increasing edges) or to a multiple of a width
    (``bins``: a number); past the last edge a record is censored at it. None: unchanged.

    Examples
    --------
    >>> t, e = bin_times([0.5, 3.0, 12.0], [1, 1, 1], [0, 5, 10])
    >>> t.tolist(), e.tolist()
    ([5.0, 5.0, 10.0], [1, 1, 0])
    >>> bin_times([0.5, 3.0], [1, 0], 2.0)[0].tolist()
    [2.0, 4.0]
    """
    import numpy as np

    t = np.asarray(times, dtype="float64")
    e = np.asarray(events, dtype="int64").copy()
    if bins is None:
        return t, e
    if isinstance(bins, (int, float)):
        return np.ceil(t / float(bins)) * float(bins), e
    edges = np.asarray(bins, dtype="float64")
    index = np.searchsorted(edges, t, side="left")
    beyond = index >= len(edges)
    e[beyond] = 0
    return edges[np.minimum(index, len(edges) - 1)], e


def km_estimate(table: Sequence[Sequence[Any]]) -> Any:
    """The Kaplan-Meier curve of one group from ``[time, event, n]`` cells, as lifelines gives it.

    A DataFrame indexed by time (0 first, as lifelines' timeline): ``at_risk``, ``events``,
    ``censored``, ``survival``, ``ci_low``, ``ci_high`` (95%, exponential Greenwood). A cell whose
    n is None (withheld) leaves the whole curve NaN: the numbers at risk before it are unknown.
    """
    import pandas as pd

    by_time: dict[float, list[Any]] = {}
    for t, e, n in table:
        slot = by_time.setdefault(float(t), [0, 0])
        i = 0 if int(e) else 1
        slot[i] = None if n is None or slot[i] is None else slot[i] + int(n)
    times = sorted(by_time)
    if not times or times[0] > 0:
        times = [0.0, *times]
        by_time.setdefault(0.0, [0, 0])
    # the number at risk at a time is the number removed at it and after: one withheld cell
    # makes it unknown at every earlier time, so the curve is withheld whole, never guessed
    if any(None in by_time[t] for t in times):
        nan = [math.nan] * 6
        return pd.DataFrame(
            [[t, *nan] for t in times],
            columns=["time", "at_risk", "events", "censored", "survival", "ci_low", "ci_high"],
        ).set_index("time")
    rows = []
    at_risk = float(sum(sum(by_time[t]) for t in times))
    log_s, greenwood = 0.0, 0.0
    for t in times:
        d, c = by_time[t]
        if at_risk > 0:
            log_s += math.log(at_risk - d) - math.log(at_risk) if at_risk > d else -math.inf
            if at_risk > d:
                greenwood += d / (at_risk * (at_risk - d))
        s = math.exp(log_s)
        low, high = _exp_greenwood(s, greenwood)
        rows.append([t, at_risk, d, c, s, low, high])
        at_risk -= d + c
    df = pd.DataFrame(
        rows, columns=["time", "at_risk", "events", "censored", "survival", "ci_low", "ci_high"]
    ).set_index("time")
    return df


def logrank(cells: Sequence[Sequence[Any]]) -> dict[str, float]:
    """The log-rank test of ``[group, time, event, n]`` cells, as lifelines'
    ``multivariate_logrank_test`` (``logrank_test`` for two groups) reports it: ``statistic``,
    ``df`` (groups - 1) and ``p_value``. NaN when a cell is withheld or there is one group.

    Examples
    --------
    >>> cells = [["a", 1.0, 1, 5], ["a", 2.0, 0, 5], ["b", 2.0, 1, 5], ["b", 3.0, 0, 5]]
    >>> round(logrank(cells)["statistic"], 4)
    0.39
    """
    import numpy as np
    from scipy import stats

    if any(c[-1] is None for c in cells):
        return {"statistic": math.nan, "df": math.nan, "p_value": math.nan}
    groups = sorted({label_key(c[0]) for c in cells})
    times = sorted({float(c[1]) for c in cells})
    k, m = len(groups), len(times)
    if k < 2:
        return {"statistic": math.nan, "df": math.nan, "p_value": math.nan}
    gi = {g: i for i, g in enumerate(groups)}
    ti = {t: i for i, t in enumerate(times)}
    deaths = np.zeros((m, k))
    removed = np.zeros((m, k))
    for g, t, e, n in cells:
        removed[ti[float(t)], gi[label_key(g)]] += n
        if int(e):
            deaths[ti[float(t)], gi[label_key(g)]] += n
    at_risk = removed.sum(0) - np.vstack([np.zeros(k), np.cumsum(removed, 0)[:-1]])
    n_t = at_risk.sum(1)
    d_t = deaths.sum(1)
    expected = at_risk * (d_t / n_t)[:, None]
    z = deaths.sum(0) - expected.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_t > 1, (n_t - d_t) / (n_t - 1), 1.0) * d_t / n_t**2
    v = np.zeros((k, k))
    for j in range(m):
        a = at_risk[j]
        v += factor[j] * (np.diag(a * n_t[j]) - np.outer(a, a))
    u = float(z[:-1] @ np.linalg.pinv(v[:-1, :-1]) @ z[:-1])
    return {"statistic": u, "df": float(k - 1), "p_value": float(stats.chi2.sf(u, k - 1))}


def survival_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A kaplan_meier result as one curve per group: a DataFrame indexed by (group, time) with
    ``at_risk``, ``events``, ``censored``, ``survival``, ``ci_low``, ``ci_high``.

    ``df.attrs["logrank"]`` holds the log-rank test (with a group), ``df.attrs["median"]`` each
    group's median survival time (the first time the curve is at or below 0.5, as lifelines;
    inf when it never is), ``df.attrs["suppressed"]`` what a node withheld.
    """
    import pandas as pd

    result = only_result(results)
    if not isinstance(result, dict) or "table" not in result:
        raise ValidationError(
            f"Not a kaplan_meier result: {str(result)[:200]}",
            errors={"result": "unexpected shape"},
        )
    table, group = result["table"], result.get("group")
    notes: dict[str, str] = {}
    if is_suppressed(table):
        from vantage6nb.common.disclosure import describe_suppressed

        notes["table"] = describe_suppressed(table)
        cells: list[list[Any]] = []
    else:
        cells = table["cells"]
        if any(c[-1] is None for c in cells):
            notes["table"] = (
                "cells withheld by a node's disclosure policy (small counts): each curve ends "
                "before its first withheld time, and the log-rank test is unknown; widen the bins"
            )
    frames, medians = {}, {}
    if group:
        labels: dict[str, Any] = {}
        for c in cells:
            labels.setdefault(label_key(c[0]), c[0])
        for key in sorted(labels, key=lambda k: _order(labels[k])):
            curve = km_estimate([c[1:] for c in cells if label_key(c[0]) == key])
            frames[labels[key]] = curve
            medians[labels[key]] = _median(curve)
    else:
        curve = km_estimate(cells)
        frames["all"] = curve
        medians["all"] = _median(curve)
    df = pd.concat(frames, names=[group or "group", "time"]) if frames else pd.DataFrame()
    df.attrs["kind"] = "kaplan_meier"
    df.attrs["time"], df.attrs["event"], df.attrs["group"] = (
        result.get("time"),
        result.get("event"),
        group,
    )
    df.attrs["bins"] = result.get("bins")
    df.attrs["median"] = medians
    if group and not is_suppressed(table):
        df.attrs["logrank"] = logrank(cells)
    df.attrs["suppressed"] = notes
    return df


def _median(curve: Any) -> float:
    below = curve.index[curve["survival"] <= 0.5]
    if len(below):
        return float(below[0])
    return math.nan if curve["survival"].isna().any() else math.inf


def _exp_greenwood(s: float, var: float) -> tuple[float, float]:
    # lifelines' exponential Greenwood bounds: 1 where S is 1 (its fillna(1.0)), 0 where S is 0
    if s >= 1:
        return 1.0, 1.0
    if s <= 0:
        return 0.0, 0.0
    z = 1.959963984540054  # lifelines' inv_normal_cdf(0.975)
    v = math.log(s)
    low = math.exp(-math.exp(math.log(-v) - z * math.sqrt(var) / v))
    high = math.exp(-math.exp(math.log(-v) + z * math.sqrt(var) / v))
    return low, high


def _events(series: Any, column: str) -> Any:
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(
        series.map(lambda v: int(v) if isinstance(v, bool) else v), errors="coerce"
    )
    bad = series.notna() & (values.isna() | ~values.isin([0, 1]))
    if bad.any():
        raise ValidationError(
            f"Column '{column}' must say whether the event happened: 1/True (event) or "
            "0/False (censored), at every node.",
            errors={"event": column},
        )
    return values.to_numpy(dtype="float64") if len(values) else np.array([])


def _order(label: Any) -> tuple[int, Any]:
    if isinstance(label, bool):
        return (0, int(label))
    if isinstance(label, (int, float)):
        return (1, label)
    return (2, str(label))


def _check_bins(bins: Any) -> None:
    if bins is None:
        return
    if isinstance(bins, (int, float)) and not isinstance(bins, bool):
        if math.isfinite(bins) and bins > 0:
            return
    elif (
        isinstance(bins, (list, tuple))
        and bins
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bins)
        and all(math.isfinite(b) for b in bins)
        and all(a < b for a, b in zip(bins, bins[1:], strict=False))
    ):
        return
    raise ValidationError(
        "bins must be a positive bin width or a list of increasing bin edges (e.g. [0, 30, 60]).",
        errors={"bins": repr(bins)[:80]},
    )


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "Kaplan-Meier",
    "image": "v6nb/survival",
    "description": "Kaplan-Meier survival curves and the log-rank test, pooled over organizations.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/survival.py",
    "functions": [
        {
            "name": "kaplan_meier",
            "display_name": "Kaplan-Meier curves",
            "type": "central",
            "description": "The pooled (group, time, event) table: counts of events and censored records per time.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "time",
                    "display_name": "Time",
                    "type": "column",
                    "description": "Follow-up time.",
                },
                {
                    "name": "event",
                    "display_name": "Event",
                    "type": "column",
                    "description": "1 (or True) for an event, 0 for censored.",
                },
                {
                    "name": "group",
                    "display_name": "Group",
                    "type": "column",
                    "description": "One curve per level of this column (default: one curve).",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "bins",
                    "display_name": "Time bins",
                    "type": "json",
                    "description": "A bin width, or a list of increasing bin edges (default: exact times).",
                    "has_default_value": True,
                    "default_value": None,
                },
                store_organizations(),
            ],
            "ui_visualizations": [
                {"name": "Survival", "type": "line", "schema": {"x": "time", "y": "survival"}}
            ],
        },
        {
            "name": "kaplan_meier_partial",
            "type": "federated",
            "description": "This node's count table of (group, time, event).",
            "databases": store_databases(),
            "arguments": [
                {"name": "time", "type": "column"},
                {"name": "event", "type": "column"},
                {
                    "name": "group",
                    "type": "column",
                    "has_default_value": True,
                    "default_value": None,
                },
                {"name": "bins", "type": "json", "has_default_value": True, "default_value": None},
            ],
        },
    ],
}
