"""The OpenAPI 3.1 document of the REST API, generated from the app's routes and its ``validated`` calls."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app
from werkzeug.routing import Rule
from werkzeug.routing.converters import (
    BaseConverter,
    FloatConverter,
    IntegerConverter,
    UUIDConverter,
)

from vantage6nb.common.columns import (
    COLUMN_TYPES,
    MAX_COLUMNS,
    MAX_DATABASES,
    MAX_LABEL,
    MAX_NAME,
)
from vantage6nb.common.schemas import RunStatus
from vantage6nb.common.version import __version__

from .request_parsing import DEFAULT_PER_PAGE, MAX_ID, MAX_PER_PAGE

__all__ = ["ENDPOINTS", "Endpoint", "bp", "openapi_document"]

bp = Blueprint("openapi", __name__)

_METHODS = ("get", "put", "post", "patch", "delete")
_ERROR_REF = {"$ref": "#/components/responses/Error"}
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_TIME = {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Endpoint:
    """What the code cannot say about one view: a summary, and refinements of what it can.

    ``fields`` are merged into the property schemas read from the view's ``validated(...)`` call
    (item types of lists, enums, formats); ``request_body`` replaces the derived body (for bodies
    that are not JSON); ``response`` is the success response's content when it is not JSON;
    ``required_query`` the query parameters the view refuses to go without.
    """

    summary: str
    public: bool = False
    required_query: tuple[str, ...] = ()
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    request_body: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


_OCTET = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_COLUMN_REPORT = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["databases"],
                "additionalProperties": False,
                "properties": {
                    "databases": {
                        "type": "array",
                        "maxItems": MAX_DATABASES,
                        "items": {
                            "type": "object",
                            "required": ["label", "columns"],
                            "additionalProperties": False,
                            "properties": {
                                "label": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL},
                                "columns": {
                                    "type": "array",
                                    "maxItems": MAX_COLUMNS,
                                    "items": {
                                        "type": "object",
                                        "required": ["name", "type"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "name": {
                                                "type": "string",
                                                "minLength": 1,
                                                "maxLength": MAX_NAME,
                                            },
                                            "type": {"enum": list(COLUMN_TYPES)},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        }
    },
}

# Keyed by Flask endpoint (blueprint.function). A route missing here still gets an operation
# (summary from its function name); tests/server/test_openapi.py holds this table to the routes.
ENDPOINTS: dict[str, Endpoint] = {
    "audit.list_audit_events": Endpoint("The server's audit log, oldest first (root)"),
    "auth.login_user": Endpoint("Log in as a user: access and refresh token", public=True),
    "auth.login_node": Endpoint("Log in as a node with its API key", public=True),
    "auth.refresh": Endpoint("A new access token (and rotated refresh token)", public=True),
    "auth.revoke_token": Endpoint("Log out: end this session, or every session with all"),
    "auth.totp_start": Endpoint("Start two-factor enrolment: a secret and an otpauth URI"),
    "auth.totp_confirm": Endpoint("Confirm two-factor enrolment with a current code"),
    "auth.totp_off": Endpoint("Turn two-factor login off (send the current code as totp)"),
    "auth.require_totp": Endpoint("Require two-factor login for an organization's users"),
    "auth.container_token": Endpoint("A container token for an open run of this node"),
    "collaborations.list_collaborations": Endpoint("List collaborations"),
    "collaborations.create_collaboration": Endpoint(
        "Create a collaboration", fields={"organization_ids": {"items": _ID}}
    ),
    "collaborations.get_collaboration": Endpoint("Read a collaboration"),
    "collaborations.update_collaboration": Endpoint(
        "Update a collaboration (encrypted only goes from false to true)",
        fields={"organization_ids": {"items": _ID}},
    ),
    "collaborations.delete_collaboration": Endpoint("Delete a collaboration"),
    "collaborations.add_member": Endpoint("Add an organization to a collaboration"),
    "collaborations.remove_member": Endpoint("Remove an organization from a collaboration"),
    "health.health": Endpoint("Liveness and database check", public=True),
    "health.version": Endpoint("The server's version", public=True),
    "nodes.list_nodes": Endpoint("List nodes"),
    "nodes.create_node": Endpoint("Register a node: its API key is in this answer only"),
    "nodes.get_node": Endpoint("Read a node"),
    "nodes.update_node": Endpoint("Rename a node"),
    "nodes.delete_node": Endpoint("Delete a node"),
    "nodes.put_columns": Endpoint(
        "Report this node's column names and types per database (node; never values)",
        request_body=_COLUMN_REPORT,
    ),
    "nodes.delete_columns": Endpoint("Forget this node's column report (node)"),
    "nodes.list_columns": Endpoint(
        "Column names and types reported by a collaboration's nodes",
        required_query=("collaboration_id",),
    ),
    "openapi.openapi_json": Endpoint("This OpenAPI document", public=True),
    "organizations.list_organizations": Endpoint("List organizations"),
    "organizations.create_organization": Endpoint(
        "Create an organization", fields={"public_key": {"contentEncoding": "base64"}}
    ),
    "organizations.get_organization": Endpoint("Read an organization"),
    "organizations.update_organization": Endpoint(
        "Update an organization (setting or replacing its public key is checked and logged)",
        fields={"public_key": {"contentEncoding": "base64"}},
    ),
    "organizations.delete_organization": Endpoint("Delete an organization"),
    "roles.list_roles": Endpoint("List the roles the caller may see"),
    "roles.create_role": Endpoint(
        "Create a role from rules the caller holds", fields={"rules": {"items": _ID}}
    ),
    "roles.get_role": Endpoint("Read a role with its rules"),
    "roles.update_role": Endpoint("Update a role", fields={"rules": {"items": _ID}}),
    "roles.delete_role": Endpoint("Delete a role"),
    "roles.list_rules": Endpoint("List rules (resource, operation, scope)"),
    "run_results.put_result": Endpoint(
        "Upload a run's result as bytes (node)",
        request_body={"required": True, "content": _OCTET},
    ),
    "run_results.get_result": Endpoint("Download a run's result as bytes", response=_OCTET),
    "run_results.get_input": Endpoint(
        "Download a run's input as bytes (the node of the run's organization)", response=_OCTET
    ),
    "runs.list_runs": Endpoint("List runs"),
    "runs.get_run": Endpoint("Read a run"),
    "runs.update_run": Endpoint(
        "Update a run's status, log or result (node)",
        fields={
            "status": {"enum": [s.value for s in RunStatus]},
            "started_at": {"format": "date-time"},
            "finished_at": {"format": "date-time"},
        },
    ),
    "runs.list_results": Endpoint("The results of a task's runs", required_query=("task_id",)),
    "tasks.list_tasks": Endpoint("List tasks"),
    "tasks.create_task": Endpoint(
        "Create a task (a container creates subtasks)",
        fields={
            "organizations": {
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": _ID,
                        "input": {"type": "string"},
                        "input_upload": {"type": "string", "maxLength": 64},
                    },
                }
            },
            "databases": {
                "items": {
                    "type": "object",
                    "required": ["label"],
                    "properties": {"label": {"type": "string"}},
                }
            },
        },
    ),
    "tasks.upload_input": Endpoint(
        "Upload one organization's input of a task to create, as bytes (sealed when encrypted)",
        required_query=("collaboration_id", "organization_id"),
        request_body={"required": True, "content": _OCTET},
    ),
    "tasks.get_task": Endpoint("Read a task with its runs"),
    "tasks.kill_task": Endpoint("Kill the open runs of a task and its subtasks"),
    "tasks.delete_task": Endpoint("Delete a task, its runs and subtasks"),
    "users.list_users": Endpoint("List users"),
    "users.create_user": Endpoint("Create a user"),
    "users.me": Endpoint("The logged-in user"),
    "users.get_user": Endpoint("Read a user"),
    "users.update_user": Endpoint(
        "Update a user (a password change needs current_password and ends their sessions)"
    ),
    "users.revoke_user": Endpoint("End every session of a user"),
    "users.delete_user": Endpoint("Delete a user"),
    "users.add_user_role": Endpoint("Give a user a role"),
    "users.remove_user_role": Endpoint("Take a role from a user"),
    "users.add_user_rule": Endpoint("Give a user an extra rule"),
    "users.remove_user_rule": Endpoint("Take an extra rule from a user"),
}


@bp.get("/openapi.json")
def openapi_json() -> Any:
    """The document, built once per app (the routes do not change after ``create_app``)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    doc = app.extensions.get("v6nb_openapi")
    if doc is None:
        doc = app.extensions["v6nb_openapi"] = openapi_document(app)
    return doc


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every ``/api`` route of ``app``.

    Examples
    --------
    >>> doc = openapi_document(create_app({"data_dir": "/tmp/v6nb-doc"}))  # doctest: +SKIP
    >>> doc["paths"]["/api/task/{task_id}"]["get"]["summary"]  # doctest: +SKIP
    'Read a task with its runs'
    """
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        view = app.view_functions[rule.endpoint]
        path = _path(rule)
        for method in sorted(m.lower() for m in rule.methods or ()):
            if method in _METHODS:
                paths.setdefault(path, {})[method] = _operation(rule, view)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vantage6nb server",
            "version": __version__,
            "description": "The REST API of docs/api.md; every error is the Error schema.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An access token from POST /api/token/user or /api/token/node.",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["msg", "errors", "code"],
                    "properties": {
                        "msg": {"type": "string", "description": "what went wrong, what to do"},
                        "errors": {
                            "type": "object",
                            "description": "field -> why",
                            "additionalProperties": True,
                        },
                        "code": {
                            "type": "string",
                            "description": "stable; the class in vantage6nb/common/errors.py",
                        },
                    },
                }
            },
            "responses": {
                "Error": {
                    "description": "An error: {msg, errors, code}",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
        },
    }


# -- paths and parameters from the rule ------------------------------------------------------------

_VARIABLE = re.compile(r"<(?:[a-zA-Z_][a-zA-Z0-9_]*(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


def _path(rule: Rule) -> str:
    return _VARIABLE.sub(r"{\1}", rule.rule)


def _converter_schema(conv: BaseConverter) -> dict[str, Any]:
    if isinstance(conv, IntegerConverter | FloatConverter):
        schema: dict[str, Any] = {
            "type": "integer" if isinstance(conv, IntegerConverter) else "number"
        }
        low = conv.min if conv.min is not None else (None if conv.signed else 0)
        if low is not None:
            schema["minimum"] = low
        if conv.max is not None:
            schema["maximum"] = conv.max
        return schema
    if isinstance(conv, UUIDConverter):
        return {"type": "string", "format": "uuid"}
    return (
        {"type": "string", "pattern": r"^[^/]+$"} if conv.regex == "[^/]+" else {"type": "string"}
    )


def _operation(rule: Rule, view: Callable[..., Any]) -> dict[str, Any]:
    decl = ENDPOINTS.get(rule.endpoint) or Endpoint(
        rule.endpoint.rpartition(".")[2].replace("_", " ").capitalize()
    )
    facts = _read_view(view)
    params = [
        {"name": name, "in": "path", "required": True, "schema": _converter_schema(conv)}
        for name, conv in rule._converters.items()
    ]
    params += [
        {
            "name": n,
            "in": "query",
            "schema": s,
            **({"required": True} if n in decl.required_query else {}),
        }
        for n, s in facts.query.items()
    ]
    op: dict[str, Any] = {
        "operationId": rule.endpoint,
        "summary": decl.summary,
        "tags": [rule.endpoint.partition(".")[0]],
    }
    if params:
        op["parameters"] = params
    body = decl.request_body or _json_body(facts, decl)
    if body:
        op["requestBody"] = body
    success: dict[str, Any] = {
        "description": "OK",
        "content": decl.response or {"application/json": {"schema": {"type": "object"}}},
    }
    op["responses"] = {str(facts.status): success, "4XX": _ERROR_REF, "5XX": _ERROR_REF}
    if decl.public:
        op["security"] = []
    return op


def _json_body(facts: _ViewFacts, decl: Endpoint) -> dict[str, Any] | None:
    if facts.body is None:
        return None
    required, optional, ids, strings = facts.body
    props: dict[str, Any] = {}
    for name, typ in {**required, **optional}.items():
        schema: dict[str, Any] = dict(_ID) if name in ids else _type_schema(typ)
        if name in strings:
            schema["maxLength"] = strings[name]
        schema.update(decl.fields.get(name, {}))
        if name in optional:  # validated() treats an optional null as absent
            schema["type"] = [*_as_list(schema.get("type")), "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        props[name] = schema
    body: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        body["required"] = list(required)
    return {"required": facts.body_required, "content": {"application/json": {"schema": body}}}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
_JSON_TYPES.update({list: "array", dict: "object"})


def _type_schema(typ: Any) -> dict[str, Any]:
    types = typ if isinstance(typ, tuple) else (typ,)
    names = [_JSON_TYPES[t] for t in types if t in _JSON_TYPES]
    if not names:
        return {}
    return {"type": names[0] if len(names) == 1 else names}


# -- what the view's source says -------------------------------------------------------------------


@dataclass
class _ViewFacts:
    # (required, optional, ids, strings) as passed to validated(), or None without a JSON body
    body: tuple[dict[str, Any], dict[str, Any], tuple[str, ...], dict[str, int]] | None = None
    body_required: bool = True
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int = 200


def _read_view(view: Callable[..., Any]) -> _ViewFacts:
    """Body fields, query parameters and success status, read from the view's source.

    The ``validated(json_body(), required, optional, ids=..., strings=...)`` call holds the body's
    fields and types; ``query_id``/``query_str``/``request.args.get`` and ``paginate`` calls its
    query parameters, in the view and in the module's helpers it calls; ``return ..., 201`` its
    status.
    """
    facts = _ViewFacts()
    module = inspect.getmodule(view)
    env = {**vars(builtins), **view.__globals__}
    seen: set[str] = set()

    def visit(func: Callable[..., Any], top: bool) -> None:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError, SyntaxError):
            return
        loops = _loop_strings(tree)
        for node in ast.walk(tree):
            if top and isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
                code = node.value.elts[1:2]
                value = code[0].value if code and isinstance(code[0], ast.Constant) else None
                if isinstance(value, int) and 200 <= value < 300:
                    facts.status = value
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name == "validated" and facts.body is None:
                _read_validated(node, env, facts)
            elif name in ("query_id", "query_str") and node.args:
                first = node.args[0]
                names = (
                    [first.value]
                    if isinstance(first, ast.Constant)
                    else loops.get(getattr(first, "id", ""), [])
                )
                limit = _literal(node.args[1], env) if len(node.args) > 1 else 255
                for q in names:
                    facts.query[q] = (
                        dict(_ID) if name == "query_id" else {"type": "string", "maxLength": limit}
                    )
            elif name == "get" and _is_request_args(node.func) and node.args:
                if isinstance(node.args[0], ast.Constant):
                    facts.query.setdefault(node.args[0].value, {"type": "string"})
            elif name in ("paginate", "paginate_rows"):
                facts.query["page"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
                facts.query["per_page"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PER_PAGE,
                    "default": DEFAULT_PER_PAGE,
                }
            elif name and name not in seen:
                helper = view.__globals__.get(name)
                if inspect.isfunction(helper) and inspect.getmodule(helper) is module:
                    seen.add(name)
                    visit(helper, False)

    visit(view, True)
    return facts


def _read_validated(node: ast.Call, env: dict[str, Any], facts: _ViewFacts) -> None:
    try:
        args = [_literal(a, env) for a in node.args[1:]]
        kw = {k.arg: _literal(k.value, env) for k in node.keywords if k.arg}
    except ValueError:
        return  # not literal: the declaration table has to describe this body
    required = args[0] if args else kw.get("required", {})
    optional = args[1] if len(args) > 1 else kw.get("optional") or {}
    facts.body = (required, optional, tuple(kw.get("ids", ())), dict(kw.get("strings") or {}))
    source = node.args[0] if node.args else None
    facts.body_required = isinstance(source, ast.Call) and _call_name(source) == "json_body"


def _literal(node: ast.AST, env: dict[str, Any]) -> Any:
    """A literal expression whose names are module constants or builtin types."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {
            _literal(k, env): _literal(v, env) for k, v in zip(node.keys, node.values, strict=True)
        }  # type: ignore[arg-type]
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_literal(e, env) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow | ast.Mult | ast.Add):
        left, right = _literal(node.left, env), _literal(node.right, env)
        if isinstance(node.op, ast.Pow):
            return left**right
        return left * right if isinstance(node.op, ast.Mult) else left + right
    raise ValueError(f"not a literal: {ast.dump(node)}")


def _loop_strings(tree: ast.AST) -> dict[str, list[str]]:
    """``for name[, x] in (("a", ...), ...)``: the strings each loop name takes."""
    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple | ast.List)):
            continue
        target = node.target.elts[0] if isinstance(node.target, ast.Tuple) else node.target
        if not isinstance(target, ast.Name):
            continue
        for elt in node.iter.elts:
            first = elt.elts[0] if isinstance(elt, ast.Tuple) and elt.elts else elt
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.setdefault(target.id, []).append(first.value)
    return out


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _is_request_args(func: ast.AST) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Attribute)
        and func.value.attr == "args"
        and isinstance(func.value.value, ast.Name)
        and func.value.value.id == "request"
    )
