"""The OpenAPI document at /api/openapi.json: valid 3.1, every route in it, every endpoint in docs/api.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from server_app.openapi import ENDPOINTS

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")

# Endpoints that docs/api.md does not mention yet (another change documents them). The test below
# fails once one of them is documented, so this list only shrinks.
UNDOCUMENTED_YET: set[str] = set()


@pytest.fixture
def doc(client: FlaskClient) -> dict[str, Any]:
    r = client.get("/api/openapi.json")  # no token: the description is public
    assert r.status_code == 200, r.json
    assert r.mimetype == "application/json"
    return r.json


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }


def _routes(app: Flask) -> set[tuple[str, str, str]]:
    return {
        (method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), rule.endpoint)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods or ()
        if method in METHODS
    }


def _shape(path: str) -> str:
    """``/api/user/<id>`` and ``/api/user/{user_id}`` alike: ``/api/user/{}``."""
    return re.sub(r"<[^<>]*>|\{[^{}]*\}", "{}", path)


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises with the offending part


def test_every_route_is_in_the_document(app: Flask, doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    routes = _routes(app)
    assert {(m, p) for m, p, _ in routes} == set(ops)
    for method, path, endpoint in routes:
        op = ops[(method, path)]
        assert op["operationId"] == endpoint
        assert op["summary"]
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert names == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_every_endpoint_is_declared(app: Flask) -> None:
    """A summary (and whether it is public) per endpoint: a new route needs a line in ENDPOINTS."""
    endpoints = {e for _, _, e in _routes(app)}
    assert sorted(endpoints - set(ENDPOINTS)) == [], "add these to server_app/openapi.py ENDPOINTS"
    assert sorted(set(ENDPOINTS) - endpoints) == [], "ENDPOINTS names routes that do not exist"


def test_path_parameters_are_typed_from_converters(doc: dict[str, Any]) -> None:
    param = doc["paths"]["/api/task/{task_id}"]["get"]["parameters"][0]
    assert param == {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }


def test_bodies_come_from_the_validated_calls(app: Flask, doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/node"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True
    assert schema["required"] == ["organization_id", "collaboration_id"]
    assert schema["properties"]["name"] == {"type": ["string", "null"], "maxLength": 255}
    assert schema["properties"]["organization_id"]["minimum"] == 1
    revoke = doc["paths"]["/api/token/revoke"]["post"]["requestBody"]
    assert revoke["required"] is False  # the body is optional there
    # every view that validates a body describes one
    ops = _operations(doc)
    for method, path, endpoint in _routes(app):
        if "validated(" in inspect.getsource(app.view_functions[endpoint]):
            assert "requestBody" in ops[(method, path)], (method, path)


def test_errors_and_security(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["msg", "errors", "code"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    for (method, path), op in _operations(doc).items():
        assert op["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}, (method, path)


def test_public_endpoints_are_the_ones_without_a_token(
    client: FlaskClient, doc: dict[str, Any]
) -> None:
    """Each operation marked ``security: []`` answers without a token; every other one says 401."""
    for (method, path), op in _operations(doc).items():
        url = re.sub(r"\{\w+\}", "1", path)
        params = op.get("parameters", [])
        query = {p["name"]: 1 for p in params if p["in"] == "query" and p.get("required")}
        r = client.open(url, method=method, json={}, query_string=query)
        public = op.get("security") == []
        if public:
            assert r.status_code != 401, (method, path, r.json)
        else:
            assert r.status_code == 401, (method, path, r.status_code, r.json)
            assert set(r.json) == {"msg", "errors", "code"}


def _documented() -> set[str]:
    text = API_MD.read_text(encoding="utf-8")
    found: set[str] = set()
    # table rows: | GET/POST | /api/organization | ...
    for methods, path in re.findall(r"^\|\s*([A-Z/]+)\s*\|\s*(/api/[^\s|?]+)", text, re.M):
        found |= {f"{m} {_shape(path)}" for m in methods.split("/") if m in METHODS}
    # prose: `PATCH /api/run/<id>` (a query string or trailing punctuation is not part of it)
    for method, path in re.findall(rf"\b({'|'.join(METHODS)}) (/api/[^\s`?),;]+)", text):
        found.add(f"{method} {_shape(path.rstrip('.:'))}")
    return found


def test_every_endpoint_is_in_api_md(doc: dict[str, Any]) -> None:
    documented = _documented()
    endpoints = {f"{m} {_shape(p)}" for m, p in _operations(doc)}
    missing = endpoints - documented
    assert sorted(missing - UNDOCUMENTED_YET) == [], "describe these in docs/api.md"
    assert sorted(UNDOCUMENTED_YET - missing) == [], "documented now: drop from UNDOCUMENTED_YET"


def test_api_md_names_only_real_endpoints(doc: dict[str, Any]) -> None:
    endpoints = {f"{m} {_shape(p)}" for m, p in _operations(doc)}
    assert sorted(_documented() - endpoints) == []
