"""Node column reports on the in-process app: who may put and read them, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server_app.models import NodeColumns
from tests.server.conftest import Network
from vantage6nb.common.columns import MAX_COLUMNS, MAX_DATABASES, MAX_NAME

REPORT = {
    "databases": [
        {
            "label": "default",
            "columns": [{"name": "age", "type": "integer"}, {"name": "bmi", "type": "float"}],
        },
        {"label": "extra", "columns": [{"name": "visit", "type": "datetime"}]},
    ]
}


def put(n: Network, node: str, target: str | int, body: Any = REPORT) -> Any:
    nid = target if isinstance(target, int) else n.nodes[target]["id"]
    return n.client.put(f"/api/node/{nid}/columns", json=body, headers=n.nodes[node]["headers"])


def read(n: Network, who: dict[str, str], collab: str, **params: Any) -> Any:
    query = {"collaboration_id": n.collabs[collab], **params}
    return n.client.get("/api/column", query_string=query, headers=who)


def stored(app: Any) -> list[NodeColumns]:
    with app.extensions["v6nb_db"].new_session() as s:
        return list(s.scalars(select(NodeColumns)))


def test_a_node_reports_and_members_read_it(server_net: Network):
    r = put(server_net, "a@ab", "a@ab")
    assert r.status_code == 200, r.json
    assert r.json["databases"] == 2 and r.json["columns"] == 3
    r = read(server_net, server_net.users["bob"], "ab")  # b is a member of ab
    assert r.status_code == 200, r.json
    items = r.json["data"]
    assert [(i["organization"], i["database"]) for i in items] == [("a", "default"), ("a", "extra")]
    assert items[0]["columns"] == REPORT["databases"][0]["columns"]
    assert items[0]["node_id"] == server_net.nodes["a@ab"]["id"]
    only = read(server_net, server_net.users["alice"], "ab", database="extra").json["data"]
    assert [i["database"] for i in only] == ["extra"]
    # a new report replaces the old one
    smaller = {"databases": [{"label": "default", "columns": [{"name": "x", "type": "string"}]}]}
    assert put(server_net, "a@ab", "a@ab", smaller).status_code == 200
    items = read(server_net, server_net.users["alice"], "ab").json["data"]
    assert [(i["database"], i["columns"]) for i in items] == [
        ("default", [{"name": "x", "type": "string"}])
    ]


def test_outsiders_and_other_collaborations_see_nothing(server_net: Network):
    assert put(server_net, "a@ab", "a@ab").status_code == 200
    assert put(server_net, "c@bc", "c@bc").status_code == 200
    r = read(server_net, server_net.users["carol"], "ab")  # c is not in ab
    assert r.status_code in (403, 404), r.json
    assert "default" not in str(r.json) and "age" not in str(r.json)
    r = read(server_net, server_net.nodes["c@bc"]["headers"], "ab")  # nor is c's node
    assert r.status_code in (403, 404), r.json
    # bob sees bc's report, not ab's, when asking for bc
    items = read(server_net, server_net.users["bob"], "bc").json["data"]
    assert {i["organization"] for i in items} == {"c"}
    r = server_net.client.get("/api/column", headers=server_net.users["bob"])
    assert r.status_code == 400 and r.json["errors"] == {"collaboration_id": "required"}


@pytest.mark.parametrize("target", ["b@ab", "c@bc", "b@bc"])
def test_a_node_cannot_put_or_delete_another_nodes_report(server_net: Network, app, target):
    assert put(server_net, target, target).status_code == 200
    before = [(c.node_id, c.databases) for c in stored(app)]
    forged = {"databases": [{"label": "default", "columns": [{"name": "f", "type": "string"}]}]}
    r = put(server_net, "a@ab", target, forged)
    assert r.status_code in (403, 404), r.json
    nid = server_net.nodes[target]["id"]
    r = server_net.client.delete(
        f"/api/node/{nid}/columns", headers=server_net.nodes["a@ab"]["headers"]
    )
    assert r.status_code in (403, 404), r.json
    assert [(c.node_id, c.databases) for c in stored(app)] == before


def test_users_cannot_put_reports(server_net: Network, app):
    nid = server_net.nodes["a@ab"]["id"]
    for who in (server_net.root, server_net.users["alice"]):
        r = server_net.client.put(f"/api/node/{nid}/columns", json=REPORT, headers=who)
        assert r.status_code == 403, r.json
    assert stored(app) == []


def test_delete_forgets_the_report_and_a_deleted_node_takes_it_along(server_net: Network, app):
    assert put(server_net, "a@ab", "a@ab").status_code == 200
    assert put(server_net, "b@ab", "b@ab").status_code == 200
    nid = server_net.nodes["a@ab"]["id"]
    headers = server_net.nodes["a@ab"]["headers"]
    for _ in range(2):  # idempotent
        assert (
            server_net.client.delete(f"/api/node/{nid}/columns", headers=headers).status_code == 200
        )
    items = read(server_net, server_net.users["alice"], "ab").json["data"]
    assert {i["organization"] for i in items} == {"b"}
    bid = server_net.nodes["b@ab"]["id"]
    assert server_net.client.delete(f"/api/node/{bid}", headers=server_net.root).status_code == 200
    assert stored(app) == []


def _db(columns: Any, label: Any = "default") -> dict[str, Any]:
    return {"databases": [{"label": label, "columns": columns}]}


BAD = {
    "not an object": [],
    "no databases": {},
    "extra key": {**REPORT, "rows": 100},
    "databases not a list": {"databases": {"default": []}},
    "too many databases": {
        "databases": [{"label": f"d{i}", "columns": []} for i in range(MAX_DATABASES + 1)]
    },
    "duplicate label": {"databases": [{"label": "a", "columns": []}] * 2},
    "label not text": _db([], label=7),
    "empty label": _db([], label=" "),
    "label with a newline": _db([], label="a\nb"),
    "columns not a list": _db({"age": "integer"}),
    "too many columns": _db([{"name": f"c{i}", "type": "string"} for i in range(MAX_COLUMNS + 1)]),
    "unknown type": _db([{"name": "age", "type": "int64"}]),
    "a value sent along": _db([{"name": "age", "type": "integer", "values": [41, 42]}]),
    "a count sent along": _db([{"name": "age", "type": "integer", "count": 12}]),
    "name too long": _db([{"name": "x" * (MAX_NAME + 1), "type": "string"}]),
    "name not text": _db([{"name": 5, "type": "string"}]),
    "name with NUL": _db([{"name": "a\x00", "type": "string"}]),
    "duplicate name": _db([{"name": "a", "type": "string"}] * 2),
    "column not an object": _db(["age"]),
    "type null": _db([{"name": "a", "type": None}]),
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_reports_are_refused_with_400_and_nothing_stored(server_net: Network, app, body):
    r = put(server_net, "a@ab", "a@ab", body)
    assert r.status_code == 400, (r.status_code, r.json)
    assert set(r.json) == {"msg", "errors", "code"}
    assert stored(app) == []


def test_not_json_and_too_large_bodies(server_net: Network, app):
    nid = server_net.nodes["a@ab"]["id"]
    headers = {**server_net.nodes["a@ab"]["headers"], "Content-Type": "application/json"}
    r = server_net.client.put(f"/api/node/{nid}/columns", data=b"{not json", headers=headers)
    assert r.status_code == 400
    big = b'{"databases": [' + b" " * (2 * 2**20) + b"]}"  # over max_body_mb (1)
    r = server_net.client.put(f"/api/node/{nid}/columns", data=big, headers=headers)
    assert r.status_code == 413, r.json
    assert stored(app) == []
