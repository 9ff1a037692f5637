"""The shipped summary and crosstab algorithms, run in a LocalNetwork, equal pandas on the pooled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms import IMAGES
from vantage6nb.algorithms.crosstab import value_key
from vantage6nb.algorithms.summary import combine
from vantage6nb.common.errors import TaskFailed, ValidationError
from vantage6nb.demo import split_dataset

SUMMARY = "vantage6nb.algorithms.summary"
CROSSTAB = "vantage6nb.algorithms.crosstab"


@pytest.fixture(scope="module")
def parts():
    return split_dataset(None, 3)


def _assert_summary_matches(result, pooled, columns):
    assert list(result["columns"]) == list(columns)
    for name in columns:
        col, got = pooled[name], result["columns"][name]
        assert got["count"] == col.count() and got["missing"] == col.isna().sum(), name
        for stat, expected in (
            ("mean", col.mean()),
            ("std", col.std(ddof=1)),
            ("min", col.min()),
            ("max", col.max()),
        ):
            assert got[stat] == pytest.approx(expected, rel=1e-9), (name, stat)


def test_summary_equals_pandas_on_pooled_penguins(parts):
    net = LocalNetwork(SUMMARY, parts)
    result = net.run("summary")
    pooled = pd.concat(parts, ignore_index=True)
    _assert_summary_matches(result, pooled, pooled.select_dtypes("number").columns)
    assert result["rows"] == len(pooled) == 344
    subtasks = [t for t in net.tasks.values() if t["parent_id"] is not None]
    assert len(subtasks) == 1 and subtasks[0]["method"] == "summary_partial"
    assert sorted(r["organization_id"] for r in subtasks[0]["runs"]) == [0, 1, 2]
    assert subtasks[0]["databases"] == [
        {"label": "default"}
    ]  # subtasks inherit the run's databases


def test_summary_is_numerically_stable_for_large_offsets():
    rng = np.random.default_rng(1)
    frames = [pd.DataFrame({"v": 1e9 + rng.normal(size=n)}) for n in (5, 500, 50)]
    result = LocalNetwork(SUMMARY, frames).run("summary")
    _assert_summary_matches(result, pd.concat(frames, ignore_index=True), ["v"])


def test_summary_of_chosen_columns_at_chosen_organizations(parts):
    net = LocalNetwork(SUMMARY, parts, organization_ids=[11, 12, 13])
    result = net.run(
        "summary",
        kwargs={"columns": ["body_mass_g", "year"], "organizations": [11, 13]},
        organization=12,
    )
    pooled = pd.concat([parts[0], parts[2]], ignore_index=True)
    _assert_summary_matches(result, pooled, ["body_mass_g", "year"])


def test_summary_counts_an_absent_column_as_missing_and_handles_empty_and_single_values():
    frames = [
        pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan]}),
        pd.DataFrame({"a": [3.0], "b": [np.nan]}),
        pd.DataFrame({"c": [7, 8, 9]}),
    ]
    result = LocalNetwork(SUMMARY, frames).run("summary")
    pooled = pd.concat(frames, ignore_index=True)
    assert result["columns"]["b"] == {
        "count": 0,
        "missing": 6,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
    }
    _assert_summary_matches(
        {"columns": {k: result["columns"][k] for k in ("a", "c")}}, pooled, ["a", "c"]
    )
    one = LocalNetwork(SUMMARY, [pd.DataFrame({"a": [4.0]})]).run("summary")["columns"]["a"]
    assert one["std"] is None and one["mean"] == 4.0


def test_summary_rejects_bad_columns(parts):
    net = LocalNetwork(SUMMARY, parts)
    with pytest.raises(TaskFailed, match="'species' is not numeric"):
        net.run("summary", kwargs={"columns": ["species"]})
    with pytest.raises(ValidationError, match="exists at none"):
        net.run("summary", kwargs={"columns": ["no_such_column"]})
    with pytest.raises(ValidationError, match="list of column names"):
        net.run("summary", kwargs={"columns": [1, 2]})
    with pytest.raises(ValidationError, match="organization ids"):
        net.run("summary", kwargs={"organizations": "all"})


def test_combine_agrees_with_one_pass_statistics():
    values = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    splits = [values[:3], values[3:4], values[4:]]
    parts = [
        {
            "count": len(s),
            "missing": 0,
            "mean": s.mean(),
            "m2": ((s - s.mean()) ** 2).sum(),
            "min": s.min(),
            "max": s.max(),
        }
        for s in splits
    ]
    pooled = combine(
        parts + [{"count": 0, "missing": 2, "mean": None, "m2": 0.0, "min": None, "max": None}]
    )
    assert pooled["count"] == 8 and pooled["missing"] == 2
    assert pooled["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert pooled["m2"] == pytest.approx(((values - values.mean()) ** 2).sum(), rel=1e-12)


def _table_frame(result):
    rows = [value_key(v) for v in result["row_values"]]
    cols = [value_key(v) for v in result["col_values"]]
    frame = pd.DataFrame(
        [[result["table"][r][c] for c in cols] for r in rows],
        index=result["row_values"],
        columns=result["col_values"],
    )
    return frame


@pytest.mark.parametrize(
    ("row", "col"), [("species", "island"), ("island", "sex"), ("species", "year")]
)
def test_crosstab_equals_pandas_on_pooled_penguins(parts, row, col):
    result = LocalNetwork(CROSSTAB, parts).run("crosstab", kwargs={"row": row, "col": col})
    pooled = pd.concat(parts, ignore_index=True)
    expected = pd.crosstab(pooled[row], pooled[col])  # drops rows with a missing value, as we do
    assert result["row"] == row and result["col"] == col
    got = _table_frame(result)
    pd.testing.assert_frame_equal(
        got,
        expected,
        check_names=False,
        check_dtype=False,
        check_index_type=False,
        check_column_type=False,
    )


def test_crosstab_fills_zero_for_pairs_seen_nowhere():
    frames = [
        pd.DataFrame({"a": ["x", "x"], "b": ["p", "q"]}),
        pd.DataFrame({"a": ["y", None], "b": ["p", "q"]}),
    ]
    result = LocalNetwork(CROSSTAB, frames).run("crosstab", kwargs={"row": "a", "col": "b"})
    assert result["table"] == {"x": {"p": 1, "q": 1}, "y": {"p": 1, "q": 0}}


def test_crosstab_of_a_missing_column_fails_with_the_node_reason(parts):
    with pytest.raises(TaskFailed, match="'colour'.*not in this node's data"):
        LocalNetwork(CROSSTAB, parts).run("crosstab", kwargs={"row": "species", "col": "colour"})
    with pytest.raises(ValidationError, match="column names"):
        LocalNetwork(CROSSTAB, parts).run("crosstab", kwargs={"row": "species", "col": None})


def test_small_cell_threshold_makes_partials_refuse(parts):
    net = LocalNetwork(CROSSTAB, parts, environ={"V6NB_MIN_CELL_COUNT": "10"})
    with pytest.raises(TaskFailed, match="small-cell policy"):
        net.run("crosstab", kwargs={"row": "species", "col": "year"})
    # large cells pass the same threshold
    ok = net.run("crosstab", kwargs={"row": "species", "col": "species"})
    assert sum(sum(r.values()) for r in ok["table"].values()) == 344
    summary = LocalNetwork(
        SUMMARY, [pd.DataFrame({"x": [1.0, 2.0]})], environ={"V6NB_MIN_CELL_COUNT": "3"}
    )
    with pytest.raises(TaskFailed, match="below the node's minimum of 3"):
        summary.run("summary")


def test_images_map_to_importable_modules():
    import importlib

    for image, module in IMAGES.items():
        assert image.startswith("v6nb/")
        assert importlib.import_module(module).__name__ == module
