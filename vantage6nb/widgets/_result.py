"""ResultView: a task's result as a table and, for summary and crosstab results, a plot."""

from __future__ import annotations

import html
import io
import json
from typing import Any

import ipywidgets as widgets
import pandas as pd

__all__ = ["ResultView", "guess_kind", "plot_png", "results_to_frame"]


def results_to_frame(results: Any, organizations: list[str] | None = None) -> pd.DataFrame:
    """Turn task results (one per organization) into a DataFrame, whatever their shape.

    One result that is a mapping of mappings becomes one row per key (a central result such as a
    summary); a list of flat mappings becomes one row per organization; anything else is one row
    per organization with the result as JSON text.

    Examples
    --------
    >>> results_to_frame([{"a": {"count": 3}, "b": {"count": 4}}])
       count
    a      3
    b      4
    >>> results_to_frame([{"n": 1}, {"n": 2}], ["Leiden", "Utrecht"])
             n
    Leiden   1
    Utrecht  2
    """
    if isinstance(results, pd.DataFrame):
        return results
    items = list(results) if isinstance(results, list | tuple) else [results]
    names = list(organizations or [])
    index = names if len(names) == len(items) else list(range(len(items)))
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


def plot_png(df: pd.DataFrame, kind: str) -> bytes | None:
    """A PNG plot of a summary (mean ± std per column) or crosstab (grouped bars); None without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone
    except ImportError:
        return None
    if kind == "summary":
        numeric = df[pd.to_numeric(df["mean"], errors="coerce").notna()].head(8)
        if numeric.empty:
            return None
        # one panel per column, each on its own scale: min-max range, mean ± std
        fig = Figure(figsize=(1.6 * len(numeric) + 0.6, 2.8), dpi=100)
        axes = fig.subplots(1, len(numeric), squeeze=False)[0]
        for ax, (name, row) in zip(axes, numeric.iterrows(), strict=True):
            lo, hi, mean = float(row["min"]), float(row["max"]), float(row["mean"])
            std = float(row["std"]) if "std" in row and pd.notna(row["std"]) else 0.0
            ax.vlines(0, lo, hi, colors="#9e9e9e", linewidth=2, label="min–max")
            ax.errorbar(
                [0], [mean], yerr=[std], fmt="o", color="#1e88e5", capsize=6, label="mean ± std"
            )
            ax.set_xticks([])
            ax.set_title(str(name), fontsize="small")
            ax.tick_params(axis="y", labelsize="x-small")
        axes[0].legend(fontsize="x-small", loc="lower left")
        fig.suptitle("summary, pooled over organizations", fontsize="small")
    elif kind == "crosstab":
        fig = Figure(figsize=(6.5, 3.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        table = df.apply(pd.to_numeric, errors="coerce").fillna(0)
        width = 0.8 / max(len(table.columns), 1)
        for i, col in enumerate(table.columns):
            xs = [j + i * width for j in range(len(table.index))]
            ax.bar(xs, table[col], width=width, label=str(col))
        ax.set_xticks([j + (len(table.columns) - 1) * width / 2 for j in range(len(table.index))])
        ax.set_xticklabels([str(i) for i in table.index])
        ax.set_ylabel("count")
        ax.set_title(f"{table.index.name or 'row'} × {table.columns.name or 'column'}")
        ax.legend(fontsize="small")
    else:
        return None
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class ResultView(widgets.VBox):
    """A result as a table (and a plot for summaries and crosstabs); :attr:`dataframe` holds it.

    Parameters
    ----------
    data : DataFrame, or results (list of per-organization results)
        What to show. Results that are not a DataFrame go through :func:`results_to_frame`.
    kind : str, optional
        ``"summary"`` or ``"crosstab"`` for a plot; guessed from the columns when omitted.
    plot : bool
        False shows only the table.

    Examples
    --------
    >>> view = ResultView(vantage6nb.analysis.summary(client))  # doctest: +SKIP
    >>> view.dataframe.loc["body_mass_g", "mean"]  # doctest: +SKIP
    """

    def __init__(
        self,
        data: Any,
        *,
        kind: str | None = None,
        title: str = "",
        organizations: list[str] | None = None,
        plot: bool = True,
        **kwargs: Any,
    ) -> None:
        self._df = results_to_frame(data, organizations)
        self.kind = kind if kind is not None else guess_kind(self._df)
        heading = html.escape(title or self._provenance())
        self.title = widgets.HTML(f"<b>Result</b> {heading}")
        self.table = widgets.HTML(self._df.to_html(float_format=lambda v: f"{v:.4g}", border=0))
        self.table.add_class("v6nb-result-table")
        children: list[widgets.Widget] = [self.title, self.table]
        self.plot: widgets.Widget | None = None
        if plot and self.kind in ("summary", "crosstab"):
            png = plot_png(self._df, self.kind)
            if png is not None:
                self.plot = widgets.Image(value=png, format="png")
            else:
                self.plot = widgets.HTML(
                    "<i>No plot: matplotlib is not installed (<code>pip install matplotlib</code>).</i>"
                )
            children.append(self.plot)
        super().__init__(children, **kwargs)
        self.add_class("v6nb-result")

    @property
    def dataframe(self) -> pd.DataFrame:
        """The result as a DataFrame (its ``attrs`` say where it came from when known)."""
        return self._df

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
