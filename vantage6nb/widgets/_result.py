"""ResultView: a task's result as a sortable, consistently formatted table, a plot and export."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

__all__ = [
    "SIGNIFICANT",
    "ResultView",
    "breakdown",
    "cell_states",
    "figure",
    "format_count",
    "format_p",
    "format_stat",
    "guess_kind",
    "plot_png",
    "results_to_frame",
    "table_html",
    "text_table",
]

SIGNIFICANT = 4  # significant digits of a statistic in a table
MISSING_LABEL = "(missing)"  # the crosstab's missing category, as tables and plots show it
# a cell's sort key rides after its display text in an HTML comment: invisible in the fallback
# table itables shows before its JavaScript runs, read by the DataTables renderer (_RENDER)
_KEY = "<!--v6nb:{}-->"
_COUNT_NAMES = frozenset({"count", "missing", "n", "rows", "df", "events", "at_risk", "records"})
_P_NAMES = frozenset({"p", "p_value", "pvalue", "p-value", "p_val", "pr(>|z|)", "p>|z|"})
_CSS = """<style>
.v6nb-table td.v6nb-num, .v6nb-table th.v6nb-num {text-align: right; font-variant-numeric: tabular-nums}
.v6nb-suppressed {color: #8d6e00; background: #fff3c4; border-radius: 3px; padding: 0 4px;
  font-style: italic; font-size: 90%}
.v6nb-missing {color: #616161; font-style: italic}
.v6nb-na {color: #9e9e9e}
</style>"""


def results_to_frame(results: Any, organizations: list[str] | None = None) -> pd.DataFrame:
    """Turn task results (one per organization) into a DataFrame, whatever their shape.

    One result that is a mapping of mappings becomes one row per key (a central result such as a
    summary); a list of flat mappings becomes one row per organization, labelled with its name
    (from ``organizations``, or from ``task.results()``, which knows them); anything else is one
    row per organization with the result as JSON text.

    Examples
    --------
    >>> results_to_frame([{"a": {"count": 3}, "b": {"count": 4}}])
       count
    a      3
    b      4
    >>> results_to_frame([{"n": 1}, {"n": 2}], ["Leiden", "Utrecht"])
                  n
    organization
    Leiden        1
    Utrecht       2
    """
    if isinstance(results, pd.DataFrame):
        return results
    items = list(results) if isinstance(results, list | tuple) else [results]
    names = list(organizations or getattr(results, "organizations", None) or [])
    labelled = len(names) == len(items)
    index = pd.Index(names, name="organization") if labelled else pd.RangeIndex(len(items))
    if len(items) == 1 and isinstance(items[0], dict) and items[0]:
        only = items[0]
        if all(isinstance(v, dict) for v in only.values()):
            return pd.DataFrame.from_dict(only, orient="index")
        if all(isinstance(v, list) for v in only.values()):
            lengths = {len(v) for v in only.values()}
            if len(lengths) == 1:
                return pd.DataFrame(only)
    if items and all(isinstance(r, dict) for r in items):
        if all(not isinstance(v, dict | list) for r in items for v in r.values()):
            return pd.DataFrame(items, index=index)
    return pd.DataFrame({"result": [json.dumps(r, default=str) for r in items]}, index=index)


def guess_kind(df: pd.DataFrame) -> str:
    """``"summary"`` for a frame with count/mean columns, ``"crosstab"`` for an all-count table, else ``""``.

    Examples
    --------
    >>> guess_kind(pd.DataFrame({"count": [1], "mean": [2.0]}))
    'summary'
    """
    kind = str(df.attrs.get("kind") or "")
    if kind:
        return kind
    cols = {str(c) for c in df.columns}
    if {"count", "mean"} <= cols:
        return "summary"
    if len(df) and len(df.columns) and all(pd.api.types.is_integer_dtype(t) for t in df.dtypes):
        return "crosstab"
    return ""


# -- number formatting -----------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value
        return False


def format_count(value: Any) -> str:
    """A count as an integer with thousands separators.

    Examples
    --------
    >>> format_count(4202), format_count(342.0)
    ('4,202', '342')
    """
    return f"{int(value):,}"


def format_stat(value: Any, significant: int = SIGNIFICANT, *, grouping: bool = True) -> str:
    """A statistic to ``significant`` digits, trailing zeros kept, with thousands separators
    (``grouping=False``: none, for a year); very small values in scientific notation.

    Examples
    --------
    >>> [format_stat(v) for v in (4201.754, 801.9545, 0.81838, 43.9219, 0.0)]
    ['4,202', '802.0', '0.8184', '43.92', '0']
    >>> format_stat(123456.7), format_stat(0.0000123)
    ('123,457', '1.230e-05')
    """
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude < -4:
        return f"{v:.{significant - 1}e}"
    decimals = max(significant - 1 - magnitude, 0)
    return f"{v:,.{decimals}f}" if grouping else f"{v:.{decimals}f}"


def format_p(value: Any) -> str:
    """A p-value: four decimals, ``< 0.0001`` below that.

    Examples
    --------
    >>> format_p(0.04567), format_p(3e-9), format_p(1.0)
    ('0.0457', '< 0.0001', '1.0000')
    """
    v = float(value)
    return "< 0.0001" if v < 0.0001 else f"{v:.4f}"


def _column_format(df: pd.DataFrame, label: Any) -> str:
    """``count``, ``p``, ``stat`` or ``text`` for one column of ``df``."""
    series = df[label]
    name = str(label[-1] if isinstance(label, tuple) else label).strip().lower()
    if pd.api.types.is_bool_dtype(series.dtype):
        return "text"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "count"
    numeric = pd.to_numeric(series, errors="coerce")
    present = series[series.map(lambda v: not _missing(v))]
    if present.empty or numeric[present.index].isna().any():
        return "count" if (df.attrs.get("kind") == "crosstab" and present.empty) else "text"
    if name in _P_NAMES or name.startswith("p_") or name.endswith("p_value"):
        return "p"
    whole = bool(((numeric.dropna() % 1) == 0).all())
    if whole and (name in _COUNT_NAMES or df.attrs.get("kind") == "crosstab"):
        return "count"
    return "stat"


def _suppressed_cells(df: pd.DataFrame) -> tuple[set[tuple[int, int]], dict[int, str]]:
    """Positions of cells a node's policy withheld, and the reason per withheld row."""
    kind = df.attrs.get("kind")
    withheld = df.attrs.get("suppressed")
    cells: set[tuple[int, int]] = set()
    rows: dict[int, str] = {}
    if kind == "crosstab" and isinstance(withheld, list):
        index = {_identity(v): i for i, v in enumerate(df.index)}
        columns = {_identity(v): j for j, v in enumerate(df.columns)}
        for item in withheld:
            if isinstance(item, list | tuple) and len(item) == 2:
                r, c = _identity(item[0]), _identity(item[1])
                i, j = index.get(r), columns.get(c)
                if i is None or j is None:  # the table transposed (df.T)
                    i, j = index.get(c), columns.get(r)
                if i is not None and j is not None:
                    cells.add((i, j))
    elif kind == "summary" and isinstance(withheld, dict):  # per row (column) with the reason
        for i, label in enumerate(df.index):
            if label in withheld:
                rows[i] = str(withheld[label])
                cells.update((i, j) for j in range(len(df.columns)))
    elif withheld and kind not in ("summary", "crosstab"):  # the statistics pack: NaN = withheld
        reason = "; ".join(
            f"{k}: {v}" for k, v in (withheld.items() if isinstance(withheld, dict) else [])
        )
        for i in range(len(df)):
            for j in range(len(df.columns)):
                if _missing(df.iat[i, j]):
                    cells.add((i, j))
                    rows.setdefault(i, reason or "withheld by a node's disclosure policy")
    if kind == "summary":  # extremes the nodes withhold (each is one record's value)
        for j, col in enumerate(df.columns):
            if str(col) in ("min", "max"):
                for i in range(len(df)):
                    if _missing(df.iat[i, j]) and i not in rows:
                        cells.add((i, j))
                        rows.setdefault(-1 - i, "extremes withheld by the nodes' disclosure policy")
    return cells, rows


def _identity(value: Any) -> str:
    return "null" if _missing(value) else json.dumps(value, default=str)


def cell_states(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell: ``"suppressed"`` (withheld by a node's disclosure policy), ``"na"`` (missing
    for another reason) or ``""``; from ``df.attrs["suppressed"]`` and the kind of result.

    Examples
    --------
    >>> from vantage6nb.algorithms.crosstab import crosstab_frame
    >>> t = crosstab_frame({"table": {"@type": "count_table", "names": ["a", "b"],
    ...                               "cells": [["x", 1, 7], ["y", 2, None]]}})
    >>> cell_states(t).loc["y", 2]
    'suppressed'
    """
    cells, _ = _suppressed_cells(df)
    states = [
        [
            "suppressed" if (i, j) in cells else ("na" if _missing(df.iat[i, j]) else "")
            for j in range(len(df.columns))
        ]
        for i in range(len(df))
    ]
    return pd.DataFrame(states, index=df.index, columns=df.columns)


def _label_html(value: Any) -> str:
    if isinstance(value, tuple):
        return " / ".join(_label_html(v) for v in value if v != "")
    if _missing(value):
        return f"<span class='v6nb-missing' title='missing value'>{MISSING_LABEL}</span>"
    return html.escape(str(value))


def _label_text(value: Any) -> str:
    if isinstance(value, tuple):
        return " / ".join(_label_text(v) for v in value if v != "")
    return MISSING_LABEL if _missing(value) else str(value)


def _cell_texts(df: pd.DataFrame) -> tuple[list[list[tuple[str, str, Any]]], list[str]]:
    """Each cell as (state, text, sort key) with state ``"suppressed"`` (text: the reason),
    ``"na"`` or ``""``, and each column's format: what the HTML table and the text table show."""
    formats = [_column_format(df, c) for c in df.columns]
    cells, reasons = _suppressed_cells(df)
    # a year is written 2008, not 2,008: the summary's row of a year column, a year column
    years = {i for i, v in enumerate(df.index) if "year" in _label_text(v).lower()}
    # a row of counts in a long table (Table 1's ("n", "", "count"), (age, "", "missing"))
    count_rows = {
        i
        for i, v in enumerate(df.index)
        if str(v[-1] if isinstance(v, tuple) else "").strip().lower() in _COUNT_NAMES
    }
    year_columns = {j for j, c in enumerate(df.columns) if "year" in _label_text(c).lower()}
    rows = []
    for i in range(len(df)):
        row: list[tuple[str, str, Any]] = []
        reason = reasons.get(i) or reasons.get(-1 - i) or "withheld by a node's disclosure policy"
        for j, fmt in enumerate(formats):
            value = df.iat[i, j]
            if (i, j) in cells:
                row.append(("suppressed", reason, None))
            elif _missing(value):
                row.append(("na", "–", None))
            elif fmt == "count" or (
                fmt == "stat" and i in count_rows and float(value).is_integer()
            ):
                row.append(("", format_count(value), float(value)))
            elif fmt == "stat":
                plain = j in year_columns or (i in years and df.attrs.get("kind") == "summary")
                row.append(("", format_stat(value, grouping=not plain), float(value)))
            elif fmt == "p":
                row.append(("", format_p(value), float(value)))
            else:
                row.append(("", str(value), str(value)))
        rows.append(row)
    return rows, formats


def _cells(df: pd.DataFrame) -> tuple[list[list[tuple[str, Any]]], list[str]]:
    """Each cell as (display HTML, sort key), and each column's format."""
    texts, formats = _cell_texts(df)
    rows = []
    for row in texts:
        out: list[tuple[str, Any]] = []
        for state, text, key in row:
            if state == "suppressed":
                shown = (
                    f"<span class='v6nb-suppressed' title='{html.escape(text, quote=True)}'>"
                    "suppressed</span>"
                )
            elif state == "na":
                shown = "<span class='v6nb-na' title='not available'>–</span>"
            else:
                shown = html.escape(text)
            out.append((shown, key))
        rows.append(out)
    return rows, formats


def text_table(df: pd.DataFrame) -> str:
    """The table as a terminal shows it: numbers formatted as in the notebook's table, withheld
    cells as ``suppressed``, missing ones as ``–``.

    Examples
    --------
    >>> t = pd.DataFrame({"count": [342], "mean": [4201.754386], "min": [float("nan")]},
    ...                  index=pd.Index(["body_mass_g"], name="column"))
    >>> t.attrs["kind"] = "summary"
    >>> print(text_table(t))
                count   mean         min
    column
    body_mass_g   342  4,202  suppressed
    """
    texts, _ = _cell_texts(df)
    shown = [["suppressed" if st == "suppressed" else tx for st, tx, _ in row] for row in texts]
    frame = pd.DataFrame(shown, index=df.index, columns=df.columns)
    lines = frame.to_string().splitlines()
    return "\n".join(line.rstrip() for line in lines)


# the DataTables renderer of a cell "display<!--v6nb:key-->": shown as is, sorted by the key
# (a number where it is one: 4,202 sorts as 4202; a withheld cell last)
_RENDER = (
    "function (data, type) { if (typeof data !== 'string') { return data; } "
    "const m = data.match(/<!--v6nb:(.*?)-->$/); if (!m) { return data; } "
    "if (type === 'sort' || type === 'type') { const k = m[1]; "
    "if (k === '') { return type === 'type' ? 0 : Infinity; } "
    "const n = Number(k); return Number.isNaN(n) ? k : n; } "
    "return data.slice(0, data.length - m[0].length); }"
)
_bundle_sent = False


def _itables_init() -> str:
    """The HTML that loads itables' offline bundle (DataTables, no internet) into the page."""
    from itables import javascript as itjs
    from itables import options

    init = itjs.read_package_file("html/init_datatables.html")
    init = itjs.replace_value(
        init,
        "import { set_or_remove_dark_class } from '" + itjs.UNPKG_DT_BUNDLE_URL_NO_VERSION + "';",
        "const { set_or_remove_dark_class } = await window."
        + itjs._itables_underscore_version()
        + ";",
    )
    return init + itjs.generate_init_offline_itables_html(options.dt_bundle)


def table_html(
    df: pd.DataFrame, *, interactive: bool | None = None, bundle: bool | None = None
) -> str:
    """The table as HTML: sortable (itables, offline) where it is installed, else a static table.

    Counts are integers with thousands separators, statistics have :data:`SIGNIFICANT`
    significant digits, p-values four decimals (``< 0.0001`` below); a cell a node's disclosure
    policy withheld shows ``suppressed`` (styled, its reason on hover), the crosstab's missing
    category ``(missing)``, any other missing value ``–``.

    Parameters
    ----------
    interactive : bool, optional
        False: a static table; None: sortable when itables is installed.
    bundle : bool, optional
        Include itables' JavaScript bundle (about 700 kB, no internet needed); None: in the first
        table of this Python process only (later tables use the loaded one).

    Examples
    --------
    >>> html_text = table_html(pd.DataFrame({"count": [4202], "mean": [801.95]}), interactive=False)
    >>> "4,202" in html_text and "802.0" in html_text
    True
    """
    global _bundle_sent
    rows, formats = _cells(df)
    index_names = [n for n in df.index.names]
    show_index = not (isinstance(df.index, pd.RangeIndex) and df.index.names == [None])
    if interactive is None:
        try:
            import itables  # noqa: F401
        except ImportError:
            interactive = False
        else:
            interactive = True
    numeric = [f in ("count", "stat", "p") for f in formats]
    if interactive:
        from itables import JavascriptFunction, to_html_datatable

        data = pd.DataFrame(
            [
                [shown + _KEY.format("" if key is None else _comment(key)) for shown, key in row]
                for row in rows
            ],
            columns=[_label_text(c) for c in df.columns],
        )
        if show_index:  # a first column, not pandas' index: one header row, every head sorts
            keys = ["" if _missing(v) else _comment(_label_text(v)) for v in df.index]
            data.insert(
                0,
                " / ".join(str(n) for n in index_names if n is not None),
                [_label_html(v) + _KEY.format(k) for v, k in zip(df.index, keys, strict=True)],
                allow_duplicates=True,
            )
        offset = 1 if show_index else 0
        targets = list(range(offset + len(df.columns)))
        out = to_html_datatable(
            data,
            connected=False,
            allow_html=True,
            showIndex=False,
            text_in_header_can_be_selected=False,  # a click on a header sorts by it
            classes="display compact v6nb-table",
            columnDefs=[
                {"targets": targets, "render": JavascriptFunction(_RENDER)},
                {
                    "targets": [offset + j for j, n in enumerate(numeric) if n],
                    "className": "dt-right v6nb-num",
                },
            ],
            layout={  # search, "1 to 10 of 40" and pages only where a table is long
                "topStart": None,
                "topEnd": "search" if len(df) > 10 else None,
                "bottomStart": "info" if len(df) > 25 else None,
                "bottomEnd": "paging" if len(df) > 25 else None,
            },
            paging=len(df) > 25,
            caption=_caption(df),
        )
        send = (not _bundle_sent) if bundle is None else bundle
        if send:
            out = _itables_init() + out
            _bundle_sent = True
        return _CSS + out
    head = "".join(
        f"<th class='{'v6nb-num' if n else ''}'>{_label_html(c)}</th>"
        for c, n in zip(df.columns, numeric, strict=True)
    )
    index_head = (
        f"<th>{html.escape(' / '.join(str(n) for n in index_names if n is not None))}</th>"
        if show_index
        else ""
    )
    body = []
    for i, row in enumerate(rows):
        label = f"<th>{_label_html(df.index[i])}</th>" if show_index else ""
        tds = "".join(
            f"<td class='{'v6nb-num' if n else ''}'>{shown}</td>"
            for (shown, _), n in zip(row, numeric, strict=True)
        )
        body.append(f"<tr>{label}{tds}</tr>")
    caption = _caption(df)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f"{_CSS}<table class='v6nb-table'>{cap}<thead><tr>{index_head}{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _comment(key: Any) -> str:
    """A sort key as HTML comment text (no ``--``, no ``>``)."""
    return str(key).replace("--", "- -").replace(">", "&gt;")


def _caption(df: pd.DataFrame) -> str:
    if df.attrs.get("kind") == "crosstab" and (df.index.name or df.columns.name):
        return f"{df.index.name} × {df.columns.name}: counts"
    return ""


# -- plots -----------------------------------------------------------------------------------------
def _integer_valued(values: list[float], name: Any = "") -> bool:
    """True for whole numbers (a year, a count): its axis gets integer ticks."""
    found = [v for v in values if v is not None and not _missing(v)]
    if "year" in str(name).lower():
        return True
    return bool(found) and all(float(v).is_integer() for v in found)


def _integer_axis(values: list[float]) -> dict[str, Any]:
    """Plotly axis settings with whole-number ticks only (no 2007.5)."""
    found = [float(v) for v in values if v is not None and not _missing(v)]
    lo, hi = (min(found), max(found)) if found else (0.0, 1.0)
    step = max(1, math.ceil((hi - lo) / 6))
    return {"tickformat": "d", "tickmode": "linear", "tick0": math.floor(lo), "dtick": step}


_PALETTE = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00acc1", "#6d4c41"]
_LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0}


def figure(df: pd.DataFrame, kind: str | None = None, by_organization: Any = None) -> Any:
    """An interactive plotly figure of a summary or crosstab result; None without plotly.

    summary: one panel per column on its own scale (min–max range where released, mean ± std;
    with ``by_organization`` each organization's mean ± std beside the pooled one);
    crosstab: grouped bars with the row values as categories (a year is a category, never
    2007.5), the missing category as ``(missing)`` and withheld cells labelled ``suppressed``;
    ``by_organization`` (``{organization: crosstab frame}``, the parts each node released) adds
    one panel per organization. The legend sits below the panels, never on one.

    Examples
    --------
    >>> from vantage6nb.algorithms.crosstab import crosstab_frame
    >>> t = crosstab_frame({"table": {"@type": "count_table", "names": ["sex", "year"],
    ...                               "cells": [["f", 2007, 7], ["m", 2008, 9]]}})
    >>> fig = figure(t.T)  # doctest: +SKIP
    >>> fig.data[0].type, fig.layout.xaxis.type  # doctest: +SKIP
    ('bar', 'category')
    """
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        return None
    kind = kind or guess_kind(df)
    if kind == "summary":
        numeric = df[pd.to_numeric(df["mean"], errors="coerce").notna()].head(12)
        if numeric.empty:
            return None
        names = [str(n) for n in numeric.index]
        fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.06)
        range_shown = False
        for k, (name, row) in enumerate(numeric.iterrows(), start=1):
            mean = float(row["mean"])
            std = float(row["std"]) if "std" in row and not _missing(row["std"]) else 0.0
            lo = row.get("min")
            hi = row.get("max")
            shown = [mean - std, mean + std]
            if not _missing(lo) and not _missing(hi):
                fig.add_trace(
                    go.Scatter(
                        x=[0, 0],
                        y=[float(lo), float(hi)],
                        mode="lines",
                        line={"color": "#9e9e9e", "width": 6},
                        name="min–max",
                        legendgroup="range",
                        showlegend=not range_shown,
                        hovertemplate=f"{name}: %{{y}}<extra>min–max</extra>",
                    ),
                    row=1,
                    col=k,
                )
                range_shown = True
                shown += [float(lo), float(hi)]
            count = row.get("count")
            orgs = list(dict(by_organization or {}).items())
            for n, (org, part) in enumerate(orgs):
                if name not in part.index or _missing(part.loc[name, "mean"]):
                    continue
                o_mean = float(part.loc[name, "mean"])
                o_std = part.loc[name, "std"] if "std" in part.columns else None
                o_std = 0.0 if _missing(o_std) else float(o_std)
                fig.add_trace(
                    go.Scatter(
                        x=[0.25 * (n + 1)],
                        y=[o_mean],
                        mode="markers",
                        marker={"color": _PALETTE[(n + 1) % len(_PALETTE)], "size": 7},
                        error_y={"type": "data", "array": [o_std], "visible": True},
                        name=str(org),
                        legendgroup=f"org-{org}",
                        showlegend=k == 1,
                        hovertemplate=(
                            f"{name} at {org}<br>mean {format_stat(o_mean)}<br>"
                            f"std {format_stat(o_std)}<extra></extra>"
                        ),
                    ),
                    row=1,
                    col=k,
                )
                shown += [o_mean - o_std, o_mean + o_std]
            fig.add_trace(
                go.Scatter(
                    x=[0],
                    y=[mean],
                    mode="markers",
                    marker={"color": "#1e88e5", "size": 10},
                    error_y={"type": "data", "array": [std], "visible": True},
                    name="mean ± std" + (" (pooled)" if by_organization else ""),
                    legendgroup="mean",
                    showlegend=k == 1,
                    hovertemplate=(
                        f"{name}<br>mean {format_stat(mean)}<br>std {format_stat(std)}"
                        + (f"<br>n {format_count(count)}" if not _missing(count) else "")
                        + "<extra></extra>"
                    ),
                ),
                row=1,
                col=k,
            )
            right = 0.25 * (len(dict(by_organization or {})) + 1)
            fig.update_xaxes(showticklabels=False, range=[-0.6, max(0.6, right)], row=1, col=k)
            integer = _integer_valued(
                [row.get("min"), row.get("max")] if not _missing(lo) else [], name
            )
            if integer:
                fig.update_yaxes(**_integer_axis(shown), row=1, col=k)
        fig.update_layout(
            title={
                "text": "summary, pooled"
                + (" and per organization" if by_organization else " over organizations"),
                "font": {"size": 13},
            },
            legend=_LEGEND_BELOW,
            height=340,
            width=max(360, 150 * len(names) + 80),
            margin={"l": 40, "r": 20, "t": 60, "b": 70},
            template="plotly_white",
        )
        return fig
    if kind == "crosstab":
        panels = [("pooled", df)]
        for org, part in dict(by_organization or {}).items():
            panels.append((str(org), part))
        fig = make_subplots(
            rows=1,
            cols=len(panels),
            subplot_titles=[p for p, _ in panels] if len(panels) > 1 else None,
            shared_yaxes=False,
            horizontal_spacing=0.08,
        )
        palette = _PALETTE
        columns = list(dict.fromkeys(_label_text(c) for _, t in panels for c in t.columns))
        for k, (_, table) in enumerate(panels, start=1):
            states = cell_states(table)
            x = [_label_text(v) for v in table.index]
            for j, col in enumerate(table.columns):
                label = _label_text(col)
                hidden = [states.iat[i, j] == "suppressed" for i in range(len(x))]
                values = [
                    0 if hide else (None if _missing(v) else int(v))
                    for v, hide in zip(table.iloc[:, j].tolist(), hidden, strict=True)
                ]
                colour = palette[columns.index(label) % len(palette)]
                fig.add_trace(
                    go.Bar(
                        x=x,
                        y=values,
                        # a withheld cell: no bar, the word where it would stand
                        text=["suppressed" if hide else "" for hide in hidden],
                        textposition="outside",
                        textangle=-90,
                        textfont={"size": 10, "color": "#8d6e00"},
                        cliponaxis=False,
                        constraintext="none",
                        customdata=["suppressed" if hide else "" for hide in hidden],
                        name=f"{table.columns.name or 'column'} = {label}",
                        legendgroup=label,
                        showlegend=k == 1,
                        marker={"color": colour},
                        hovertemplate=(
                            f"{table.index.name} %{{x}}, {label}: %{{y:,}} %{{customdata}}"
                            "<extra></extra>"
                        ),
                    ),
                    row=1,
                    col=k,
                )
            # the row values are categories, in the table's order: a year is never 2007.5
            fig.update_xaxes(
                type="category",
                categoryorder="array",
                categoryarray=x,
                title={"text": str(table.index.name or "")},
                row=1,
                col=k,
            )
            fig.update_yaxes(tickformat=",d", rangemode="tozero", row=1, col=k)
        fig.update_yaxes(title={"text": "count"}, row=1, col=1)
        fig.update_layout(
            barmode="group",
            title={"text": f"{df.index.name} × {df.columns.name}", "font": {"size": 13}},
            legend=_LEGEND_BELOW | {"y": -0.28},
            height=380,
            width=max(480, 420 * len(panels)),
            margin={"l": 50, "r": 20, "t": 60, "b": 100},
            template="plotly_white",
        )
        return fig
    return None


def plot_png(df: pd.DataFrame, kind: str) -> bytes | None:
    """A static PNG of a summary (mean ± std per column) or crosstab (grouped bars), the
    fallback without plotly; None without matplotlib. The legend sits below the panels."""
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone
        from matplotlib.ticker import MaxNLocator, StrMethodFormatter
    except ImportError:
        return None
    if kind == "summary":
        numeric = df[pd.to_numeric(df["mean"], errors="coerce").notna()].head(8)
        if numeric.empty:
            return None
        # one panel per column, each on its own scale: min-max range, mean ± std
        fig = Figure(figsize=(1.6 * len(numeric) + 0.6, 3.2), dpi=100)
        axes = fig.subplots(1, len(numeric), squeeze=False)[0]
        for ax, (name, row) in zip(axes, numeric.iterrows(), strict=True):
            lo, hi, mean = row.get("min"), row.get("max"), float(row["mean"])
            std = float(row["std"]) if "std" in row and pd.notna(row["std"]) else 0.0
            known = not _missing(lo) and not _missing(hi)
            if known:
                ax.vlines(0, float(lo), float(hi), colors="#9e9e9e", linewidth=2, label="min–max")
            ax.errorbar(
                [0], [mean], yerr=[std], fmt="o", color="#1e88e5", capsize=6, label="mean ± std"
            )
            ax.set_xticks([])
            ax.set_title(str(name), fontsize="small")
            ax.tick_params(axis="y", labelsize="x-small")
            if _integer_valued([lo, hi] if known else [], name):
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize="x-small", loc="lower center", ncol=len(labels))
        fig.suptitle("summary, pooled over organizations", fontsize="small")
        fig.tight_layout(rect=(0, 0.1, 1, 1))
    elif kind == "crosstab":
        fig = Figure(figsize=(6.5, 3.6), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        table = df.apply(pd.to_numeric, errors="coerce").fillna(0)
        width = 0.8 / max(len(table.columns), 1)
        for i, col in enumerate(table.columns):
            xs = [j + i * width for j in range(len(table.index))]
            ax.bar(xs, table[col], width=width, label=_label_text(col))
        ax.set_xticks([j + (len(table.columns) - 1) * width / 2 for j in range(len(table.index))])
        ax.set_xticklabels([_label_text(i) for i in table.index])  # categories: 2007, not 2007.5
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("count")
        ax.set_title(f"{table.index.name or 'row'} × {table.columns.name or 'column'}")
        fig.legend(
            fontsize="small", loc="lower center", ncol=min(len(table.columns), 6), frameon=False
        )
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    else:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def breakdown(client: Any, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A crosstab's table or a summary's statistics per organization, where the nodes' policies
    released them.

    The pooled table comes from a central task whose subtask ran the partial at each
    organization; each node checked its own table against its disclosure policy before it left
    the station, so what the researcher can read of it is released. Organizations whose part was
    refused or is unreadable are left out; a statistic a node withheld is NaN. ``{}`` for other
    results.

    Examples
    --------
    >>> table = analysis.crosstab(client, "species", "island")  # doctest: +SKIP
    >>> ResultView(table, by_organization=breakdown(client, table))  # doctest: +SKIP
    """
    import warnings

    from ..algorithms.crosstab import crosstab_frame
    from ..algorithms.summary import summary_frame
    from ..common.errors import V6Error

    task_id = df.attrs.get("task_id")
    kind = df.attrs.get("kind")
    if kind not in ("crosstab", "summary") or task_id is None:
        return {}
    out: dict[str, pd.DataFrame] = {}
    try:
        subtasks = client.task.get(int(task_id)).subtasks()
    except V6Error:
        return {}
    for sub in subtasks:
        names = sub.organization_names()
        released = [
            names.get(int(r["organization_id"]), str(r["organization_id"]))
            for r in sub.runs
            if str(r.get("status")) == "completed"  # refused, failed: nothing was released
        ]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a subtask's results carry no binding of ours
                parts = sub.results_by_organization()
        except V6Error:
            continue
        for name in released:
            if parts.get(name) is None:
                continue
            if kind == "summary":
                part = summary_frame(parts[name])
                if "mean" in part.columns:
                    out[name] = part.reindex(index=df.index)
                continue
            part = crosstab_frame(parts[name])
            if part.index.name is None or part.empty:
                continue
            out[name] = part.reindex(index=df.index, columns=df.columns, fill_value=0)
    return out


def _plot_bundle(df: pd.DataFrame, kind: str, by_organization: Any) -> tuple[Any, dict[str, Any]]:
    """(plotly figure or None, the display bundle).

    With plotly: its JSON (JupyterLab's plotly renderer draws it, offline) and, for a frontend
    without that renderer, the static PNG inside ``text/html``; no ``image/png`` beside the JSON,
    which the plotly renderer would show instead of the figure until the mouse comes by. Without
    plotly: the static PNG (matplotlib).
    """
    fig = figure(df, kind, by_organization)
    data: dict[str, Any] = {"text/plain": f"<{kind} plot>"}
    png = plot_png(df, kind)
    encoded = base64.b64encode(png).decode("ascii") if png is not None else None
    if fig is not None:
        import plotly.io as pio

        data["application/vnd.plotly.v1+json"] = json.loads(pio.to_json(fig, validate=False))
        if encoded is not None:
            data["text/html"] = (
                f"<img alt='{html.escape(kind)} plot' src='data:image/png;base64,{encoded}'>"
            )
    elif encoded is not None:
        data["image/png"] = encoded
    else:
        data["text/html"] = (
            "<i>No plot: install plotly (interactive) or matplotlib "
            "(<code>pip install plotly</code>).</i>"
        )
    return fig, data


class ResultView(widgets.VBox):
    """A result as a sortable table, a plot for summaries and crosstabs, and export buttons.

    :attr:`dataframe` holds the result, :attr:`table_html` the table's HTML, :attr:`figure` the
    plotly figure (None without plotly: the plot is then a static PNG). The CSV and Parquet
    buttons write the table with its provenance (:func:`vantage6nb.client.export`) into
    ``export_dir``.

    Parameters
    ----------
    data : DataFrame, or results (list of per-organization results)
        What to show. Results that are not a DataFrame go through :func:`results_to_frame`.
    kind : str, optional
        ``"summary"`` or ``"crosstab"`` for a plot; guessed from the columns when omitted.
    plot : bool
        False shows only the table.
    by_organization : dict, optional
        ``{organization: frame}``: the parts each node released (a crosstab's per-node tables,
        where their policies release them) for one plot panel per organization.
    export_dir : path
        Where the export buttons write (default: the working folder).

    Examples
    --------
    >>> view = ResultView(vantage6nb.analysis.summary(client))  # doctest: +SKIP
    >>> view.dataframe.loc["body_mass_g", "mean"]  # doctest: +SKIP
    >>> view.export("csv")  # doctest: +SKIP
    PosixPath('task-12-summary.csv')
    """

    def __init__(
        self,
        data: Any,
        *,
        kind: str | None = None,
        title: str = "",
        organizations: list[str] | None = None,
        plot: bool = True,
        by_organization: Any = None,
        export_dir: str | Path = ".",
        **kwargs: Any,
    ) -> None:
        self._df = results_to_frame(data, organizations)
        self.kind = kind if kind is not None else guess_kind(self._df)
        self.export_dir = Path(export_dir)
        heading = html.escape(title or self._provenance())
        self.title = widgets.HTML(f"<b>Result</b> {heading}")
        self.table_html = table_html(self._df)
        self.table = widgets.Output()
        self.table.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/html": self.table_html, "text/plain": self._df.to_string()},
                "metadata": {},
            },
        )
        self.table.add_class("v6nb-result-table")
        self.csv_button = widgets.Button(description="CSV", icon="download", tooltip="export")
        self.parquet_button = widgets.Button(description="Parquet", icon="download")
        self.csv_button.on_click(lambda _b: self._export_clicked("csv"))
        self.parquet_button.on_click(lambda _b: self._export_clicked("parquet"))
        self.export_status = widgets.HTML("")
        from ..client._html import provenance_html

        self.provenance = widgets.HTML(provenance_html(self._df.attrs))
        children: list[widgets.Widget] = [self.title, self.table]
        self.figure: Any = None
        self.plot: widgets.Output | None = None
        if plot and self.kind in ("summary", "crosstab"):
            self.figure, bundle = _plot_bundle(self._df, self.kind, by_organization)
            self.plot = widgets.Output()
            self.plot.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
            children.append(self.plot)
        children += [
            widgets.HBox(
                [widgets.Label("Export:"), self.csv_button, self.parquet_button, self.export_status]
            ),
            self.provenance,
        ]
        super().__init__(children, **kwargs)
        self.add_class("v6nb-result")

    @property
    def dataframe(self) -> pd.DataFrame:
        """The result as a DataFrame (its ``attrs`` say where it came from when known)."""
        return self._df

    def export(self, format: str = "csv", path: str | Path | None = None) -> Path:
        """Write the table and its provenance sidecar; returns the data file's path.

        Examples
        --------
        >>> view.export("parquet")  # doctest: +SKIP
        PosixPath('task-12-crosstab.parquet')
        """
        from ..client._frames import export

        if path is None:
            task = self._df.attrs.get("task_id")
            stem = f"task-{task}" if task is not None else "result"
            path = self.export_dir / f"{stem}-{self.kind or 'table'}.{format}"
        return Path(export(self._df, path, format=format))

    def _export_clicked(self, format: str) -> None:
        try:
            out = self.export(format)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, not raised in a callback
            self.export_status.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"
        else:
            self.export_status.value = (
                f"✔ wrote <code>{html.escape(str(out))}</code> and "
                f"<code>{html.escape(out.name)}.provenance.json</code>"
            )

    def _provenance(self) -> str:
        attrs = self._df.attrs
        parts = []
        if attrs.get("task_id") is not None:
            parts.append(f"task {attrs['task_id']}")
        if attrs.get("image"):
            parts.append(str(attrs["image"]))
        if attrs.get("organizations"):
            parts.append(", ".join(map(str, attrs["organizations"])))
        return " · ".join(parts)
