"""``vantage6nb.analysis`` on the session's demo network (server + 3 process-runtime nodes) against
pandas; the tests only read."""

from __future__ import annotations

import pandas as pd
import pytest

from vantage6nb import analysis, errors

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(shared_demo_net):
    c = shared_demo_net.client()
    yield c
    c.close()


def _pooled(network, names=None) -> pd.DataFrame:
    paths = [p for n, p in network.datasets.items() if names is None or n in names]
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def test_summary_equals_pandas_on_pooled_data(shared_demo_net, client) -> None:
    pooled = _pooled(shared_demo_net)
    numeric = pooled.select_dtypes("number")
    df = analysis.summary(client)
    assert list(df.columns) == ["count", "missing", "mean", "std", "min", "max"]
    assert df.index.name == "column" and list(df.index) == list(numeric.columns)
    assert df["count"].dtype == "int64" and df["std"].dtype == "float64"
    for name in numeric.columns:
        col = numeric[name]
        assert df.loc[name, "count"] == col.count()
        assert df.loc[name, "missing"] == col.isna().sum()
        for stat, expected in [("mean", col.mean()), ("std", col.std(ddof=1))]:
            assert df.loc[name, stat] == pytest.approx(expected, rel=1e-9), (name, stat)
        # the demo's nodes keep the default policy: a minimum or maximum is one record's value
        assert pd.isna(df.loc[name, "min"]) and pd.isna(df.loc[name, "max"])
    attrs = df.attrs
    assert attrs["image"] == "v6nb/summary" and isinstance(attrs["task_id"], int)
    assert sorted(attrs["organizations"]) == sorted(shared_demo_net.datasets)
    assert attrs["created"]
    task = client.task.get(attrs["task_id"])
    assert task.method == "summary" and len(task.runs) == 1  # one central task
    assert task.organization_ids == [client.whoami["organization_id"]]  # at the researcher's org


def test_summary_of_chosen_columns_and_organizations(shared_demo_net, client) -> None:
    names = sorted(shared_demo_net.datasets)[1:]
    pooled = _pooled(shared_demo_net, names)
    df = analysis.summary(client, organizations=names, columns="body_mass_g")
    assert list(df.index) == ["body_mass_g"]
    assert df.loc["body_mass_g", "count"] == pooled["body_mass_g"].count()
    assert df.loc["body_mass_g", "std"] == pytest.approx(pooled["body_mass_g"].std(), rel=1e-9)
    assert sorted(df.attrs["organizations"]) == names


def test_crosstab_equals_pandas_and_keeps_value_types(shared_demo_net, client) -> None:
    pooled = _pooled(shared_demo_net)
    table = analysis.crosstab(client, "species", "island")
    expected = pd.crosstab(pooled["species"], pooled["island"])
    pd.testing.assert_frame_equal(
        table, expected, check_names=True, check_index_type=False, check_column_type=False
    )
    assert table.attrs["image"] == "v6nb/crosstab"
    # (species x year has a cell below 5 records at the smallest station: refused there)
    by_year = analysis.crosstab(client, "sex", "year")
    assert list(by_year.columns) == sorted(pooled["year"].unique().tolist())
    assert all(isinstance(c, int) for c in by_year.columns)
    assert by_year.values.sum() == len(pooled.dropna(subset=["sex", "year"]))
    assert by_year.equals(
        pd.crosstab(pooled["sex"], pooled["year"]).rename_axis(index="sex", columns="year")
    )


def test_unknown_column_fails_with_the_reason(client) -> None:
    # refused before sending once the nodes reported their columns, else by the node
    with pytest.raises((errors.TaskFailed, errors.ValidationError), match="nope"):
        analysis.crosstab(client, "species", "nope")
