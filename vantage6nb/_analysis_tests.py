"""The statistics pack as one-liners: Table 1, chi-square, t-test, correlation and Kaplan-Meier, as pandas."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .algorithm.results import is_suppressed, is_typed_value
from .common.errors import DisclosureRefused, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .client import Client

__all__ = ["chi2", "chi2_tests", "correlation", "kaplan_meier", "plot_result", "table1", "ttest"]

TABLE1_IMAGE = "v6nb/table1"
TTEST_IMAGE = "v6nb/ttest"
CORRELATION_IMAGE = "v6nb/correlation"
SURVIVAL_IMAGE = "v6nb/survival"


def table1(
    client: Client,
    columns: Sequence[str] | str | None = None,
    group: str | None = None,
    *,
    categorical: Sequence[str] | str | None = None,
    bins: int | Mapping[str, Sequence[float]] | None = None,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """Table 1: per group, counts, mean and std of numeric columns, and category counts and percents.

    Parameters
    ----------
    client : Client
        A logged-in client.
    columns : str or sequence of str, optional
        The variables; None: every column but ``group``.
    group : str, optional
        The column whose values are the table's columns; None: one ``Overall`` column.
    categorical : str or sequence of str, optional
        Numeric columns to count by value (codes such as 0/1) instead of summarising.
    bins : int or dict, optional
        Binned quartiles (``q1``, ``median``, ``q3``): a number of bins (edges at the normal
        quantiles of the pooled mean and std; 8 to 10 is a good start) or ``{column: [edges]}``.
        Each node releases its counts per bin, checked against its policy; the quartiles are
        interpolated within their bin (within one bin of the exact ones), NaN when one falls in an
        open end bin or a node withheld its bins. None: no quartiles.
    collaboration, organizations, database, timeout
        As for :func:`vantage6nb.analysis.summary`.

    Returns
    -------
    pandas.DataFrame
        Rows ``(variable, value, statistic)``, a column per group and ``Overall`` (the records that
        have a group): ``("n", "", "count")`` the group sizes; per numeric variable ``count``,
        ``missing``, ``mean``, ``std`` (ddof=1) and the quartiles; per categorical value
        ``count`` and ``percent`` (of the records with a value; ``<missing>``: of all). Provenance
        in ``df.attrs``; withheld values are NaN, named in ``df.attrs["suppressed"]``.

    Warns
    -----
    DisclosureWarning
        When a node withheld part of the table.

    Raises
    ------
    DisclosureRefused
        When a node refused its part (the default policy refuses a table with a cell below its
        minimum: group categories, or leave that organization out).

    Examples
    --------
    >>> from vantage6nb import analysis
    >>> analysis.table1(client, ["bill_length_mm", "island"], group="species")  # doctest: +SKIP
    """
    from .algorithms.table1 import table1_frame

    task, names = _run(
        client,
        TABLE1_IMAGE,
        "table1",
        {"columns": _names(columns), "group": group, "categorical": _names(categorical)}
        | ({"bins": _bins(bins)} if bins is not None else {}),
        collaboration,
        organizations,
        database,
        timeout,
        name=f"table1 by {group}" if group else "table1",
    )
    result = _result(task, "kinds")
    df = table1_frame(result)
    _warn(client, task, _withheld_values(result, "table1"))
    return _provenance(df, task, names)


def chi2(
    client: Client,
    row: str,
    col: str,
    *,
    exact: bool | None = None,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """The chi-square test of independence of two categorical columns, on their pooled crosstab.

    The table comes from the crosstab algorithm (:func:`vantage6nb.analysis.crosstab`); the tests
    are ``scipy.stats.chi2_contingency`` on it, without and (for a 2x2 table) with Yates'
    correction, and Fisher's exact test (``scipy.stats.fisher_exact``) for a 2x2 table when an
    expected count is below 5 (``exact=None``), always (``True``) or never (``False``).

    Returns
    -------
    pandas.DataFrame
        Indexed by test (``pearson``, ``yates``, ``fisher``): ``statistic`` (the odds ratio for
        Fisher), ``df``, ``p_value``. ``df.attrs["observed"]`` and ``df.attrs["expected"]`` hold
        the tables (``{row value: {col value: n}}``), with the crosstab's provenance.

    Raises
    ------
    DisclosureRefused
        When a node refused its table or withheld a cell: the test needs every cell.

    Examples
    --------
    >>> analysis.chi2(client, "species", "island")  # doctest: +SKIP
    """
    from .analysis import crosstab

    observed = crosstab(
        client,
        row,
        col,
        collaboration,
        organizations,
        dropna=True,  # the test is on the records with both values, as scipy's on pandas'
        database=database,
        timeout=timeout,
    )
    if observed.isna().any().any() or observed.empty:
        raise DisclosureRefused(
            f"Task {observed.attrs.get('task_id')}: the chi-square test of {row} x {col} needs "
            "every cell of the pooled table, and a node withheld some (see the warning). Group "
            "categories so that no cell is small, or ask the data owner about the policy.",
            rule="min_count",
            what=f"cells of {row} x {col}",
        )
    df = chi2_tests(observed, exact=exact)
    df.attrs.update({k: v for k, v in observed.attrs.items() if k not in ("kind", "suppressed")})
    return df


def chi2_tests(observed: pd.DataFrame, *, exact: bool | None = None) -> pd.DataFrame:
    """The tests of :func:`chi2` on a contingency table (a crosstab frame with no withheld cell).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame([[12, 5], [5, 30]], index=pd.Index(["a", "b"], name="r"),
    ...                  columns=pd.Index(["x", "y"], name="c"))
    >>> chi2_tests(t).index.tolist()
    ['pearson', 'yates']
    """
    import pandas as pd
    from scipy import stats

    row, col = observed.index.name, observed.columns.name
    table = observed.to_numpy(dtype="int64")
    if table.shape[0] < 2 or table.shape[1] < 2:
        raise ValidationError(
            f"A chi-square test needs at least two values of each column; {row} has "
            f"{table.shape[0]} and {col} {table.shape[1]}.",
            errors={"table": list(table.shape)},
        )
    rows: dict[str, dict[str, float]] = {}
    plain = stats.chi2_contingency(table, correction=False)
    rows["pearson"] = {"statistic": plain.statistic, "df": plain.dof, "p_value": plain.pvalue}
    if plain.dof == 1:
        yates = stats.chi2_contingency(table, correction=True)
        rows["yates"] = {"statistic": yates.statistic, "df": yates.dof, "p_value": yates.pvalue}
    small = bool((plain.expected_freq < 5).any())
    if exact and table.shape != (2, 2):
        raise ValidationError(
            f"Fisher's exact test here is for a 2x2 table; {row} x {col} is "
            f"{table.shape[0]}x{table.shape[1]}.",
            errors={"exact": "needs a 2x2 table"},
        )
    if table.shape == (2, 2) and (exact or (exact is None and small)):
        fisher = stats.fisher_exact(table)
        rows["fisher"] = {"statistic": fisher.statistic, "df": math.nan, "p_value": fisher.pvalue}
    df = pd.DataFrame.from_dict(rows, orient="index").astype("float64")
    df.index.name = "test"
    expected = pd.DataFrame(plain.expected_freq, index=observed.index, columns=observed.columns)
    df.attrs.update(
        kind="chi2",
        row=row,
        col=col,
        observed=_nested(observed),
        expected=_nested(expected),
        min_expected=float(plain.expected_freq.min()),
    )
    return df


def ttest(
    client: Client,
    column: str,
    group: str,
    *,
    levels: Sequence[Any] | None = None,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """Welch's and the pooled-variance two-sample t-test of ``column`` between two groups.

    Each node releases the count, mean and M2 of ``column`` per group (moments its policy
    checks); the tests are computed from the pooled moments as ``scipy.stats.ttest_ind`` (with
    ``equal_var=False`` and ``True``) computes them on the pooled data.

    Parameters
    ----------
    column, group : str
        The numeric column, and the column whose values are the groups.
    levels : sequence, optional
        The two groups to compare (the first minus the second); default: the only two.

    Returns
    -------
    pandas.DataFrame
        Rows ``welch`` and ``pooled``: ``statistic``, ``df``, ``p_value``, ``mean_diff``,
        ``ci_low``, ``ci_high`` (95%); ``df.attrs["groups"]`` the groups' n, mean and std.

    Examples
    --------
    >>> analysis.ttest(client, "body_mass_g", "sex")  # doctest: +SKIP
    """
    from .algorithms._stats import label_key
    from .algorithms.ttest import ttest_frame

    task, names = _run(
        client,
        TTEST_IMAGE,
        "ttest",
        {"column": column, "group": group},
        collaboration,
        organizations,
        database,
        timeout,
        name=f"ttest {column} by {group}",
    )
    result = _result(task, "strata")
    chosen = list(levels) if levels is not None else None
    picked = (
        [result["strata"].get(label_key(v)) for v in chosen]
        if chosen is not None
        else list(result["strata"].values())
    )
    hidden = [(f"the moments of {column} in a group", v) for v in picked if is_suppressed(v)]
    if hidden:
        _refuse(client, task, hidden)
    return _provenance(ttest_frame(result, levels=chosen), task, names)


def correlation(
    client: Client,
    columns: Sequence[str] | str | None = None,
    *,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """The Pearson correlation matrix of numeric ``columns``, as ``pandas.DataFrame.corr()``.

    Pairwise complete, as pandas: each entry uses the records where both columns have a value
    (``df.attrs["n"]`` gives how many). A pair a node withheld (fewer than its minimum of records,
    or ``2 > glm_ratio * n``, or dominated) is NaN, named in ``df.attrs["suppressed"]``.

    Examples
    --------
    >>> analysis.correlation(client, ["bill_length_mm", "body_mass_g"])  # doctest: +SKIP
    """
    from .algorithms.correlation import correlation_frame

    task, names = _run(
        client,
        CORRELATION_IMAGE,
        "correlation",
        {"columns": _names(columns)},
        collaboration,
        organizations,
        database,
        timeout,
        name="correlation",
    )
    result = _result(task, "pairs")
    df = correlation_frame(result)
    pairs = list((result.get("pairs") or {}).values())
    everything = bool(pairs) and all(is_suppressed(p) for p in pairs)
    _warn(client, task, _withheld_values(result, "correlation"), everything=everything)
    return _provenance(df, task, names)


def kaplan_meier(
    client: Client,
    time: str,
    event: str,
    group: str | None = None,
    *,
    bins: float | Sequence[float] | None = None,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """Kaplan-Meier curves by group with the log-rank test, as lifelines computes them.

    Each node releases its counts of events and censored records per time (per time bin with
    ``bins``), a table its policy checks cell by cell: under the default policy one cell below
    the minimum refuses the node's part, so exact times rarely pass; ``bins`` (a width, e.g.
    ``30`` days, or edges ``[0, 30, 90, 180, 365]``) rounds times up to the bin edges first, and
    censors at the last edge. The curves and the test are exact for the (binned) times:
    lifelines on the pooled data with the same times gives the same numbers.

    Parameters
    ----------
    time, event : str
        The follow-up time, and whether it ended in the event (1/True) or was censored (0/False).
    group : str, optional
        One curve per value; with two or more, the log-rank test.
    bins : float or sequence of float, optional
        A bin width, or increasing bin edges.

    Returns
    -------
    pandas.DataFrame
        Indexed by (group, time): ``at_risk``, ``events``, ``censored``, ``survival``, ``ci_low``,
        ``ci_high`` (95%, exponential Greenwood, as lifelines). ``df.attrs["logrank"]`` holds
        ``statistic``, ``df``, ``p_value``; ``df.attrs["median"]`` the median survival per group.

    Examples
    --------
    >>> analysis.kaplan_meier(client, "days", "died", group="arm", bins=30)  # doctest: +SKIP
    """
    from .algorithms.survival import survival_frame

    task, names = _run(
        client,
        SURVIVAL_IMAGE,
        "kaplan_meier",
        {"time": time, "event": event, "group": group, "bins": _time_bins(bins)},
        collaboration,
        organizations,
        database,
        timeout,
        name=f"kaplan_meier {time} by {group}" if group else f"kaplan_meier {time}",
    )
    result = _result(task, "table")
    df = survival_frame(result)
    table = result["table"]
    withheld = []
    if is_suppressed(table):
        withheld.append(("the event table", table))
    elif any(c[-1] is None for c in table.get("cells") or []):
        ids = sorted(
            {o for v in result.get("suppressed") or [] for o in v.get("organizations") or []}
        )
        withheld.append(
            (
                "cells of the event table (the curves with one are withheld; widen the bins)",
                {"rule": "min_count", "threshold": None, "organizations": ids},
            )
        )
    if is_suppressed(result.get("dropped")):
        withheld.append(("the number of records without a time or event", result["dropped"]))
    _warn(client, task, withheld, everything=is_suppressed(table))
    return _provenance(df, task, names)


def plot_result(df: pd.DataFrame, *, ax: Any = None) -> Any:
    """Plot a statistics-pack result (by ``df.attrs["kind"]``); returns the matplotlib Axes.

    table1: mean ± std of each numeric variable per group; chi2: the observed counts; ttest:
    each group's mean with its 95% interval; correlation: the matrix as a heat map;
    kaplan_meier: the curves (steps) with their 95% bands.

    Examples
    --------
    >>> ax = analysis.plot_result(analysis.kaplan_meier(client, "t", "e", "arm", bins=30))  # doctest: +SKIP
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the dev extra
        raise ImportError("plot_result needs matplotlib: pip install matplotlib") from exc
    kind = df.attrs.get("kind")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    if kind == "kaplan_meier":
        group = df.attrs.get("group")
        for label, curve in df.groupby(level=0, sort=False):
            curve = curve.droplevel(0)
            shown = str(label) if group else "all"
            ax.step(curve.index, curve["survival"], where="post", label=shown)
            ax.fill_between(curve.index, curve["ci_low"], curve["ci_high"], step="post", alpha=0.2)
        ax.set_xlabel(str(df.attrs.get("time") or "time"))
        ax.set_ylabel("survival")
        ax.set_ylim(0, 1.05)
        test = df.attrs.get("logrank")
        if test and not math.isnan(test["p_value"]):
            ax.set_title(f"log-rank p = {test['p_value']:.3g}")
        if group:
            _legend_outside(ax, str(group))
    elif kind == "correlation":
        values = df.to_numpy(dtype="float64")
        image = ax.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(df.columns)), [str(c) for c in df.columns], rotation=45, ha="right")
        ax.set_yticks(range(len(df.index)), [str(c) for c in df.index])
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not math.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax.figure.colorbar(image, ax=ax)
    elif kind == "ttest":
        from scipy import stats

        groups = df.attrs.get("groups") or {}
        names = list(groups)
        means = [groups[g]["mean"] for g in names]
        half = [
            stats.t.ppf(0.975, groups[g]["n"] - 1) * groups[g]["std"] / math.sqrt(groups[g]["n"])
            for g in names
        ]
        ax.errorbar(range(len(names)), means, yerr=half, fmt="o", capsize=6)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_ylabel(str(df.attrs.get("column")))
        ax.set_title(f"Welch p = {df.loc['welch', 'p_value']:.3g}")
    elif kind == "chi2":
        import pandas as pd

        observed = pd.DataFrame(df.attrs["observed"]).T
        observed.plot.bar(ax=ax, rot=0)  # the row values are categories: a year is never 2007.5
        _legend_outside(ax, str(df.attrs.get("col") or ""))
        ax.set_xlabel(str(df.attrs.get("row")))
        ax.set_ylabel("count")
        ax.set_title(f"chi-square p = {df.loc['pearson', 'p_value']:.3g}")
    elif kind == "table1":
        means = df.xs("mean", level="statistic")
        stds = df.xs("std", level="statistic")
        if means.empty:
            raise ValidationError("This Table 1 has no numeric variable to plot.")
        groups = [c for c in df.columns if c != "Overall"] or ["Overall"]
        width = 0.8 / len(groups)
        for i, g in enumerate(groups):
            ax.bar(
                [k + i * width for k in range(len(means))],
                means[g].to_numpy(dtype="float64"),
                width,
                yerr=stds[g].to_numpy(dtype="float64"),
                capsize=3,
                label=str(g),
            )
        ax.set_xticks(
            [k + width * (len(groups) - 1) / 2 for k in range(len(means))],
            [str(v) for v, _ in means.index],
        )
        ax.set_ylabel("mean ± std")
        if len(groups) > 1:
            _legend_outside(ax, str(df.columns.name))
    else:
        raise ValidationError(
            f"plot_result plots table1, chi2, ttest, correlation and kaplan_meier results; this "
            f"frame's kind is {kind!r}.",
            errors={"kind": str(kind)},
        )
    return ax


def _legend_outside(ax: Any, title: str) -> None:
    """The legend right of the axes, never over a curve or a bar (inline figures are saved
    with ``bbox_inches="tight"``, which keeps it)."""
    ax.legend(title=title or None, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


# -- shared steps --------------------------------------------------------------------------------
def _run(
    client: Client,
    image: str,
    method: str,
    kwargs: dict[str, Any],
    collaboration: int | str | None,
    organizations: Sequence[int | str] | None,
    database: str,
    timeout: float | None,
    *,
    name: str,
) -> Any:
    from .analysis import _run_central

    return _run_central(
        client,
        collaboration,
        organizations,
        image=image,
        method=method,
        kwargs=kwargs,
        database=database,
        timeout=timeout,
        name=name,
    )


def _result(task: Any, key: str) -> dict[str, Any]:
    from .analysis import _central_result

    return _central_result(task, key)


def _provenance(df: Any, task: Any, names: list[str]) -> Any:
    from .analysis import _provenance as provenance

    return provenance(df, task, names)


def _warn(
    client: Client, task: Any, withheld: list[tuple[str, Any]], *, everything: bool = False
) -> None:
    from .analysis import _disclose

    _disclose(client, task, withheld, everything=everything)


def _refuse(client: Client, task: Any, withheld: list[tuple[str, Any]]) -> None:
    _warn(client, task, withheld, everything=True)


def _withheld_values(result: Any, kind: str) -> list[tuple[str, Any]]:
    """Every value a node withheld in a result, with what it was, for the warning."""
    found: list[tuple[str, Any]] = []

    def walk(node: Any, where: str) -> None:
        if is_suppressed(node):
            found.append((where, node))
        elif is_typed_value(node, "count_table"):
            if any(c[-1] is None for c in node.get("cells") or []):
                found.append(
                    (
                        f"cells of {' x '.join(map(str, node.get('names') or []))}",
                        {"rule": "min_count", "threshold": None},
                    )
                )
        elif isinstance(node, Mapping) and "@type" not in node:
            for k, v in node.items():
                walk(v, f"{where} {k}".strip() if kind == "table1" else where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    if kind == "correlation":
        for key, pair in (result.get("pairs") or {}).items():
            if is_suppressed(pair):
                found.append((f"the pair {' x '.join(_pair(key))}", pair))
    else:
        for key in ("sizes", "group_missing", "rows"):
            walk(result.get(key), _TABLE1_WHAT.get(key, key))
        for name, stats in (result.get("numeric") or {}).items():
            for v in [stats.get("overall"), *(stats.get("strata") or {}).values()]:
                walk(v, f"column '{name}'")
        for name, table in (result.get("categorical") or {}).items():
            walk(table, f"the table of '{name}'")
        hist = result.get("histograms")
        if is_suppressed(hist):
            found.append(("the binned quartiles", hist))
        elif isinstance(hist, Mapping):
            for name, h in hist.items():
                walk(h.get("table"), f"the bins of '{name}'")
    # one entry per place, so a column withheld in three groups reads once
    unique: dict[str, Any] = {}
    for where, value in found:
        unique.setdefault(where, value)
    return list(unique.items())


_TABLE1_WHAT = {
    "sizes": "the group sizes",
    "group_missing": "the number of rows without a group",
    "rows": "the number of rows",
}


def _pair(key: str) -> list[str]:
    import json

    return [str(v) for v in json.loads(key)]


def _names(columns: Sequence[str] | str | None) -> list[str] | None:
    if columns is None:
        return None
    return [columns] if isinstance(columns, str) else list(columns)


def _bins(bins: Any) -> Any:
    if isinstance(bins, Mapping):
        return {str(k): [float(e) for e in v] for k, v in bins.items()}
    return bins


def _time_bins(bins: Any) -> Any:
    if bins is None or isinstance(bins, (int, float)):
        return bins
    return [float(e) for e in bins]


def _nested(frame: Any) -> dict[Any, dict[Any, Any]]:
    return {
        _plain(r): {_plain(c): _plain(v) for c, v in row.items()} for r, row in frame.iterrows()
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
