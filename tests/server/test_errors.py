"""Every error is the JSON shape; bad input on every endpoint yields a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests.server.conftest import Network

BAD_BODIES = [
    None,
    b"",
    b"{not json",
    b"[]",
    b"123",
    b'"string"',
    b"null",
    json.dumps(
        {"name": 5, "organization_ids": "x", "id": True, "run_id": -1, "username": None}
    ).encode(),
    json.dumps(
        {
            "organizations": [{"id": 2**70, "input": 3}],
            "method": "m",
            "collaboration_id": 2**64,
            "image": "i",
        }
    ).encode(),
    json.dumps(
        {
            "organizations": ["x"],
            "method": "\x00",
            "collaboration_id": 1,
            "image": "",
            "databases": [1],
        }
    ).encode(),
    json.dumps(
        {
            "status": "weird",
            "started_at": 5,
            "result": ["x"],
            "public_key": "??",
            "replace_key": "yes",
        }
    ).encode(),
    json.dumps(
        {
            "name": "x" * 5000,
            "password": "",
            "api_key": "",
            "refresh_token": "",
            "organization_id": 0,
        }
    ).encode(),
]
IDS = ["1", "0", "99999999999999999999999", "3"]


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.rule, method


def _check(r):
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        body = r.get_json()
        assert set(body) == {"msg", "errors", "code"} and body["msg"]


def test_fuzz_every_endpoint(app, server_net: Network):
    c = server_net.client
    who = [server_net.root, server_net.users["alice"], server_net.nodes["a@ab"]["headers"], {}]
    server_net.task("alice", "ab", ["a", "b"])
    count = 0
    for rule, method in _routes(app):
        for ident in IDS if "<" in rule else ["-"]:
            path = rule
            for conv in (
                "<int:org_id>",
                "<int:collab_id>",
                "<int:user_id>",
                "<int:node_id>",
                "<int:task_id>",
                "<int:run_id>",
            ):
                path = path.replace(conv, ident)
            for headers in who:
                for body in BAD_BODIES:
                    r = c.open(
                        path,
                        method=method,
                        data=body,
                        headers={**headers, "Content-Type": "application/json"},
                        query_string={"page": "x", "status": "zzz", "task_id": "-5"}
                        if body == b"[]"
                        else None,
                    )
                    _check(r)
                    count += 1
    assert count > 1000


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/nothing-here", 404, "not_found"),
        ("get", "/nothing", 404, "not_found"),
        ("put", "/api/organization", 405, "method_not_allowed"),
        ("get", "/api/organization/99999", 404, "not_found"),
    ],
)
def test_http_errors_are_json(server_net: Network, method, path, status, code):
    r = getattr(server_net.client, method)(path, headers=server_net.root)
    assert r.status_code == status and r.json["code"] == code


DEEP = b'{"a":' * 5000 + b"1" + b"}" * 5000  # deeper than the JSON decoder's recursion limit


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/token/user"),
        ("POST", "/api/organization"),
        ("POST", "/api/task"),
        ("PATCH", "/api/user/1"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(
    client: FlaskClient, root: dict[str, str], method: str, path: str
) -> None:
    r = client.open(
        path, method=method, data=DEEP, headers={**root, "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.json
    assert r.json["code"] == "bad_request"
    assert "nested too deeply" in r.json["msg"]


def test_malformed_json_400(server_net: Network):
    r = server_net.client.post(
        "/api/organization",
        data="{",
        headers={**server_net.root, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json["code"] == "bad_request"


def test_wrong_types_list_every_field(server_net: Network):
    r = server_net.client.post(
        "/api/user",
        json={"username": 1, "password": None, "organization_id": "1"},
        headers=server_net.root,
    )
    assert r.status_code == 400 and r.json["code"] == "validation_error"
    assert set(r.json["errors"]) == {"username", "password", "organization_id"}


def test_body_too_large_413(server_net: Network):
    big = json.dumps({"name": "x" * (2 * 1024 * 1024)})
    r = server_net.client.post(
        "/api/organization",
        data=big,
        headers={**server_net.root, "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json["code"] == "payload_too_large"
