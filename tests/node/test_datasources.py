"""Data sources: labels resolve to mounts; missing files and unknown labels give clear reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_app.config import DatabaseConfig
from node_app.datasources import DataSourceError, requested_labels, resolve_databases


def test_resolves_in_requested_order(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x\n1\n")
    b = tmp_path / "b.db"
    b.write_bytes(b"")
    configured = [
        DatabaseConfig("default", str(a), "csv"),
        DatabaseConfig("reg", f"sqlite:///{b}", "sql", "SELECT 1"),
        DatabaseConfig("pg", "postgresql://u@127.0.0.1/db", "sql"),
    ]
    mounts = resolve_databases(["reg", "default", "pg"], configured)
    assert [m.label for m in mounts] == ["reg", "default", "pg"]
    assert mounts[0].query == "SELECT 1" and mounts[1].uri == str(a)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "y.csv"
    with pytest.raises(DataSourceError) as info:
        resolve_databases(["default"], [DatabaseConfig("default", str(missing), "csv")])
    assert str(info.value) == (
        f"database 'default' not found: {missing} does not exist (check `databases` in node.yaml)"
    )


def test_missing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        resolve_databases(["r"], [DatabaseConfig("r", f"sqlite:///{tmp_path / 'no.db'}", "sql")])


def test_unknown_label_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError) as info:
        resolve_databases(["nope"], [DatabaseConfig("default", str(tmp_path), "csv")])
    assert "'nope'" in str(info.value) and "'default'" in str(info.value)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not a file"):
        resolve_databases(["d"], [DatabaseConfig("d", str(tmp_path), "parquet")])


def test_requested_labels_shapes() -> None:
    assert requested_labels([{"label": "a"}, {"label": "a"}, "b", {"x": 1}, None]) == ["a", "b"]
