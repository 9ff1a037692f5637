"""The crosstab counts a missing value as its own category, like pandas.crosstab(dropna=False),
under the same disclosure rules as every other cell; on the algorithm kit and a real demo network."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.demo._setup import split_dataset

PENGUINS = "vantage6nb/demo/data/penguins.csv"


@pytest.fixture(scope="module")
def parts() -> list[pd.DataFrame]:
    return split_dataset(pd.read_csv(PENGUINS), 3)


def _equal_to_pandas(table: pd.DataFrame, pooled: pd.DataFrame, row: str, col: str) -> None:
    expected = pd.crosstab(pooled[row], pooled[col], dropna=False)
    pd.testing.assert_frame_equal(table, expected, check_index_type=False, check_column_type=False)


@pytest.mark.parametrize(("row", "col"), [("sex", "year"), ("species", "sex"), ("year", "sex")])
def test_missing_is_a_counted_category_equal_to_pandas(parts, row, col) -> None:
    net = LocalNetwork("vantage6nb.algorithms.crosstab", parts, policy={"min_count": 1})
    table = crosstab_frame(net.run("crosstab", kwargs={"row": row, "col": col}))
    pooled = pd.concat(parts, ignore_index=True)
    _equal_to_pandas(table, pooled, row, col)
    axis = "row" if row == "sex" else "col"
    assert table.attrs["missing"] == [axis]
    labels = table.index if axis == "row" else table.columns
    assert pd.isna(labels[-1])  # last, as pandas puts it
    missing = table.loc[np.nan] if axis == "row" else table[labels[-1]]
    assert int(missing.sum()) == int(pooled["sex"].isna().sum()) == 11
    if "year" in (row, col):  # a year stays an int next to the missing label
        years = table.columns if col == "year" else table.index
        assert all(isinstance(y, int) for y in years)


def test_dropna_leaves_missing_out_as_pandas_default(parts) -> None:
    net = LocalNetwork("vantage6nb.algorithms.crosstab", parts, policy={"min_count": 1})
    table = crosstab_frame(
        net.run("crosstab", kwargs={"row": "sex", "col": "year", "dropna": True})
    )
    pooled = pd.concat(parts, ignore_index=True)
    assert table.equals(pd.crosstab(pooled["sex"], pooled["year"]))
    assert table.attrs["missing"] == []


def test_missing_cells_follow_the_same_disclosure_rules(parts) -> None:
    from vantage6nb.common.errors import DisclosureRefused

    # refused where small cells are refused (the default): the missing cells are small
    refusing = LocalNetwork("vantage6nb.algorithms.crosstab", parts)
    with pytest.raises(DisclosureRefused, match="min_count"):
        refusing.run("crosstab", kwargs={"row": "sex", "col": "year"})
    # suppressed where they are suppressed: null cells, named in attrs["suppressed"]
    hiding = LocalNetwork(
        "vantage6nb.algorithms.crosstab", parts, policy={"small_cells": "suppress"}
    )
    table = crosstab_frame(hiding.run("crosstab", kwargs={"row": "sex", "col": "year"}))
    assert str(table.dtypes.iloc[0]) == "Int64"
    withheld = table.attrs["suppressed"]
    assert withheld and all(pd.isna(r) for r, _ in withheld)  # only missing-sex cells are small
    assert table.loc[np.nan].isna().all()
    assert table.loc["female"].notna().all()


# -- on a real demo network (server + 3 process-runtime nodes) -------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_demo_crosstab_counts_missing_equal_to_pandas() -> None:
    from vantage6nb import analysis, demo

    # min_count 1: no cell is small, so the missing category is released as counted
    with demo.start(nodes=3, node_settings={"disclosure": {"min_count": 1}}) as net:
        client = net.client()
        try:
            pooled = pd.concat([pd.read_csv(p) for p in net.datasets.values()], ignore_index=True)
            table = analysis.crosstab(client, "sex", "year")
            _equal_to_pandas(table, pooled, "sex", "year")
            assert table.attrs["missing"] == ["row"] and table.attrs["dropna"] is False
            assert int(table.loc[np.nan].sum()) == int(pooled["sex"].isna().sum())
            assert table.attrs["image"] == "v6nb/crosstab"
        finally:
            client.close()


@pytest.mark.integration
@pytest.mark.slow
def test_demo_default_policy_leaves_missing_out_and_says_so(shared_demo_net) -> None:
    from vantage6nb import analysis

    client = shared_demo_net.client()
    try:
        pooled = pd.concat(
            [pd.read_csv(p) for p in shared_demo_net.datasets.values()], ignore_index=True
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = analysis.crosstab(client, "sex", "year")
        # the missing-sex cells are below 5 at every station: refused, so asked without them
        assert table.attrs["dropna"] is True
        assert any(
            issubclass(w.category, analysis.DataWarning) and "missing values" in str(w.message)
            for w in caught
        )
        assert table.equals(
            pd.crosstab(pooled["sex"], pooled["year"]).rename_axis(index="sex", columns="year")
        )
    finally:
        client.close()


@pytest.mark.integration
@pytest.mark.slow
def test_demo_breakdown_per_organization_adds_up_to_the_pooled_table(shared_demo_net) -> None:
    from vantage6nb import analysis
    from vantage6nb.widgets import ResultView
    from vantage6nb.widgets._result import breakdown

    client = shared_demo_net.client()
    try:
        table = analysis.crosstab(client, "species", "island")
        parts = breakdown(client, table)
        assert sorted(parts) == sorted(shared_demo_net.datasets)  # every node released its part
        for name, part in parts.items():
            own = pd.read_csv(shared_demo_net.datasets[name])
            expected = pd.crosstab(own["species"], own["island"], dropna=False)
            assert part.loc[expected.index, expected.columns].equals(expected), name
        total = sum(p.to_numpy() for p in parts.values())
        assert (total == table.to_numpy()).all()
        view = ResultView(table, by_organization=parts)
        assert [a.text for a in view.figure.layout.annotations] == ["pooled", *parts]
    finally:
        client.close()


@pytest.mark.integration
@pytest.mark.slow
def test_demo_summary_breakdown_per_organization_equals_pandas(shared_demo_net) -> None:
    from vantage6nb import analysis
    from vantage6nb.widgets import ResultView
    from vantage6nb.widgets._result import breakdown

    client = shared_demo_net.client()
    try:
        summary = analysis.summary(client, columns=["body_mass_g", "year"])
        parts = breakdown(client, summary)
        assert sorted(parts) == sorted(shared_demo_net.datasets)
        for name, part in parts.items():
            own = pd.read_csv(shared_demo_net.datasets[name])
            for column in ("body_mass_g", "year"):
                assert part.loc[column, "count"] == own[column].count()
                assert part.loc[column, "mean"] == pytest.approx(own[column].mean(), rel=1e-9)
                assert part.loc[column, "std"] == pytest.approx(own[column].std(), rel=1e-9)
        fig = ResultView(summary, by_organization=parts).figure
        names = {t.name for t in fig.data}
        assert set(parts) <= names and "mean ± std (pooled)" in names
        assert fig.layout.yaxis2.tickformat == "d"  # year: whole-number ticks
    finally:
        client.close()
