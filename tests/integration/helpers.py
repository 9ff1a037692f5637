"""Helpers shared by the integration tests: federated results compared with pandas (waiting for a
state is ``tests.support.wait_for``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from vantage6nb import analysis


def assert_federated_equals_pooled(
    client: Any, pooled: pd.DataFrame, *, extremes: str = "deny"
) -> None:
    """``analysis.summary`` and ``analysis.crosstab`` equal pandas on the pooled data (1e-9).

    ``extremes`` is the nodes' policy for min and max: ``deny`` (the default: never released)
    or ``allow`` (released, and equal to pandas).
    """
    summary = analysis.summary(client)
    numeric = pooled.select_dtypes("number")
    assert list(summary.index) == list(numeric.columns)
    for column in numeric.columns:
        col, row = numeric[column], summary.loc[column]
        assert row["count"] == col.count() and row["missing"] == col.isna().sum()
        checked = [("mean", col.mean()), ("std", col.std(ddof=1))]
        if extremes == "allow":
            checked += [("min", col.min()), ("max", col.max())]
        else:
            assert pd.isna(row["min"]) and pd.isna(row["max"]), (column, "extremes released")
        for stat, expected in checked:
            assert row[stat] == pytest.approx(expected, rel=1e-9), (column, stat)
    table = analysis.crosstab(client, "species", "island")
    expected = pd.crosstab(pooled["species"], pooled["island"])
    pd.testing.assert_frame_equal(
        table.loc[expected.index, expected.columns].astype("int64"),
        expected.astype("int64"),
        check_names=False,
    )
    assert table.attrs["task_id"] and table.attrs["image"] == "v6nb/crosstab"
