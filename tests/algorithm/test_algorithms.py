"""The shipped summary and crosstab algorithms, run in a LocalNetwork, equal pandas on the pooled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vantage6nb.algorithm._roles import describe
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms import IMAGES
from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.summary import combine, summary_frame
from vantage6nb.common.errors import DisclosureRefused, TaskFailed, ValidationError
from vantage6nb.demo import split_dataset

SUMMARY = "vantage6nb.algorithms.summary"
CROSSTAB = "vantage6nb.algorithms.crosstab"
# for tests about numerics on small data: every value released, extremes too
PERMISSIVE = {
    "min_count": 1,
    "extremes": "allow",
    "dominance": {"k": 1.0},
    "p_percent": 0.0,
    "levels_density": 1.0,
}


@pytest.fixture(scope="module")
def parts():
    return split_dataset(None, 3)


def _assert_summary_matches(result, pooled, columns, *, extremes=True):
    df = summary_frame(result)
    assert list(df.index) == list(columns)
    for name in columns:
        col, got = pooled[name], df.loc[name]
        assert got["count"] == col.count() and got["missing"] == col.isna().sum(), name
        for stat, expected in (
            ("mean", col.mean()),
            ("std", col.std(ddof=1)),
            ("min", col.min() if extremes else np.nan),
            ("max", col.max() if extremes else np.nan),
        ):
            assert got[stat] == pytest.approx(expected, rel=1e-9, nan_ok=True), (name, stat)


def test_summary_equals_pandas_on_pooled_penguins(parts):
    net = LocalNetwork(SUMMARY, parts)  # the default policy: everything but the extremes passes
    result = net.run("summary")
    pooled = pd.concat(parts, ignore_index=True)
    _assert_summary_matches(result, pooled, pooled.select_dtypes("number").columns, extremes=False)
    assert result["rows"] == {"@type": "count", "n": 344} and len(pooled) == 344
    assert summary_frame(result).attrs["suppressed"] == {}
    subtasks = [t for t in net.tasks.values() if t["parent_id"] is not None]
    assert len(subtasks) == 1 and subtasks[0]["method"] == "summary_partial"
    assert sorted(r["organization_id"] for r in subtasks[0]["runs"]) == [0, 1, 2]
    assert subtasks[0]["databases"] == [
        {"label": "default"}
    ]  # subtasks inherit the run's databases


def test_summary_is_numerically_stable_for_large_offsets():
    rng = np.random.default_rng(1)
    frames = [pd.DataFrame({"v": 1e9 + rng.normal(size=n)}) for n in (5, 500, 50)]
    result = LocalNetwork(SUMMARY, frames, policy=PERMISSIVE).run("summary")
    _assert_summary_matches(result, pd.concat(frames, ignore_index=True), ["v"])


def test_summary_of_chosen_columns_at_chosen_organizations(parts):
    net = LocalNetwork(SUMMARY, parts, organization_ids=[11, 12, 13], policy=PERMISSIVE)
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
    result = LocalNetwork(SUMMARY, frames, policy=PERMISSIVE).run("summary")
    pooled = pd.concat(frames, ignore_index=True)
    b = summary_frame(result).loc["b"]
    assert (b["count"], b["missing"]) == (0, 6) and b[["mean", "std", "min", "max"]].isna().all()
    _assert_summary_matches(
        {"columns": {k: result["columns"][k] for k in ("a", "c")}}, pooled, ["a", "c"]
    )
    one = LocalNetwork(SUMMARY, [pd.DataFrame({"a": [4.0]})], policy=PERMISSIVE).run("summary")
    assert np.isnan(summary_frame(one).loc["a", "std"]) and one["columns"]["a"]["mean"] == 4.0


def test_summary_rejects_bad_columns(parts):
    net = LocalNetwork(SUMMARY, parts)
    with pytest.raises(ValidationError, match="'species' is not numeric"):
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
    assert (pooled["min"], pooled["max"]) == (1.0, 9.0)
    # a part that withheld its extremes makes the pooled ones unknown, not the others' extremes
    parts[1] = {**parts[1], "min": None}
    assert combine(parts)["min"] is None and combine(parts)["max"] == 9.0


@pytest.mark.parametrize(
    ("row", "col"), [("species", "island"), ("island", "sex"), ("species", "year")]
)
def test_crosstab_equals_pandas_on_pooled_penguins(parts, row, col):
    net = LocalNetwork(CROSSTAB, parts, policy=PERMISSIVE)
    result = net.run("crosstab", kwargs={"row": row, "col": col})
    pooled = pd.concat(parts, ignore_index=True)
    expected = pd.crosstab(pooled[row], pooled[col], dropna=False)  # missing: a category
    assert result["row"] == row and result["col"] == col
    assert result["table"]["names"] == [row, col] and result["suppressed"] == []
    got = crosstab_frame(result)
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_dtype=False)
    assert (got.index.name, got.columns.name) == (row, col)


def test_crosstab_with_the_default_policy_releases_large_cells_and_refuses_small_ones(parts):
    net = LocalNetwork(CROSSTAB, parts)
    got = crosstab_frame(net.run("crosstab", kwargs={"row": "species", "col": "island"}))
    pooled = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(got, pd.crosstab(pooled["species"], pooled["island"]))
    with pytest.raises(DisclosureRefused, match="rule min_count, threshold 5") as caught:
        net.run("crosstab", kwargs={"row": "species", "col": "year"})
    assert isinstance(caught.value, TaskFailed)
    assert (caught.value.rule, caught.value.threshold) == ("min_count", 5)
    central, partial = list(net.tasks.values())[-2:]
    assert central["runs"][0]["status"] == "refused" and partial["parent_id"] == central["id"]
    refused = [r for r in partial["runs"] if r["status"] == "refused"]
    assert refused and all("below this node's minimum of 5" in r["reason"] for r in refused)
    assert "species x year" in central["runs"][0]["reason"]  # the names the researcher asked for


def test_crosstab_fills_zero_for_pairs_seen_nowhere():
    frames = [
        pd.DataFrame({"a": ["x", "x"], "b": ["p", "q"]}),
        pd.DataFrame({"a": ["y", None], "b": ["p", "q"]}),
    ]
    net = LocalNetwork(CROSSTAB, frames, policy=PERMISSIVE)
    result = net.run("crosstab", kwargs={"row": "a", "col": "b", "dropna": True})
    assert result["table"]["cells"] == [["x", "p", 1], ["x", "q", 1], ["y", "p", 1]]
    assert crosstab_frame(result).to_dict() == {"p": {"x": 1, "y": 1}, "q": {"x": 1, "y": 0}}


def test_crosstab_counts_one_value_in_several_types_as_one_category():  # issue 11
    frames = [
        pd.DataFrame({"a": [1, 1, "1"], "b": ["p"] * 3}),
        pd.DataFrame({"a": ["1"], "b": ["p"]}),
    ]
    result = LocalNetwork(CROSSTAB, frames, policy=PERMISSIVE).run(
        "crosstab", kwargs={"row": "a", "col": "b"}
    )
    assert result["table"]["cells"] == [[1, "p", 4]]
    assert crosstab_frame(result)["p"].tolist() == [4]


def test_crosstab_of_a_missing_column_fails_with_the_node_reason(parts):
    with pytest.raises(TaskFailed, match="'colour'.*not in this node's data"):
        LocalNetwork(CROSSTAB, parts).run("crosstab", kwargs={"row": "species", "col": "colour"})
    with pytest.raises(ValidationError, match="column names"):
        LocalNetwork(CROSSTAB, parts).run("crosstab", kwargs={"row": "species", "col": None})


def test_small_cells_suppressed_by_policy_are_null_in_the_pooled_table():
    frames = [
        pd.DataFrame({"r": ["x"] * 10 + ["y"] * 2, "c": ["p"] * 12}),
        pd.DataFrame({"r": ["x"] * 6 + ["y"] * 7, "c": ["p"] * 13}),
    ]
    net = LocalNetwork(CROSSTAB, frames, policy={"small_cells": "suppress"})
    result = net.run("crosstab", kwargs={"row": "r", "col": "c"})
    assert result["table"]["cells"] == [["x", "p", 16], ["y", "p", None]]
    assert [s["organizations"] for s in result["suppressed"]] == [[0]]
    df = crosstab_frame(result)
    assert df.loc["x", "p"] == 16 and df.loc["y", "p"] is pd.NA and str(df["p"].dtype) == "Int64"
    assert df.attrs["suppressed"] == [("y", "p")]


def test_a_column_withheld_at_one_organization_is_withheld_in_the_pooled_summary():
    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame({"x": rng.normal(size=20), "y": [1.0, 2.0, 3.0] + [None] * 17}),
        pd.DataFrame({"x": rng.normal(size=30), "y": rng.normal(size=30)}),
    ]
    net = LocalNetwork(SUMMARY, frames, organization_ids=[4, 9])
    result = net.run("summary")
    assert result["columns"]["y"] == {
        "@type": "suppressed",
        "rule": "min_count",
        "threshold": 5,
        "organizations": [4],
    }
    df = summary_frame(result)
    assert df.loc["y"].isna().all() and str(df["count"].dtype) == "Int64"
    assert df.attrs["suppressed"] == {
        "y": "suppressed by organization 4's disclosure policy (rule min_count, threshold 5)"
    }
    pooled = pd.concat(frames, ignore_index=True)
    assert df.loc["x", "count"] == 50
    assert df.loc["x", "mean"] == pytest.approx(pooled["x"].mean(), rel=1e-12)


def test_an_organization_with_few_rows_withholds_its_row_count_and_a_column_it_lacks():
    frames = [pd.DataFrame({"x": [1.0, 2.0, 3.0]}), pd.DataFrame({"x": [5.0] * 8, "z": [1.0] * 8})]
    result = LocalNetwork(SUMMARY, frames, organization_ids=[1, 2]).run("summary")
    assert result["rows"]["@type"] == "suppressed" and result["rows"]["organizations"] == [1]
    # z is absent at 1, whose row count (z's missing values there) is withheld: z is unknown
    assert result["columns"]["z"]["organizations"] == [1]
    assert result["columns"]["x"]["organizations"] == [1]


def test_dominated_and_extreme_values_follow_the_policy():
    frames = [pd.DataFrame({"x": [1.0] * 9 + [1000.0]}), pd.DataFrame({"x": np.arange(10.0)})]
    result = LocalNetwork(SUMMARY, frames).run("summary")
    assert result["columns"]["x"]["rule"] == "dominance"
    rounded = LocalNetwork(
        SUMMARY, [pd.DataFrame({"x": np.arange(10.0) + 0.123})], policy={"extremes": "round"}
    ).run("summary")["columns"]["x"]
    assert (rounded["min"], rounded["max"]) == (0.12, 9.1)


def test_policy_false_releases_everything_unchecked():
    frames = [pd.DataFrame({"a": ["x"], "b": [1]})]
    result = LocalNetwork(CROSSTAB, frames, policy=False).run(
        "crosstab", kwargs={"row": "a", "col": "b"}
    )
    assert result["table"]["cells"] == [["x", 1, 1]]


def test_untyped_output_is_released_only_for_trusted_images():
    net = LocalNetwork("vantage6nb.algorithms.diagnostics", [pd.DataFrame({"a": [1]})])
    assert net.image == "v6nb/diagnostics"
    with pytest.raises(DisclosureRefused, match="rule untyped"):
        net.run("echo", args=[1])
    trusted = LocalNetwork(
        "vantage6nb.algorithms.diagnostics",
        [pd.DataFrame({"a": [1]})],
        policy={"untyped_images": ["v6nb/diagnostics"]},
    )
    assert trusted.run("echo", args=[1]) == {"args": [1], "kwargs": {}}


def test_shipped_methods_declare_their_roles():
    assert describe(SUMMARY) == {"summary": "entry_point", "summary_partial": "federated"}
    assert describe(CROSSTAB) == {"crosstab": "entry_point", "crosstab_partial": "federated"}
    assert describe("vantage6nb.algorithms.diagnostics") == {"blob_central": "entry_point"}


def test_images_map_to_importable_modules():
    import importlib

    for image, module in IMAGES.items():
        assert image.startswith("v6nb/")
        assert importlib.import_module(module).__name__ == module
