"""The node's column report end to end: a real server and real node processes on loopback.

What it reports (every source type, the right types), what it must not (hidden columns, any value
of the data), when (start, a changed file, off clears an earlier report) and who may put it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from node_app.config import DatabaseConfig, load_config
from node_app.datasources import SAMPLE_ROWS, column_report, pandas_column_type, source_signature
from tests.support import NodeProcess, ServerProcess, bearer, wait_for
from vantage6nb.common.errors import ConfigurationError

from .harness import ROOT_PASSWORD, Api, probe_node, server_process

REPORT_S = 60.0  # a hang guard, not a speed assertion
# values that occur in the data only: none may reach the server
SECRETS = ("Zebulon-Quixote-7731", "73.91827", "2031-07-19", "Xanthippe-9942", "HIDDEN-VALUE-5521")


def _csv(path: Path, extra: bool = False) -> None:
    head = "id,name,weight,smoker,visit,diagnosis_code" + (",added_later" if extra else "")
    rows = [
        f"1,Zebulon-Quixote-7731,73.91827,True,2031-07-19,HIDDEN-VALUE-5521{',1' if extra else ''}",
        f"2,Xanthippe-9942,80.5,False,2030-01-02,A{',2' if extra else ''}",
    ]
    path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("columns")
    with server_process(tmp) as server:
        root = Api(server.url, "root", ROOT_PASSWORD)
        orgs = [
            root.call("POST", "/organization", json={"name": f"col-org-{i}"})["id"] for i in (0, 1)
        ]
        outsider_org = root.call("POST", "/organization", json={"name": "col-outsider"})["id"]
        collab = root.call(
            "POST", "/collaboration", json={"name": "col-study", "organization_ids": orgs}
        )["id"]
        nodes = [
            root.call("POST", "/node", json={"organization_id": o, "collaboration_id": collab})
            for o in orgs
        ]
        admin_role = root.call("GET", "/role", params={"name": "organization admin"})["data"][0]
        users = {}
        for name, org, roles in (
            ("col-researcher", orgs[1], None),
            ("col-admin", orgs[0], [admin_role["id"]]),
            ("col-outsider", outsider_org, None),
        ):
            body = {"username": name, "password": "column-pass-1", "organization_id": org}
            if roles:
                body["roles"] = roles
            root.call("POST", "/user", json=body)
            users[name] = Api(server.url, name, "column-pass-1")
        data = tmp / "data"
        data.mkdir()
        _csv(data / "patients.csv")
        pd.DataFrame(
            {
                "n": pd.array([1, 2], dtype="int64"),
                "ratio": [0.5, 1.5],
                "flag": [True, False],
                "label": ["Xanthippe-9942", "b"],
                "when": pd.to_datetime(["2031-07-19", "2030-01-01"]),
                "group": pd.Categorical(["x", "y"]),
            }
        ).to_parquet(data / "labs.parquet")
        pd.DataFrame({"code": [1, 2], "site": ["Zebulon-Quixote-7731", "y"]}).to_excel(
            data / "sites.xlsx", index=False
        )
        with sqlite3.connect(data / "registry.db") as con:
            con.execute(
                "CREATE TABLE visits (vid INTEGER, score REAL, note TEXT, seen DATE, ok BOOLEAN)"
            )
            con.execute(
                "INSERT INTO visits VALUES (1, 73.91827, 'Xanthippe-9942', '2031-07-19', 1)"
            )
        yield {
            "tmp": tmp,
            "server": server,
            "root": root,
            "orgs": orgs,
            "collab": collab,
            "nodes": nodes,
            "users": users,
            "data": data,
        }


def databases(data: Path) -> list[dict[str, Any]]:
    return [
        {
            "label": "default",
            "uri": str(data / "patients.csv"),
            "type": "csv",
            "hide_columns": ["diagnosis_*"],
        },
        {"label": "labs", "uri": str(data / "labs.parquet"), "type": "parquet"},
        {"label": "sites", "uri": str(data / "sites.xlsx"), "type": "excel"},
        {"label": "registry", "uri": f"sqlite:///{data / 'registry.db'}", "type": "sql"},
        {
            "label": "registry_query",
            "uri": f"sqlite:///{data / 'registry.db'}",
            "type": "sql",
            "query": "SELECT vid, score * 2 AS doubled, note FROM visits",
        },
        {"label": "gone", "uri": str(data / "missing.csv"), "type": "csv"},
    ]


def node_of(world: dict[str, Any], i: int, **settings: Any) -> NodeProcess:
    cfg = {"databases": databases(world["data"]), "sync_interval_s": 1, **settings}
    return probe_node(
        world["tmp"], f"node{i}", world["server"].url, world["nodes"][i]["api_key"], **cfg
    )


def reported(api: Api, world: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    query = {"collaboration_id": world["collab"], **params}
    return list(api.call("GET", "/column", params=query)["data"])


def by_label(items: list[dict[str, Any]], org: int) -> dict[str, list[tuple[str, str]]]:
    return {
        i["database"]: [(c["name"], c["type"]) for c in i["columns"]]
        for i in items
        if i["organization_id"] == org
    }


def stored_bytes(server: ServerProcess) -> bytes:
    """Everything the server keeps on disk: its database (with the WAL) and data folder."""
    folder = server.folder / "server-data"
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def db_rows(server: ServerProcess) -> list[tuple[int, Any]]:
    files = [p for p in (server.folder / "server-data").rglob("server.sqlite") if p.is_file()]
    assert files, "the server's SQLite database was not found"
    with sqlite3.connect(files[0]) as con:
        return [
            (r[0], json.loads(r[1]))
            for r in con.execute("SELECT node_id, databases FROM node_columns")
        ]


EXPECTED = {
    "default": [
        ("id", "integer"),
        ("name", "string"),
        ("weight", "float"),
        ("smoker", "boolean"),
        ("visit", "datetime"),
    ],
    "labs": [
        ("n", "integer"),
        ("ratio", "float"),
        ("flag", "boolean"),
        ("label", "string"),
        ("when", "datetime"),
        ("group", "category"),
    ],
    "sites": [("code", "integer"), ("site", "string")],
    "registry": [
        ("vid", "integer"),
        ("score", "float"),
        ("note", "string"),
        ("seen", "datetime"),
        ("ok", "boolean"),
    ],
    "registry_query": [("vid", "integer"), ("doubled", "float"), ("note", "string")],
}


def first_report(world: dict[str, Any], org: int) -> dict[str, list[tuple[str, str]]]:
    researcher = world["users"]["col-researcher"]
    return wait_for(
        lambda: by_label(reported(researcher, world), org) or None, REPORT_S, "a column report"
    )


@pytest.mark.integration
def test_every_column_of_every_source_with_its_type(world):
    with node_of(world, 0) as node:
        assert first_report(world, world["orgs"][0]) == EXPECTED  # "gone" (missing) left out
        assert "column report sent" in node.output()


@pytest.mark.integration
def test_a_hidden_column_is_absent_at_the_server(world):
    org = world["orgs"][0]
    with node_of(world, 0):
        first_report(world, org)
        for user in ("col-researcher", "col-admin"):  # the node's own organization admin too
            text = json.dumps(reported(world["users"][user], world))
            assert "diagnosis_code" not in text, f"{user} sees the hidden column"
        rows = db_rows(world["server"])
        assert [r[0] for r in rows] == [world["nodes"][0]["id"]]
        assert "diagnosis_code" not in json.dumps(rows)
        assert b"diagnosis_code" not in stored_bytes(world["server"])


@pytest.mark.integration
def test_no_value_of_the_data_reaches_the_server(world):
    with node_of(world, 0):
        first_report(world, world["orgs"][0])
        answer = json.dumps(reported(world["users"]["col-admin"], world))
        disk = stored_bytes(world["server"])
        for secret in SECRETS:
            assert secret not in answer, f"{secret!r} is in the API's answer"
            assert secret.encode() not in disk, f"{secret!r} reached the server's storage"


@pytest.mark.integration
def test_a_researcher_outside_the_collaboration_sees_nothing(world):
    with node_of(world, 0):
        first_report(world, world["orgs"][0])
        r = world["users"]["col-outsider"].s.get(
            f"{world['server'].url}/api/column",
            params={"collaboration_id": world["collab"]},
            timeout=30,
        )
        assert r.status_code in (403, 404), r.text
        assert "weight" not in r.text


@pytest.mark.integration
def test_a_changed_file_is_reported_again(world):
    org = world["orgs"][0]
    researcher = world["users"]["col-researcher"]
    csv = world["data"] / "patients.csv"
    with node_of(world, 0):
        wait_for(
            lambda: "default" in by_label(reported(researcher, world), org), REPORT_S, "a report"
        )
        _csv(csv, extra=True)
        try:

            def added() -> bool:
                return ("added_later", "integer") in by_label(reported(researcher, world), org)[
                    "default"
                ]

            wait_for(added, REPORT_S, "the added column in the report")
        finally:
            _csv(csv)


@pytest.mark.integration
def test_a_changed_file_is_reported_between_sync_ticks(world):
    # the node watches its files (a stat every 2 s): a new column reaches the researchers'
    # pre-send checks long before the next re-sync tick (an hour here)
    org = world["orgs"][0]
    researcher = world["users"]["col-researcher"]
    csv = world["data"] / "patients.csv"
    with node_of(world, 0, sync_interval_s=3600):
        wait_for(
            lambda: "default" in by_label(reported(researcher, world), org), REPORT_S, "a report"
        )
        _csv(csv, extra=True)
        try:
            wait_for(
                lambda: (
                    ("added_later", "integer")
                    in by_label(reported(researcher, world), org)["default"]
                ),
                REPORT_S,
                "the added column in the report, before the next sync tick",
            )
        finally:
            _csv(csv)


@pytest.mark.integration
def test_report_columns_false_reports_nothing_and_clears_an_earlier_report(world):
    org = world["orgs"][1]
    researcher = world["users"]["col-researcher"]
    with node_of(world, 1):
        wait_for(lambda: by_label(reported(researcher, world), org), REPORT_S, "a report")
    with node_of(world, 1, report_columns=False) as node:
        wait_for(
            lambda: not by_label(reported(researcher, world), org),
            REPORT_S,
            "the earlier report to be forgotten",
        )
        assert "column report: off" in node.output()
        assert world["nodes"][1]["id"] not in [r[0] for r in db_rows(world["server"])]


@pytest.mark.integration
def test_a_node_cannot_put_another_nodes_report(world):
    url = world["server"].url
    token = requests.post(
        f"{url}/api/token/node", json={"api_key": world["nodes"][1]["api_key"]}, timeout=30
    ).json()["access_token"]
    forged = {
        "databases": [{"label": "default", "columns": [{"name": "forged", "type": "string"}]}]
    }
    victim = world["nodes"][0]["id"]
    for method in ("PUT", "DELETE"):
        r = requests.request(
            method,
            f"{url}/api/node/{victim}/columns",
            json=forged if method == "PUT" else None,
            headers=bearer(token),
            timeout=30,
        )
        assert r.status_code in (403, 404), (method, r.status_code, r.text)
    assert "forged" not in json.dumps(db_rows(world["server"]))


# -- the parts, without processes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, None], "float"),  # pandas' type for an integer column with a missing value
        ([float("nan")], "float"),
        (pd.Series([None, None], dtype=object), "string"),
        (["2024-01-31", "31/01/2024"], "string"),  # not every value ISO: text
        (["2024-01-31T10:00:00", None], "datetime"),
        ([1, "a"], "unknown"),  # mixed objects
        (pd.to_timedelta([1], unit="s"), "unknown"),
        (pd.array([1, None], dtype="Int64"), "integer"),
        (pd.array([True, None], dtype="boolean"), "boolean"),
        (pd.Categorical(["a"]), "category"),
    ],
)
def test_pandas_types(values: Any, expected: str):
    assert pandas_column_type(pd.Series(values)) == expected


def test_a_csv_is_typed_from_a_bounded_sample(tmp_path: Path):
    path = tmp_path / "d.csv"
    # an integer column that turns to text after the sample: typed from the sample
    path.write_text("n\n" + "1\n" * SAMPLE_ROWS + "late-text\n")
    assert column_report([DatabaseConfig("d", str(path), "csv")]) == [
        {"label": "d", "columns": [{"name": "n", "type": "integer"}]}
    ]


def test_hide_columns_takes_names_and_patterns(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("id,zip_code,zip4,age,Zip\n1,2,3,4,5\n")
    db = DatabaseConfig("d", str(path), "csv", hide_columns=("id", "zip*"))
    assert [c["name"] for c in column_report([db])[0]["columns"]] == ["age", "Zip"]


def test_the_signature_follows_mtime_and_size(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    db = DatabaseConfig("d", str(path), "csv")
    before = source_signature(db)
    path.write_text("a,b\n1,2\n")
    assert before is not None and source_signature(db) != before
    assert (
        source_signature(DatabaseConfig("s", "postgresql://h/db", "sql")) is None
    )  # read each tick


def test_settings(tmp_path: Path):
    cfg = load_config(None, environ={})
    assert cfg.report_columns is True
    cfg = load_config(None, environ={"V6NB_NODE_REPORT_COLUMNS": "false"})
    assert cfg.report_columns is False
    yaml_text = "databases:\n  - {label: d, uri: d.csv, type: csv, hide_columns: [a, 'b*']}\n"
    (tmp_path / "node.yaml").write_text(yaml_text)
    assert load_config(tmp_path / "node.yaml", environ={}).databases[0].hide_columns == ("a", "b*")
    (tmp_path / "node.yaml").write_text(
        "databases:\n  - {label: d, uri: d.csv, type: csv, hide_columns: a}\n"
    )
    with pytest.raises(ConfigurationError, match="hide_columns"):
        load_config(tmp_path / "node.yaml", environ={})
