"""Summary and crosstab on a real demo network whose nodes store a column in different types
(CSV, SQLite; issue 11, "No silent loss"), in the process and the Docker runtime: each equals
pandas on the pooled data, or fails naming the organization, the column, both types and what
to do."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml

from vantage6nb import analysis, demo
from vantage6nb.analysis import DataWarning
from vantage6nb.errors import TaskFailed

pytestmark = pytest.mark.integration

NAMES = ["Leiden", "Utrecht", "Groningen"]
BIG = 2**53
# every value released, extremes too: these tests are about types (docs/privacy.md for the rest)
POLICY = {
    "min_count": 1,
    "extremes": "allow",
    "dominance": {"k": 1.0},
    "p_percent": 0.0,
    "levels_density": 1.0,
}
LABELS = ["grades", "bools", "commas", "empty", "big"]


def _truth() -> dict[str, list[pd.DataFrame]]:
    """The true data of each database label, one frame per node (Leiden, Utrecht, Groningen)."""
    rng = np.random.default_rng(11)
    grades = []
    for n in (286, 276, 250):
        grades.append(
            pd.DataFrame(
                {
                    "grade": pd.array(rng.choice([1, 2, 3], size=n), dtype="Int64"),
                    "sex": rng.choice(["F", "M"], size=n),
                }
            )
        )
    grades[2].loc[::10, "grade"] = pd.NA  # Groningen: missing values, so pandas reads floats
    grades[1]["grade"] = grades[1]["grade"].astype(object)
    grades[1].loc[::25, "grade"] = "unknown"  # Utrecht: a text label, so pandas reads text
    measures = [
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
    big = [
        pd.DataFrame({"id": pd.array([BIG + 1, BIG + 3, BIG + 5], dtype="Int64")}),
        pd.DataFrame({"id": pd.array([BIG - 1, BIG + 7, 2**62 + 1], dtype="Int64")}),
        pd.DataFrame({"id": pd.array([BIG + 9, None, BIG, 2**63 - 1], dtype="Int64")}),
    ]
    return {"grades": grades, "measures": measures, "big": big}


TRUTH = _truth()


def _write(folder, i: int) -> None:
    """Node ``i``'s files: its true data, stored as that node stores it."""
    folder.mkdir(parents=True, exist_ok=True)
    TRUTH["grades"][i].to_csv(folder / "grades.csv", index=False)
    m = TRUTH["measures"][i]
    if i < 2:  # booleans in a CSV
        m.astype({"smoker": bool}).to_csv(folder / "bools.csv", index=False)
        m.to_csv(folder / "commas.csv", index=False)
        m.to_csv(folder / "empty.csv", index=False)
    else:  # the same booleans as 0/1 (SQLite, CSV), decimal commas, a CSV with a header only
        m.to_csv(folder / "bools.csv", index=False)
        with sqlite3.connect(folder / "bools.db") as con:
            m.to_sql("measures", con, index=False, dtype={"smoker": "INTEGER"})
        con.close()
        m.assign(bmi=m["bmi"].map(lambda v: f"{v:.1f}".replace(".", ","))).to_csv(
            folder / "commas.csv", index=False
        )
        m.iloc[:0].to_csv(folder / "empty.csv", index=False)
    TRUTH["big"][i].to_csv(folder / "big.csv", index=False)


@pytest.fixture(
    scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)]
)
def mixed_net(request, tmp_path_factory):
    """The demo network, in each runtime (the Docker one runs the shipped images)."""
    if request.param == "docker":
        request.getfixturevalue("docker_client")  # skips when no engine answers
    root = tmp_path_factory.mktemp(f"mixed-types-{request.param}")
    for i, name in enumerate(NAMES):
        _write(root / "nodes" / name.lower(), i)
    databases = [{"label": "default", "uri": "penguins.csv", "type": "csv"}] + [
        {"label": label, "uri": f"{label}.csv", "type": "csv"} for label in LABELS
    ]  # relative: each node reads the files in its own folder
    settings = {"databases": databases, "disclosure": POLICY}
    with demo.start(nodes=3, workdir=root, node_settings=settings, runtime=request.param) as net:
        if request.param == "docker":
            # the shipped images have no SQLAlchemy (no SQL sources yet): Groningen's 0/1 stay
            # in its CSV, which pandas reads as int64 just the same
            yield net
            return
        # Groningen keeps its booleans in SQLite
        net.stop_node("Groningen")
        path = root / "nodes" / "groningen" / "node.yaml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        for entry in config["databases"]:
            if entry["label"] == "bools":
                entry.update(
                    uri=f"sqlite:///{root / 'nodes' / 'groningen' / 'bools.db'}", type="sql"
                )
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        net.start_node("Groningen")
        yield net


@pytest.fixture
def client(mixed_net):
    return mixed_net.client()


def test_crosstab_counts_1_text_1_and_float_1_as_one_category(client):
    with pytest.warns(DataWarning, match="column 'grade' has different types") as caught:
        # missing grades left out, as the pandas reference below does
        got = analysis.crosstab(client, "grade", "sex", database="grades", dropna=True)
    message = str(caught[0].message)
    # text is object in pandas 2, str in pandas 3 (the images may have either)
    assert re.search(r"text \((object|str)\) at Utrecht", message)
    assert "integers (int64) at Leiden" in message
    assert "numbers (float64) at Groningen" in message
    pooled = pd.concat(TRUTH["grades"], ignore_index=True)
    expected = pd.crosstab(pooled["grade"], pooled["sex"])  # 1, 2, 3 and "unknown"
    assert got.to_dict() == expected.to_dict()
    assert int(got.to_numpy().sum()) == int(pooled["grade"].notna().sum())
    assert list(got.index) == [1, 2, 3, "unknown"]
    assert got.attrs["notes"] and got.attrs["image"] == "v6nb/crosstab"


def test_summary_counts_booleans_as_0_and_1_next_to_sqlite_integers(client):
    with pytest.warns(DataWarning, match="column 'smoker': booleans .bool. at Leiden and Utrecht"):
        got = analysis.summary(client, database="bools")
    pooled = pd.concat(TRUTH["measures"], ignore_index=True)
    numeric = pooled.select_dtypes("number")
    assert list(got.index) == list(numeric.columns) == ["smoker", "bmi", "age"]
    for name in numeric.columns:
        col, row = numeric[name], got.loc[name]
        assert (row["count"], row["missing"]) == (col.count(), 0), name
        for stat, expected in [("mean", col.mean()), ("std", col.std()), ("min", col.min())]:
            assert row[stat] == pytest.approx(expected, rel=1e-9), (name, stat)
    assert got.loc["smoker", "count"] == 950  # Groningen's 550 rows as numbers, not "missing"


def test_summary_refuses_decimal_commas_naming_organization_column_and_both_types(client):
    for columns in (None, ["bmi", "age"]):
        with pytest.raises(TaskFailed) as caught:
            analysis.summary(client, columns=columns, database="commas")
        msg = str(caught.value)
        assert re.search(
            r"Column 'bmi' is text with decimal commas \((object|str)\) at Groningen", msg
        )
        assert "but numbers (float64) at Leiden and Utrecht" in msg
        assert "Ask Groningen to store it as numbers with a decimal point" in msg
        assert "leave it out" in msg and "\n" not in msg  # one sentence, no traceback


def test_a_node_with_a_header_only_csv_says_it_has_no_rows(client):
    pooled = pd.concat(TRUTH["measures"][:2], ignore_index=True)
    for columns in (["bmi"], None):
        with pytest.warns(DataWarning, match="Groningen has no rows in this database"):
            got = analysis.summary(client, columns=columns, database="empty")
        for name in columns or ["smoker", "bmi", "age"]:
            col = pooled[name]
            assert got.loc[name, "count"] == col.count() and got.loc[name, "missing"] == 0
            assert got.loc[name, "mean"] == pytest.approx(col.mean(), rel=1e-9)
            assert got.loc[name, "std"] == pytest.approx(col.std(), rel=1e-9)
    with pytest.warns(DataWarning, match="Groningen has no rows"):
        table = analysis.crosstab(client, "smoker", "sex", database="empty")
    assert table.to_dict() == pd.crosstab(pooled["smoker"], pooled["sex"]).to_dict()


def test_integers_at_and_above_2_53_stay_exact(client):
    got = analysis.summary(client, database="big")
    pooled = pd.concat(TRUTH["big"], ignore_index=True)["id"]
    assert got.loc["id", "min"] == pooled.min() == BIG - 1
    assert got.loc["id", "max"] == pooled.max() == 2**63 - 1
    assert isinstance(got.loc["id", "max"], int)  # not the float 9.223372036854776e18
    assert (got.loc["id", "count"], got.loc["id", "missing"]) == (9, 1)
    assert got.loc["id", "mean"] == pytest.approx(pooled.astype("float64").mean(), rel=1e-9)
