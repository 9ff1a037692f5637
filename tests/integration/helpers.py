"""Helpers shared by the integration tests: polling for a state, comparing with pandas."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from vantage6nb import analysis


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_federated_equals_pooled(client: Any, pooled: pd.DataFrame) -> None:
    """``analysis.summary`` and ``analysis.crosstab`` equal pandas on the pooled data (1e-9)."""
    summary = analysis.summary(client)
    numeric = pooled.select_dtypes("number")
    assert list(summary.index) == list(numeric.columns)
    for column in numeric.columns:
        col, row = numeric[column], summary.loc[column]
        assert row["count"] == col.count() and row["missing"] == col.isna().sum()
        for stat, expected in (
            ("mean", col.mean()),
            ("std", col.std(ddof=1)),
            ("min", col.min()),
            ("max", col.max()),
        ):
            assert row[stat] == pytest.approx(expected, rel=1e-9), (column, stat)
    table = analysis.crosstab(client, "species", "island")
    expected = pd.crosstab(pooled["species"], pooled["island"])
    pd.testing.assert_frame_equal(
        table.loc[expected.index, expected.columns].astype("int64"),
        expected.astype("int64"),
        check_names=False,
    )
    assert table.attrs["task_id"] and table.attrs["image"] == "v6nb/crosstab"
