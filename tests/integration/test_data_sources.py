"""Every data-source type reaches an algorithm through a real node: CSV, Parquet, Excel and SQL (with a query)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from vantage6nb import demo
from vantage6nb.demo._setup import PENGUINS as PENGUINS_CSV

pytestmark = pytest.mark.integration

PENGUINS = pd.read_csv(PENGUINS_CSV)


@pytest.fixture(scope="module")
def sources_net(tmp_path_factory):
    """A one-node demo network whose node has a CSV, a Parquet, an Excel and an SQL source."""
    folder = tmp_path_factory.mktemp("sources")
    PENGUINS.to_csv(folder / "p.csv", index=False)
    PENGUINS.to_parquet(folder / "p.parquet")
    PENGUINS.to_excel(folder / "p.xlsx", index=False)
    with sqlite3.connect(folder / "p.db") as con:
        PENGUINS.to_sql("penguins", con, index=False)
    databases = [
        {"label": "default", "uri": str(folder / "p.csv"), "type": "csv"},
        {"label": "pq", "uri": str(folder / "p.parquet"), "type": "parquet"},
        {"label": "xl", "uri": str(folder / "p.xlsx"), "type": "excel"},
        {
            "label": "registry",
            "uri": f"sqlite:///{folder / 'p.db'}",
            "type": "sql",
            "query": "SELECT species, island FROM penguins WHERE island = 'Biscoe'",
        },
    ]
    with demo.start(nodes=1, node_settings={"databases": databases}) as network:
        yield network


@pytest.mark.parametrize("label", ["default", "pq", "xl"])
def test_file_sources_reach_the_algorithm(sources_net, label):
    client = sources_net.client()
    task = client.task.create(image="v6nb/diagnostics", method="shape", databases=[label])
    assert task.wait(timeout=60).result() == {
        "rows": len(PENGUINS),
        "columns": list(PENGUINS.columns),
    }


def test_sql_source_runs_the_configured_query(sources_net):
    client = sources_net.client()
    task = client.task.create(image="v6nb/diagnostics", method="shape", databases=["registry"])
    expected_rows = int((PENGUINS["island"] == "Biscoe").sum())
    assert task.wait(timeout=60).result() == {
        "rows": expected_rows,
        "columns": ["species", "island"],
    }


def test_unknown_label_fails_with_a_reason(sources_net):
    client = sources_net.client()
    task = client.task.create(image="v6nb/diagnostics", method="shape", databases=["nope"])
    task.wait(timeout=60, raise_on_failure=False)
    row = task.status().iloc[0]
    assert row["status"] == "failed" and "nope" in row["reason"]


@pytest.mark.docker
def test_sqlite_source_in_the_docker_runtime(docker_client, tmp_path):
    # The shipped images have no SQLAlchemy: the mounted SQLite file is still read (and queried).
    with sqlite3.connect(tmp_path / "p.db") as con:
        PENGUINS.to_sql("penguins", con, index=False)
    databases = [
        {
            "label": "registry",
            "uri": f"sqlite:///{tmp_path / 'p.db'}",
            "type": "sql",
            "query": "SELECT species, island FROM penguins WHERE island = 'Dream'",
        }
    ]
    settings = {"databases": databases}
    with demo.start(nodes=1, runtime="docker", node_settings=settings) as network:
        client = network.client()
        task = client.task.create(image="v6nb/diagnostics", method="shape", databases=["registry"])
        assert task.wait(timeout=120).result() == {
            "rows": int((PENGUINS["island"] == "Dream").sum()),
            "columns": ["species", "island"],
        }
