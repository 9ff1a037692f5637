"""Tokens: user login, node login, refresh, and container tokens for a node's running algorithm."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from vantage6nb.common.errors import AuthenticationError, Conflict, PermissionDenied

from ..bootstrap import verify_password
from ..db import session
from ..lifecycle import is_open
from ..models import Node, Run, Task, User
from ..permissions import Identity, is_node_run, require_type
from ..request_parsing import get_or_404, json_body, validated
from ..serializers import node_json, user_json
from ..state import state
from ..tokens import hash_api_key

__all__ = ["bp", "issue_container_token", "node_claims", "user_claims"]

bp = Blueprint("auth", __name__)


def user_claims(user: User) -> dict[str, Any]:
    """Claims of a user's tokens."""
    return {
        "sub": user.id,
        "type": "user",
        "org": user.organization_id,
        "admin": user.is_admin,
        "name": user.username,
    }


def node_claims(node: Node) -> dict[str, Any]:
    """Claims of a node's tokens."""
    return {
        "sub": node.id,
        "type": "node",
        "org": node.organization_id,
        "node_id": node.id,
        "collaboration_id": node.collaboration_id,
        "name": node.name,
    }


def _pair(claims: dict[str, Any]) -> dict[str, str]:
    tokens = state().tokens
    return {
        "access_token": tokens.issue(claims, kind="access"),
        "refresh_token": tokens.issue(claims, kind="refresh"),
    }


@bp.post("/token/user")
def login_user() -> Any:
    body = validated(
        json_body(), {"username": str, "password": str}, strings={"username": 255, "password": 1024}
    )
    user = session().scalar(select(User).where(User.username == body["username"]))
    if user is None or not verify_password(user.password_hash, body["password"]):
        raise AuthenticationError("Wrong username or password.")
    return {**_pair(user_claims(user)), "user": user_json(user)}


@bp.post("/token/node")
def login_node() -> Any:
    body = validated(json_body(), {"api_key": str}, strings={"api_key": 1024})
    node = session().scalar(select(Node).where(Node.api_key_hash == hash_api_key(body["api_key"])))
    if node is None:
        raise AuthenticationError(
            "Unknown API key: check api_key in the node configuration (it is shown once, when the node is created)."
        )
    return {**_pair(node_claims(node)), "node": node_json(node)}


@bp.post("/token/refresh")
def refresh() -> Any:
    body = validated(json_body(), {"refresh_token": str}, strings={"refresh_token": 4096})
    claims = state().tokens.verify(body["refresh_token"], kind="refresh")
    s = session()
    sub = claims.get("sub")
    if claims.get("type") == "user" and isinstance(sub, int):
        user = s.get(User, sub)
        if user is None:
            raise AuthenticationError("This account no longer exists.")
        fresh = user_claims(user)
    elif claims.get("type") == "node" and isinstance(sub, int):
        node = s.get(Node, sub)
        if node is None:
            raise AuthenticationError("This node no longer exists on the server.")
        fresh = node_claims(node)
    else:
        raise AuthenticationError("This refresh token cannot be refreshed: log in again.")
    return {"access_token": state().tokens.issue(fresh, kind="access")}


@bp.post("/token/container")
def container_token() -> Any:
    ident = require_type("node")
    body = validated(json_body(), {"run_id": int}, ids=("run_id",))
    s = session()
    run = get_or_404(s, Run, body["run_id"])
    task = s.get(Task, run.task_id)
    assert task is not None
    if not is_node_run(ident, run, task):
        raise PermissionDenied(f"Run {run.id} is not a run of this node.")
    return {"container_token": issue_container_token(ident, run, task)}


def issue_container_token(ident: Identity, run: Run, task: Task) -> str:
    """A container token for ``run`` of this node (``ident``); Conflict when the run is final."""
    if not is_open(run.status):
        raise Conflict(
            f"Run {run.id} is already {run.status}: no container token for a finished run."
        )
    claims = {
        "sub": ident.id,
        "type": "container",
        "org": ident.org_id,
        "run_id": run.id,
        "task_id": task.id,
        "node_id": ident.id,
        "collaboration_id": task.collaboration_id,
        "job_id": task.job_id,
        "image": task.image,
    }
    tokens = state().tokens
    return tokens.issue(claims, kind="access", lifetime=tokens.lifetimes["container"])
