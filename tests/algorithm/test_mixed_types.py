"""Summary and crosstab when the nodes' column types differ (issue 11, "No silent loss"): each case
either equals pandas on the pooled data or fails naming the organization, the column, both types
and what to do. Data made for the purpose: one true dataset per node, stored in different types."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest

from vantage6nb.algorithm._data import load_database
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms._common import category_label, column_kind
from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.summary import summary_frame
from vantage6nb.common.errors import ValidationError

SUMMARY = "vantage6nb.algorithms.summary"
CROSSTAB = "vantage6nb.algorithms.crosstab"
NAMES = ["Leiden", "Utrecht", "Groningen"]
# every value released, extremes too: these tests are about types, not disclosure
PERMISSIVE = {
    "min_count": 1,
    "extremes": "allow",
    "dominance": {"k": 1.0},
    "p_percent": 0.0,
    "levels_density": 1.0,
}
BIG = 2**53


def _net(module, datasets, **kwargs):
    return LocalNetwork(module, datasets, organization_names=NAMES, policy=PERMISSIVE, **kwargs)


def _assert_summary_equals_pandas(df, pooled, columns):
    assert list(df.index) == list(columns)
    for name in columns:
        col, got = pooled[name], df.loc[name]
        assert got["count"] == col.count() and got["missing"] == col.isna().sum(), name
        assert got["mean"] == pytest.approx(col.mean(), rel=1e-9), name
        assert got["std"] == pytest.approx(col.std(ddof=1), rel=1e-9), name
        assert got["min"] == col.min() and got["max"] == col.max(), name


def _sqlite(path, frame, types):
    """``frame`` as the one table of an SQLite file, with the given SQL column types."""
    with sqlite3.connect(path) as con:
        cols = ", ".join(f'"{c}" {t}' for c, t in types.items())
        con.execute(f"CREATE TABLE data ({cols})")
        rows = [
            tuple(None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in row)
            for row in frame.itertuples(index=False)
        ]
        con.executemany(f"INSERT INTO data VALUES ({', '.join('?' * len(types))})", rows)
    con.close()
    return {"database": f"sqlite:///{path}", "type": "sql"}


# -- crosstab: one value, one category -------------------------------------------------------


def _categories():
    """812 records: a category coded 1/2/3 (with some missing at the third node) by sex."""
    rng = np.random.default_rng(11)
    truth = [
        pd.DataFrame(
            {"grade": rng.choice([1, 2, 3], size=n), "sex": rng.choice(["F", "M"], size=n)}
        )
        for n in (286, 276, 250)
    ]
    truth[2]["grade"] = truth[2]["grade"].astype("Int64")
    truth[2].loc[::10, "grade"] = pd.NA
    return truth


def test_crosstab_counts_1_and_text_1_and_float_1_as_one_category():
    truth = _categories()
    stored = [
        truth[0],  # int64
        truth[1].assign(grade=truth[1]["grade"].astype(str)),  # text "1", "2", "3"
        truth[2].assign(grade=truth[2]["grade"].astype("float64")),  # 1.0, 2.0, NaN
    ]
    assert [column_kind(f["grade"])["kind"] for f in stored] == ["int", "numeric_text", "float"]
    kwargs = {"row": "grade", "col": "sex", "dropna": True}  # missing grades left out
    result = _net(CROSSTAB, stored).run("crosstab", kwargs=kwargs)
    got = crosstab_frame(result)
    pooled = pd.concat(truth, ignore_index=True)
    expected = pd.crosstab(pooled["grade"].astype("float64"), pooled["sex"])
    assert got.to_dict() == expected.rename(index=int).to_dict()
    assert int(got.to_numpy().sum()) == int(pooled["grade"].notna().sum()) == 787
    assert list(got.index) == [1, 2, 3] and all(type(v) is int for v in got.index)
    (note,) = result["notes"]
    assert "column 'grade'" in note and "text (object) at Utrecht" in note
    assert "integers (int64) at Leiden" in note and "numbers (float64) at Groningen" in note


def test_crosstab_counts_booleans_and_sqlite_0_1_as_one_category(tmp_path):
    rng = np.random.default_rng(3)
    truth = [
        pd.DataFrame({"smoker": rng.random(n) < 0.3, "sex": ["F", "M"] * (n // 2)})
        for n in (40, 60, 80)
    ]
    stored = [
        truth[0],
        truth[1],
        _sqlite(tmp_path / "c.db", truth[2], {"smoker": "INTEGER", "sex": "TEXT"}),
    ]
    assert column_kind(load_database(stored[2]["database"], "sql")["smoker"])["kind"] == "int"
    result = _net(CROSSTAB, stored).run("crosstab", kwargs={"row": "smoker", "col": "sex"})
    pooled = pd.concat(truth, ignore_index=True)
    got = crosstab_frame(result)
    assert got.to_dict() == pd.crosstab(pooled["smoker"], pooled["sex"]).to_dict()
    assert list(got.index) == [False, True]
    assert "booleans (bool) at Leiden and Utrecht" in result["notes"][0]
    assert "integers (int64) at Groningen" in result["notes"][0]


def test_crosstab_counts_booleans_as_1_and_0_next_to_other_integers():
    frames = [
        pd.DataFrame({"a": [True] * 3 + [False] * 2, "b": ["p"] * 5}),
        pd.DataFrame({"a": [1, 2, 2, 0], "b": ["p"] * 4}),
    ]
    result = LocalNetwork(CROSSTAB, frames, policy=PERMISSIVE).run(
        "crosstab", kwargs={"row": "a", "col": "b"}
    )
    assert result["table"]["cells"] == [[0, "p", 3], [1, "p", 4], [2, "p", 2]]


def test_category_labels_are_one_per_value():
    assert [category_label(v) for v in (1, "1", 1.0, np.int64(1), np.float64(1.0))] == [1] * 5
    assert [category_label(v) for v in ("01", "1.5", 2.5, "a", True, None, np.nan)] == [
        "01",
        1.5,
        2.5,
        "a",
        True,
        None,
        None,
    ]
    assert category_label(BIG + 1) == BIG + 1 and category_label(str(BIG + 1)) == BIG + 1


# -- summary: a column whose type differs between the nodes --------------------------------


def _measurements():
    """Booleans and a decimal measurement, at nodes of 150, 250 and 550 rows."""
    rng = np.random.default_rng(7)
    return [
        pd.DataFrame(
            {
                "smoker": (rng.random(n) < 0.4).astype("int64"),
                "bmi": np.round(rng.normal(26, 4, size=n), 1),
                "age": rng.integers(20, 90, size=n),
                "sex": rng.choice(["F", "M"], size=n),
            }
        )
        for n in (150, 250, 550)
    ]


def test_summary_counts_booleans_as_0_and_1_next_to_sqlite_integers(tmp_path):
    truth = _measurements()
    stored = [
        truth[0].astype({"smoker": bool}),
        truth[1].astype({"smoker": bool}),
        _sqlite(
            tmp_path / "c.db",
            truth[2],
            {"smoker": "INTEGER", "bmi": "REAL", "age": "INTEGER", "sex": "TEXT"},
        ),
    ]
    result = _net(SUMMARY, stored).run("summary")  # default columns
    pooled = pd.concat(truth, ignore_index=True)
    df = summary_frame(result)
    _assert_summary_equals_pandas(df, pooled, ["smoker", "bmi", "age"])
    assert df.loc["smoker", "count"] == 950  # not 550 with 400 "missing"
    (note,) = df.attrs["notes"]
    assert note.startswith("column 'smoker': booleans (bool) at Leiden and Utrecht counted as")
    assert "(True as 1, False as 0)" in note and "integers (int64) at Groningen" in note
    named = summary_frame(_net(SUMMARY, stored).run("summary", kwargs={"columns": ["smoker"]}))
    _assert_summary_equals_pandas(named, pooled, ["smoker"])


def test_summary_reads_numbers_stored_as_text_as_their_numbers(tmp_path):
    truth = _measurements()
    stored = [
        truth[0],
        truth[1],
        _sqlite(
            tmp_path / "c.db",
            truth[2].astype({"bmi": str}),
            {"smoker": "INTEGER", "bmi": "TEXT", "age": "INTEGER", "sex": "TEXT"},
        ),
    ]
    result = _net(SUMMARY, stored).run("summary")
    _assert_summary_equals_pandas(
        summary_frame(result), pd.concat(truth, ignore_index=True), ["smoker", "bmi", "age"]
    )
    assert "numbers stored as text (object) at Groningen counted as numbers" in result["notes"][0]


def test_summary_refuses_decimal_commas_naming_organization_column_and_both_types(tmp_path):
    truth = _measurements()
    comma = truth[2].assign(bmi=truth[2]["bmi"].map(lambda v: f"{v:.1f}".replace(".", ",")))
    comma.to_csv(tmp_path / "c.csv", index=False)  # "27,2" in quotes: pandas reads text
    stored = [truth[0], truth[1], str(tmp_path / "c.csv")]
    for kwargs in ({}, {"columns": ["bmi", "age"]}):
        with pytest.raises(ValidationError) as caught:
            _net(SUMMARY, stored).run("summary", kwargs=kwargs)
        msg = str(caught.value)
        assert "Column 'bmi'" in msg and "at Groningen" in msg and "organization 2" not in msg
        assert "text with decimal commas (object)" in msg and "numbers (float64) at Leiden" in msg
        assert "store it as numbers with a decimal point" in msg and "leave it out" in msg
        assert caught.value.errors["organization"] == "Groningen"


def test_summary_refuses_text_next_to_numbers_and_text_or_booleans_everywhere():
    frames = [pd.DataFrame({"v": [1.5, 2.5], "t": ["a", "b"], "b": [True, False]})] * 2
    frames = frames + [pd.DataFrame({"v": ["n/a", "3"], "t": ["c", "d"], "b": [False, True]})]
    net = _net(SUMMARY, frames)
    with pytest.raises(
        ValidationError,
        match=r"Column 'v' is text \(object\) at Groningen but "
        r"numbers \(float64\) at Leiden and Utrecht",
    ):
        net.run("summary")
    with pytest.raises(
        ValidationError,
        match=r"Column 't' is not numeric: text \(object\) at "
        r"Leiden and Utrecht and Groningen",
    ):
        net.run("summary", kwargs={"columns": ["t"]})
    with pytest.raises(ValidationError, match=r"Column 'b' holds booleans .*analysis.crosstab"):
        net.run("summary", kwargs={"columns": ["b"]})
    # by default, columns that are numbers nowhere are left out, as pandas does
    ok = [f.drop(columns="v") for f in frames[:2]] + [frames[2].drop(columns="v")]
    assert summary_frame(_net(SUMMARY, ok).run("summary")).empty


def test_a_node_with_a_header_only_csv_says_it_has_no_rows(tmp_path):
    truth = _measurements()
    truth[2].iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    assert pd.read_csv(tmp_path / "empty.csv")["bmi"].dtype == object  # what made it "not numeric"
    stored = [truth[0], truth[1], str(tmp_path / "empty.csv")]
    pooled = pd.concat(truth[:2], ignore_index=True)
    for kwargs, columns in (({"columns": ["bmi"]}, ["bmi"]), ({}, ["smoker", "bmi", "age"])):
        result = _net(SUMMARY, stored).run("summary", kwargs=kwargs)
        df = summary_frame(result)
        _assert_summary_equals_pandas(df, pooled, columns)
        (note,) = df.attrs["notes"]
        assert note.startswith("Groningen has no rows in this database")
    result = _net(CROSSTAB, stored).run("crosstab", kwargs={"row": "smoker", "col": "sex"})
    assert (
        crosstab_frame(result).to_dict() == pd.crosstab(pooled["smoker"], pooled["sex"]).to_dict()
    )
    assert result["notes"] == [note]


# -- integers at or above 2**53 stay exact --------------------------------------------------


def test_summary_keeps_integers_at_and_above_2_53_exact(tmp_path):
    truth = [
        pd.DataFrame({"id": [BIG + 1, BIG + 3, BIG + 5], "x": [1, 2, 3]}),
        pd.DataFrame({"id": [BIG + 7, BIG - 1, 2**62 + 1], "x": [4, 5, 5]}),
        pd.DataFrame(
            {"id": pd.array([BIG + 9, None, BIG, 2**63 - 1], dtype="Int64"), "x": [6, 7, 8, 9]}
        ),
    ]
    truth[2].to_csv(tmp_path / "c.csv", index=False)  # with the missing value: float64 in pandas
    assert pd.read_csv(tmp_path / "c.csv")["id"].dtype == np.float64
    stored = [truth[0], _sqlite(tmp_path / "b.db", truth[1], {"id": "INTEGER", "x": "INTEGER"})]
    result = _net(SUMMARY, [*stored, str(tmp_path / "c.csv")]).run("summary")
    df = summary_frame(result)
    pooled = pd.concat(truth, ignore_index=True)
    assert df.loc["id", "min"] == BIG - 1 and df.loc["id", "max"] == 2**63 - 1
    assert df.loc["id", "min"] == pooled["id"].min() and df.loc["id", "max"] == pooled["id"].max()
    assert result["columns"]["id"]["max"] == 2**63 - 1  # an int, not the float 2**63
    assert isinstance(result["columns"]["id"]["max"], int)
    assert (df.loc["id", "count"], df.loc["id", "missing"]) == (9, 1)
    assert df.loc["x", "max"] == 9 and df["max"].dtype == object  # exact ints kept as ints
    assert df["min"].dtype == np.float64  # BIG - 1 and 1: a float64 holds them exactly
    small = summary_frame(
        LocalNetwork(SUMMARY, [truth[0][["x"]]], policy=PERMISSIVE).run("summary")
    )
    assert small["min"].dtype == np.float64  # only where float64 would round


@pytest.mark.parametrize("kind", ["csv", "sql", "parquet"])
def test_loading_keeps_integers_with_a_missing_value_exact(tmp_path, kind):
    frame = pd.DataFrame(
        {"id": pd.array([BIG + 1, None, 2**62 + 3], dtype="Int64"), "f": [0.5, None, 1e20]}
    )
    if kind == "csv":
        frame.to_csv(tmp_path / "d.csv", index=False)
        uri = str(tmp_path / "d.csv")
    elif kind == "parquet":
        frame.to_parquet(tmp_path / "d.parquet")
        uri = str(tmp_path / "d.parquet")
    else:
        uri = _sqlite(tmp_path / "d.db", frame, {"id": "INTEGER", "f": "REAL"})["database"]
    df = load_database(uri, kind)
    assert df["id"].tolist()[0] == BIG + 1 and df["id"].tolist()[2] == 2**62 + 3
    assert pd.isna(df["id"].tolist()[1]) and df["f"].dtype == np.float64  # floats untouched


def test_mixed_type_summary_warns_nothing_when_types_agree():
    frames = [pd.DataFrame({"a": [1, 2, 3]}), pd.DataFrame({"a": [1.5, np.nan]})]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = LocalNetwork(SUMMARY, frames, policy=PERMISSIVE).run("summary")
    assert result["notes"] == [] and summary_frame(result).attrs["notes"] == []
