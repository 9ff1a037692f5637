"""ResultView rendering without a browser: sortable formatted tables, plot figures, suppressed
and missing cells, organization labels, export with provenance."""

from __future__ import annotations

import base64
import json
import sys

import pandas as pd
import pytest

from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.summary import summary_frame
from vantage6nb.client import export, read_export
from vantage6nb.client._frames import with_provenance
from vantage6nb.client._task import Results
from vantage6nb.widgets import ResultView
from vantage6nb.widgets._result import (
    cell_states,
    figure,
    format_p,
    results_to_frame,
    table_html,
    text_table,
)

SUMMARY = {
    "columns": {
        "body_mass_g": {
            "count": 4202,
            "missing": 2,
            "mean": 4201.754386,
            "std": 801.954536,
            "min": None,
            "max": None,
        },
        "ratio": {
            "count": 342,
            "missing": 0,
            "mean": 0.818384,
            "std": 0.0412,
            "min": 0.7,
            "max": 0.9,
        },
        "year": {
            "count": 344,
            "missing": 0,
            "mean": 2008.03,
            "std": 0.818,
            "min": 2007,
            "max": 2009,
        },
        "hidden": {
            "@type": "suppressed",
            "rule": "min_count",
            "threshold": 5,
            "organizations": [2],
        },
    },
    "rows": 344,
}
# sex x year with a missing category, one cell withheld by a node's policy
CROSSTAB = {
    "table": {
        "@type": "count_table",
        "names": ["sex", "year"],
        "cells": [
            ["female", 2007, 1051],
            ["female", 2008, 56],
            ["male", 2007, 52],
            ["male", 2009, 59],
            [None, 2007, 7],
            [None, 2009, None],
        ],
    }
}


def _summary() -> pd.DataFrame:
    return with_provenance(
        summary_frame(SUMMARY), task_id=12, image="v6nb/summary", organizations=["A", "B"]
    )


def _crosstab() -> pd.DataFrame:
    return with_provenance(
        crosstab_frame(CROSSTAB), task_id=13, image="v6nb/crosstab", organizations=["A", "B"]
    )


def test_table_is_sortable_offline_and_consistently_formatted() -> None:
    text = table_html(_summary(), bundle=True)
    # itables' DataTables, from its offline bundle (no internet): sortable columns
    assert "new ITable(" in text and "_itables_2_9_1" in text and "injectModule" in text
    assert "unpkg.com" not in text.split("new ITable(")[0].split("injectModule")[1][:2000]
    # counts with thousands separators, statistics to 4 significant digits, no 4202/802/0.8184 mix
    for shown in ("4,202", "802.0", "0.8184", "0.04120", "344"):
        assert shown in text, shown
    assert "2008<!--v6nb:2008.03-->" in text  # a year to 4 digits, without a separator
    assert "2,008" not in text
    # the sort key travels with the display text (a comment), so 4,202 sorts as 4202
    assert "4,202<!--v6nb:4202.0-->" in text
    static = table_html(_summary(), interactive=False)
    assert "<table class='v6nb-table'>" in static and "ITable" not in static
    assert "4,202" in static and "802.0" in static


def test_text_table_formats_as_the_notebook_table() -> None:
    # what `v6nb demo` prints in a terminal: the same numbers as the notebook's table, and the
    # withheld extremes named, not NaN
    df = _summary()
    text = text_table(df)
    for shown in ("4,202", "802.0", "0.8184", "344"):
        assert shown in text, shown
    assert " 2008 " in text + " " and "2,008" not in text and "4201.75" not in text
    assert "NaN" not in text and "nan" not in text
    withheld = int((cell_states(df) == "suppressed").sum().sum())
    assert withheld and text.count("suppressed") == withheld
    assert not any(line != line.rstrip() for line in text.splitlines())


def test_later_tables_reuse_the_loaded_bundle() -> None:
    table_html(_summary())  # the first of the process (or not): either way the next one is small
    assert "injectModule" not in table_html(_summary())
    assert "new ITable(" in table_html(_summary())


def test_suppressed_cells_render_as_suppressed_and_missing_as_a_category() -> None:
    df = _crosstab()
    assert table_html(df, interactive=False).count(">suppressed</span>") == 1
    for text in (table_html(df, bundle=False), table_html(df, interactive=False)):
        assert ">suppressed</span>" in text
        assert "v6nb-suppressed" in text and "disclosure policy" in text
        assert "(missing)" in text and "v6nb-missing" in text
        assert ">NaN<" not in text and ">nan<" not in text and "NA&gt;" not in text
        assert "1,051" in text
    summary = table_html(_summary(), interactive=False)
    # a withheld column (its reason on hover) and the extremes the nodes withhold
    assert summary.count(">suppressed</span>") == 6 + 2
    assert "rule min_count, threshold 5" in summary


def test_p_values_are_formatted() -> None:
    chi2 = pd.DataFrame(
        {"statistic": [12.3456, 10.1], "df": [2.0, 2.0], "p_value": [0.002081, 3.2e-9]},
        index=pd.Index(["pearson", "yates"], name="test"),
    )
    text = table_html(chi2, interactive=False)
    assert "0.0021" in text and "&lt; 0.0001" in text and "12.35" in text
    assert ">2<" in text  # degrees of freedom as an integer
    assert format_p(0.5) == "0.5000"


def test_year_column_gets_a_bar_chart_with_categories_not_fractions() -> None:
    by_year = _crosstab().T  # year as the rows: bars per year
    fig = figure(by_year)
    assert fig is not None and {t.type for t in fig.data} >= {"bar"}
    assert fig.layout.xaxis.type == "category"
    assert list(fig.layout.xaxis.categoryarray) == ["2007", "2008", "2009"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"sex = female", "sex = male", "sex = (missing)"}
    assert fig.layout.yaxis.tickformat == ",d"  # counts: whole numbers
    # a suppressed cell is labelled in the plot as well (no bar: the word where it would be)
    missing = next(t for t in bars if t.name == "sex = (missing)")
    assert list(missing.text) == ["", "", "suppressed"] and list(missing.y) == [7, 0, 0]
    # the legend below the panels, never on one
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0


def test_summary_plot_gives_integer_ticks_for_a_year() -> None:
    fig = figure(_summary())
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["body_mass_g", "ratio", "year"]
    year_axis = fig.layout.yaxis3
    assert year_axis.tickformat == "d" and year_axis.tickmode == "linear"
    assert float(year_axis.dtick).is_integer() and float(year_axis.tick0).is_integer()
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0


def test_per_organization_breakdown_adds_a_panel_each() -> None:
    pooled = _crosstab()
    parts = {
        "Leiden": crosstab_frame(
            {
                "table": {
                    "@type": "count_table",
                    "names": ["sex", "year"],
                    "cells": [["female", 2007, 30], ["male", 2007, 22]],
                }
            }
        ),
        "Utrecht": crosstab_frame(
            {
                "table": {
                    "@type": "count_table",
                    "names": ["sex", "year"],
                    "cells": [["female", 2008, 56], [None, 2007, 7]],
                }
            }
        ),
    }
    fig = figure(pooled, by_organization=parts)
    assert [a.text for a in fig.layout.annotations] == ["pooled", "Leiden", "Utrecht"]
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3"}
    view = ResultView(pooled, by_organization=parts)
    assert view.figure is not None and len(view.figure.layout.annotations) == 3


def test_view_bundles_plotly_and_a_static_fallback() -> None:
    view = ResultView(_crosstab())
    bundle = view.plot.outputs[0]["data"]
    assert "application/vnd.plotly.v1+json" in bundle
    # no image/png beside it (JupyterLab's plotly renderer would show that instead); the static
    # fallback for a frontend without the renderer is inside text/html
    assert "image/png" not in bundle
    encoded = bundle["text/html"].split("base64,")[1].split("'")[0]
    assert base64.b64decode(encoded).startswith(b"\x89PNG")
    table = view.table.outputs[0]["data"]["text/html"]
    assert table == view.table_html and "new ITable(" in table


def test_without_plotly_the_plot_is_a_static_png(monkeypatch) -> None:
    for name in ("plotly", "plotly.graph_objects", "plotly.subplots"):
        monkeypatch.setitem(sys.modules, name, None)  # plotly not installed
    view = ResultView(_crosstab())
    assert view.figure is None
    bundle = view.plot.outputs[0]["data"]
    assert "application/vnd.plotly.v1+json" not in bundle and "image/png" in bundle


def test_results_are_labelled_with_their_organization() -> None:
    results = Results([{"n": 3}, {"n": 4}], ["Leiden", "Utrecht"])
    df = results_to_frame(results)
    assert list(df.index) == ["Leiden", "Utrecht"] and df.index.name == "organization"
    assert "Leiden" in ResultView(results).table_html


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("make", [_crosstab, _summary])
def test_export_keeps_provenance_and_reads_back_the_same_frame(tmp_path, fmt, make) -> None:
    df = make()
    view = ResultView(df, export_dir=tmp_path)
    (view.csv_button if fmt == "csv" else view.parquet_button).click()
    kind = df.attrs["kind"]
    path = tmp_path / f"task-{df.attrs['task_id']}-{kind}.{fmt}"
    assert path.exists() and "wrote" in view.export_status.value
    sidecar = json.loads((tmp_path / f"{path.name}.provenance.json").read_text())
    assert sidecar["provenance"]["task_id"] == df.attrs["task_id"]
    assert sidecar["provenance"]["image"] == df.attrs["image"]
    assert sidecar["provenance"]["organizations"] == ["A", "B"]
    assert sidecar["written_by"].startswith("vantage6nb ") and len(sidecar["sha256"]) == 64
    back = read_export(path)
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["task_id"] == df.attrs["task_id"]
    if kind == "crosstab":  # attrs as JSON holds them: the missing label null, tuples lists
        assert back.attrs["suppressed"] == [[None, 2009]]
    else:
        assert back.attrs["suppressed"] == df.attrs["suppressed"]


def test_a_changed_export_is_refused(tmp_path) -> None:
    path = export(_crosstab(), tmp_path / "t.csv")
    path.write_text(path.read_text().replace("1051", "1052"))
    with pytest.raises(ValueError, match="changed after it was exported"):
        read_export(path)
    with pytest.raises(ValueError, match="give a .csv or .parquet"):
        export(_crosstab(), tmp_path / "t.xlsx")


def test_statistics_pack_tables_count_rows_and_withheld_values() -> None:
    index = pd.MultiIndex.from_tuples(
        [("n", "", "count"), ("age", "", "mean"), ("sex", "F", "percent")],
        names=["variable", "value", "statistic"],
    )
    table = pd.DataFrame({"A": [1040.0, 40.123, 30.0], "B": [41.0, float("nan"), 4.5]}, index=index)
    table.attrs.update(kind="table1", suppressed={"age (B)": "suppressed by organization 2"})
    text = table_html(table, interactive=False)
    assert ">1,040<" in text and ">41<" in text  # the group sizes are counts
    assert ">40.12<" in text and ">30.00<" in text
    assert "title='age (B): suppressed by organization 2'>suppressed</span>" in text


def test_user_notebooks_show_no_test_markers() -> None:
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
    assert notebooks
    tagged = 0
    for path in notebooks:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            assert "NBVAL" not in "".join(cell["source"]), (path.name, cell.get("id"))
            tagged += any(t.startswith("nbval-") for t in cell["metadata"].get("tags", []))
    assert tagged >= 20  # the checks are cell tags now (nbval reads both)
