"""``client.columns()`` against a real server and real node processes on loopback: the frame's
contract (columns, order, types), the collaboration it resolves and the database filter."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.support import NodeProcess, wait_for
from vantage6nb import Client
from vantage6nb.common.columns import COLUMN_TYPES, FRAME_COLUMNS
from vantage6nb.common.errors import NotFound, ValidationError

from .conftest import Admin, client_server

pytestmark = pytest.mark.integration

PASSWORD = "columns-Secret-1"
REPORT_S = 60.0  # a hang guard, not a speed assertion


def _node(folder: Path, url: str, key: str, databases: list[dict[str, Any]]) -> NodeProcess:
    return NodeProcess(
        folder,
        {
            "server_url": url,
            "api_key": key,
            "name": folder.name,
            "data_dir": "state",
            "runtime": "process",
            "allowed_images": ["test/*"],
            "log_level": "INFO",
            "databases": databases,
        },
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("columns")
    data = tmp / "data"
    data.mkdir()
    (data / "a.csv").write_text(
        "age,bmi,smoker,visit,sex\n41,22.5,True,2024-01-31,f\n52,31.0,False,2023-12-01,m\n"
    )
    pd.DataFrame(
        {"stage": pd.Categorical(["I", "II"]), "dose": [1.5, 2.0], "n": [1, 2]}
    ).to_parquet(data / "b.parquet")
    with sqlite3.connect(data / "b.db") as con:
        con.execute("CREATE TABLE t (pid INTEGER, seen TIMESTAMP, ok BOOLEAN, blob BLOB)")
    with client_server(tmp) as server:
        admin = Admin(server.url)
        orgs = {
            n: admin.post("/organization", {"name": n})["id"]
            for n in ("Utrecht", "Leiden", "Delft")
        }
        study = admin.post(
            "/collaboration",
            {"name": "study", "organization_ids": [orgs["Utrecht"], orgs["Leiden"]]},
        )
        admin.post("/collaboration", {"name": "quiet", "organization_ids": [orgs["Delft"]]})
        for user, org in (("res-leiden", "Leiden"), ("res-delft", "Delft")):
            admin.post(
                "/user", {"username": user, "password": PASSWORD, "organization_id": orgs[org]}
            )
        keys = {
            n: admin.post("/node", {"organization_id": orgs[n], "collaboration_id": study["id"]})[
                "api_key"
            ]
            for n in ("Utrecht", "Leiden")
        }
        nodes = [
            _node(
                tmp / "leiden",
                server.url,
                keys["Leiden"],
                [
                    {"label": "default", "uri": str(data / "a.csv"), "type": "csv"},
                ],
            ),
            _node(
                tmp / "utrecht",
                server.url,
                keys["Utrecht"],
                [
                    {
                        "label": "default",
                        "uri": str(data / "a.csv"),
                        "type": "csv",
                        "hide_columns": ["sex"],
                    },
                    {"label": "archive", "uri": f"sqlite:///{data / 'b.db'}", "type": "sql"},
                    {"label": "labs", "uri": str(data / "b.parquet"), "type": "parquet"},
                ],
            ),
        ]
        try:
            for node in nodes:
                node.start()
            yield {"url": server.url, "orgs": orgs, "study": study}
        finally:
            for node in nodes:
                node.stop()


def login(net: dict[str, Any], user: str) -> Client:
    return Client(net["url"], timeout=10, state_dir=False).login(user, PASSWORD)


@pytest.fixture
def leiden(net: dict[str, Any]) -> Iterator[Client]:
    c = login(net, "res-leiden")
    yield c
    c.close()


def both_reported(client: Client) -> pd.DataFrame:
    """The frame once both nodes have reported (16 columns in all)."""
    seen: list[pd.DataFrame] = []

    def done() -> bool:
        seen[:] = [client.columns()]
        return set(seen[0]["organization"]) == {"Leiden", "Utrecht"} and len(seen[0]) == 16

    wait_for(done, REPORT_S, "both nodes' column reports")
    return seen[0]


def test_the_frame_lists_every_column_with_its_type_in_order(net, leiden):
    df = both_reported(leiden)
    assert list(df.columns) == list(FRAME_COLUMNS)
    assert set(df["type"]) <= set(COLUMN_TYPES)
    rows = list(df.itertuples(index=False, name=None))
    lei, utr = net["orgs"]["Leiden"], net["orgs"]["Utrecht"]
    csv = [("age", "integer"), ("bmi", "float"), ("smoker", "boolean"), ("visit", "datetime")]
    assert rows == [
        *[(lei, "Leiden", "default", c, t) for c, t in [*csv, ("sex", "string")]],
        *[
            (utr, "Utrecht", "archive", c, t)
            for c, t in [
                ("pid", "integer"),
                ("seen", "datetime"),
                ("ok", "boolean"),
                ("blob", "unknown"),
            ]
        ],
        *[(utr, "Utrecht", "default", c, t) for c, t in csv],  # sex hidden by Utrecht
        *[
            (utr, "Utrecht", "labs", c, t)
            for c, t in [("stage", "category"), ("dose", "float"), ("n", "integer")]
        ],
    ]
    assert df["organization_id"].dtype == "int64"


def test_collaboration_by_name_or_id_and_the_database_filter(net, leiden):
    both_reported(leiden)
    everything = leiden.columns()
    pd.testing.assert_frame_equal(leiden.columns("study"), everything)
    pd.testing.assert_frame_equal(leiden.columns(net["study"]["id"]), everything)
    labs = leiden.columns(database="labs")
    assert list(labs.columns) == list(FRAME_COLUMNS)
    assert set(labs["database"]) == {"labs"} and list(labs["column"]) == ["stage", "dose", "n"]
    assert leiden.columns(database="nothing-here").empty
    with pytest.raises(NotFound, match="study"):  # the message lists the collaborations one has
        leiden.columns("no-such-study")


def test_no_reports_is_an_empty_frame_with_the_columns(net):
    with login(net, "res-delft") as delft:  # Delft's collaboration has no node running
        df = delft.columns()
    assert df.empty and list(df.columns) == list(FRAME_COLUMNS)


def test_several_collaborations_need_one_named(net):
    admin = Admin(net["url"])
    admin.post("/collaboration", {"name": "second", "organization_ids": [net["orgs"]["Leiden"]]})
    with login(net, "res-leiden") as c, pytest.raises(ValidationError, match="collaboration="):
        c.columns()
