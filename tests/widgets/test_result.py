"""ResultView and result conversion: tables, kinds, shipped result shapes."""

from __future__ import annotations

import base64

import pandas as pd
import pytest

from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.summary import summary_frame
from vantage6nb.widgets import ResultView
from vantage6nb.widgets._result import guess_kind, results_to_frame

SUMMARY = {
    "columns": {
        "x": {"count": 3, "missing": 1, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0},
        "y": {"count": 0, "missing": 4, "mean": None, "std": None, "min": None, "max": None},
    },
    "rows": 4,
}
CROSSTAB = {
    "row": "a",
    "col": "b",
    "table": {"x": {"1": 1, "2": 1}, "y": {"1": 1, "2": 0}},
    "row_values": ["x", "y"],
    "col_values": [1, 2],
}


def test_summary_frame():
    df = summary_frame([SUMMARY])
    assert list(df.columns) == ["count", "missing", "mean", "std", "min", "max"]
    assert df.loc["x", "mean"] == 2.0 and pd.isna(df.loc["y", "mean"])
    assert guess_kind(df) == "summary"


def test_crosstab_frame():
    df = crosstab_frame([CROSSTAB])
    assert df.index.name == "a" and df.columns.name == "b"
    assert df.loc["y", 2] == 0 and df.to_numpy().sum() == 3  # typed labels: 2, not "2"
    assert list(df.columns) == [1, 2] and str(df[1].dtype) == "int64"
    assert guess_kind(df) == "crosstab"


def test_crosstab_frame_keeps_string_keys_without_typed_values():
    df = crosstab_frame({k: v for k, v in CROSSTAB.items() if not k.endswith("_values")})
    assert list(df.columns) == ["1", "2"] and list(df.index) == ["x", "y"]
    named = crosstab_frame({"table": {"x": {"1": 1}}}, {"row": "a", "col": "b"})
    assert (named.index.name, named.columns.name) == ("a", "b")


def test_partial_results_become_one_row_per_part():
    parts = [{"cells": [["x", 1, 2]], "rows": 2}, {"cells": [["y", 1, 3]], "rows": 3}]
    assert crosstab_frame(parts)["count"].tolist() == [2, 3]
    summaries = [SUMMARY, SUMMARY]
    assert summary_frame(summaries)["part"].tolist() == [0, 0, 1, 1]


def test_generic_results():
    assert list(results_to_frame([{"n": 1}, {"n": 2}], ["A", "B"]).index) == ["A", "B"]
    odd = results_to_frame([[1, 2], "x"])
    assert list(odd.columns) == ["result"] and odd.iloc[1, 0] == '"x"'


@pytest.mark.parametrize("kind", ["summary", "crosstab"])
def test_result_view_table_and_plot(kind):
    df = summary_frame([SUMMARY]) if kind == "summary" else crosstab_frame([CROSSTAB])
    df.attrs.update(task_id=5, image=f"v6nb/{kind}", organizations=["A", "B"])
    view = ResultView(df)
    assert view.dataframe is df and view.kind == kind
    assert "<table" in view.table_html and "task 5" in view.title.value
    assert view.plot is not None
    bundle = view.plot.outputs[0]["data"]  # plotly's figure, or the static PNG
    assert "application/vnd.plotly.v1+json" in bundle or "image/png" in bundle
    if "image/png" in bundle:
        assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")


def test_result_view_without_plot():
    view = ResultView([{"n": 1}], plot=False)
    assert view.plot is None and view.dataframe["n"].tolist() == [1]
