"""The permission matrix: every endpoint x method x identity x target scope, expected from the rule table.

Identities: a user of organization A holding one default role (root, collaboration admin,
organization admin, researcher, viewer), A's node, and an algorithm container of a job of A.
Targets, seen from A (organizations A and B share collaboration ``ab``; C and D share ``cd``):
``own`` (the caller's own account, task, job or node record), ``organization`` (A's), ``collaboration``
(B's, in ``ab``) and ``global`` (C's, in ``cd``). The expected answer of each cell comes from
``server_app.rules`` (the roles' rules, a rule at a scope covering every narrower one) and the few
fixed checks documented in docs/security.md; every cell is then asked of the real app. The
expectations are also pinned in ``permission_matrix.txt`` beside this file, so changing a rule
without that table fails too: regenerate it with ``V6NB_UPDATE_MATRIX=1`` and review the diff.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select
from werkzeug.security import generate_password_hash

from server_app import create_app
from server_app.models import AccessRule, Role, Run, Task, User, user_rule
from server_app.rules import (
    CONTAINER_RULES,
    DEFAULT_ROLES,
    EVERY_USER,
    NODE_RULES,
    SCOPES,
    Rule,
    covers,
    set_roles,
)
from tests.support import bearer

ROLES = tuple(DEFAULT_ROLES)
ACTORS = (*ROLES, "node", "container")
SNAPSHOT = Path(__file__).with_name("permission_matrix.txt")
ROOT_PASSWORD = "root-password-for-the-matrix"
PASSWORD = "matrix-password-1"
_HASH = generate_password_hash(PASSWORD, method="scrypt:16384:8:1")
DENIED = 0  # expected "status" of a refused cell: 403 or 404, and nothing changed


def rules_of(actor: str) -> frozenset[Rule]:
    if actor == "node":
        return NODE_RULES
    if actor == "container":
        return CONTAINER_RULES
    return DEFAULT_ROLES[actor][1] | EVERY_USER


def holds(actor: str, resource: str, operation: str, scope: str) -> bool:
    """Whether ``actor`` holds ``resource:operation`` at ``scope`` or broader (the rule table)."""
    held = rules_of(actor)
    scope = {"-": "own", "default": "own"}.get(scope, scope)  # no target: any rule will do
    return any(Rule(resource, operation, s) in held and covers(s, scope) for s in SCOPES)


def holds_all(actor: str, rules: frozenset[Rule]) -> bool:
    return all(holds(actor, r.resource, r.operation, r.scope) for r in rules)


def is_user(actor: str) -> bool:
    return actor in ROLES


# the world -------------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    json: Any = None
    headers: dict[str, str] | None = None  # None: the actor's own token
    data: bytes | None = None
    content_type: str | None = None
    listed: int | None = None  # list endpoints: the target's id, which must be listed iff allowed


@dataclass
class World:
    app: Flask
    client: FlaskClient
    root: dict[str, str]
    orgs: dict[str, int] = field(default_factory=dict)
    collabs: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "a" -> id, api_key, headers
    users: dict[str, int] = field(default_factory=dict)  # actor or maker -> user id
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)  # actor -> headers
    container_job: int = 0
    n: int = 0

    # plumbing
    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}-{uuid.uuid4().hex[:6]}"

    def ok(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        r = self.client.open(path, method=method, headers=headers or self.root, **kw)
        assert 200 <= r.status_code < 300, (method, path, r.status_code, r.get_json())
        return r.get_json()

    def db(self) -> Any:
        return self.app.extensions["v6nb_db"].new_session()

    def login(self, username: str) -> dict[str, str]:
        body = self.ok("POST", "/api/token/user", json={"username": username, "password": PASSWORD})
        return bearer(body["access_token"])

    # objects (made by root or directly in the database: targets are data, not the subject)
    def org(self, collab: str | None = None) -> int:
        oid = self.ok("POST", "/api/organization", json={"name": self.name("org")})["id"]
        if collab is not None:
            self.ok(
                "POST", f"/api/collaboration/{self.collabs[collab]}/organization", json={"id": oid}
            )
        return oid

    def collab(self, *members: str) -> int:
        body = {"name": self.name("collab"), "organization_ids": [self.orgs[m] for m in members]}
        return self.ok("POST", "/api/collaboration", json=body)["id"]

    def node(self, org: str, collab_id: int) -> dict[str, Any]:
        body = {"organization_id": self.orgs[org], "collaboration_id": collab_id}
        return self.ok("POST", "/api/node", json=body)

    def user(self, org: str, roles: tuple[str, ...] = (), extra: tuple[Rule, ...] = ()) -> int:
        with self.db() as s:
            name = self.name("user")
            user = User(username=name, password_hash=_HASH, organization_id=self.orgs[org])
            s.add(user)
            s.flush()
            ids = [s.scalar(select(Role.id).where(Role.name == r)) for r in roles]
            set_roles(s, user, [i for i in ids if i is not None])
            for rule in extra:
                s.execute(insert(user_rule).values(user_id=user.id, rule_id=rule_id(s, rule)))
            s.commit()
            self.users[name] = user.id
            return user.id

    def clone(self, actor: str, *more_roles: str) -> tuple[int, dict[str, str]]:
        """A fresh user of A with the actor's role (for cases that change the caller itself)."""
        uid = self.user("a", (actor, *more_roles))
        with self.db() as s:
            name = s.get(User, uid).username
        return uid, self.login(name)

    def task(self, maker: str, collab: str, orgs: str, *, owner: int | None = None) -> int:
        body = {
            "collaboration_id": self.collabs[collab],
            "organizations": [{"id": self.orgs[o], "input": "{}"} for o in orgs],
            "image": "img:1",
            "method": "m",
        }
        tid = self.ok("POST", "/api/task", self.tokens[maker], json=body)["id"]
        if owner is not None:
            with self.db() as s:
                s.get(Task, tid).init_user_id = owner
                s.commit()
        return tid

    def subtask(self) -> int:
        """A task of the container's job (what its own subtasks are)."""
        tid = self.task("maker_a", "ab", "ab")
        with self.db() as s:
            task = s.get(Task, tid)
            task.job_id = task.parent_id = self.container_job
            s.commit()
        return tid

    def run_of(self, task_id: int, org: str) -> int:
        with self.db() as s:
            rid = s.scalar(
                select(Run.id).where(Run.task_id == task_id, Run.organization_id == self.orgs[org])
            )
        assert rid is not None
        return rid

    def finish(self, task_id: int) -> None:
        with self.db() as s:
            for run in s.scalars(select(Run).where(Run.task_id == task_id)):
                run.status, run.result = "completed", '{"answer": 42}'
            s.commit()

    def role(self, org: str) -> int:
        with self.db() as s:
            role = Role(name=self.name("role"), organization_id=self.orgs[org])
            s.add(role)
            s.commit()
            return role.id

    def default_role(self, name: str) -> int:
        with self.db() as s:
            rid = s.scalar(select(Role.id).where(Role.name == name))
        assert rid is not None
        return rid


def rule_id(s: Any, rule: Rule) -> int:
    rid = s.scalar(
        select(AccessRule.id).where(
            AccessRule.resource == rule.resource,
            AccessRule.operation == rule.operation,
            AccessRule.scope == rule.scope,
        )
    )
    assert rid is not None
    return int(rid)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    data = tmp_path_factory.mktemp("matrix")
    app = create_app({"data_dir": str(data), "root_password": ROOT_PASSWORD})
    client = app.test_client()
    r = client.post("/api/token/user", json={"username": "root", "password": ROOT_PASSWORD})
    w = World(app, client, bearer(r.json["access_token"]))
    for name in "abcd":
        w.orgs[name] = w.ok("POST", "/api/organization", json={"name": f"org-{name}"})["id"]
    w.collabs["ab"], w.collabs["cd"] = w.collab("a", "b"), w.collab("c", "d")
    for org, collab in (("a", "ab"), ("b", "ab"), ("c", "cd")):
        node = w.node(org, w.collabs[collab])
        t = w.ok("POST", "/api/token/node", json={"api_key": node["api_key"]})
        w.nodes[org] = {**node, "headers": bearer(t["access_token"])}
    for actor in ROLES:
        uid = w.user("a", (actor,))
        with w.db() as s:
            w.users[actor] = uid
            w.tokens[actor] = w.login(s.get(User, uid).username)
    for org in "abc":
        uid = w.user(org, ("researcher",))
        with w.db() as s:
            w.users[f"maker_{org}"] = uid
            w.tokens[f"maker_{org}"] = w.login(s.get(User, uid).username)
    w.tokens["node"] = w.nodes["a"]["headers"]
    job = w.task("maker_a", "ab", "a")
    w.container_job = job
    token = w.ok(
        "POST",
        "/api/token/container",
        w.tokens["node"],
        json={"run_id": w.run_of(job, "a")},
    )["container_token"]
    w.tokens["container"] = bearer(token)
    return w


# targets, by scope as seen from organization A -------------------------------------------------


def task_for(w: World, actor: str, scope: str) -> int:
    if scope == "own":
        if actor == "container":
            return w.subtask()
        return w.task("maker_a", "ab", "ab", owner=w.users[actor])
    maker, collab, orgs = {
        "organization": ("maker_a", "ab", "ab"),
        "collaboration": ("maker_b", "ab", "ab"),
        "global": ("maker_c", "cd", "cd"),
    }[scope]
    return w.task(maker, collab, orgs)


# the run a target stands for: own task -> B's run (its owner makes it "own"), else the run of
# the organization the scope names
_RUN_ORG = {"own": "b", "organization": "a", "collaboration": "b", "global": "c"}


def run_for(w: World, actor: str, scope: str, *, finished: bool = False) -> int:
    tid = task_for(w, actor, scope)
    if finished:
        w.finish(tid)
    return w.run_of(tid, _RUN_ORG[scope])


_ORG_OF = {"organization": "a", "collaboration": "b", "global": "c"}


def user_for(w: World, actor: str, scope: str, roles: tuple[str, ...] = ()) -> int:
    return w.users[actor] if scope == "own" else w.user(_ORG_OF[scope], roles)


def fresh_collab(w: World, scope: str) -> int:
    return w.collab("c", "d") if scope == "global" else w.collab("a", "b")


# what an endpoint needs ------------------------------------------------------------------------

Expect = Callable[[str, str], int]


def ruled(
    resource: str,
    operation: str,
    ok: int = 200,
    *,
    callers: tuple[str, ...] = ("user",),
    owner_counts: bool = True,
) -> Expect:
    """Allowed (``ok``) when the caller is one of ``callers`` and holds the rule at the target's
    scope; ``owner_counts=False``: one's own object needs the organization scope (rights, deletion)."""

    def expect(actor: str, scope: str) -> int:
        kind = "user" if is_user(actor) else actor
        if kind not in callers:
            return DENIED
        need = "organization" if scope == "own" and not owner_counts else scope
        return ok if holds(actor, resource, operation, need) else DENIED

    return expect


def both(first: Expect, second: Expect) -> Expect:
    def expect(actor: str, scope: str) -> int:
        a = first(actor, scope)
        return second(actor, scope) if a != DENIED else DENIED

    return expect


def everyone(ok: int = 200) -> Expect:
    return lambda actor, scope: ok


def users_only(ok: int = 200) -> Expect:
    return lambda actor, scope: ok if is_user(actor) else DENIED


def self_only(ok: int = 200) -> Expect:
    return lambda actor, scope: ok if is_user(actor) and scope == "own" else DENIED


def granting(role: str | None = None, rule: Rule | None = None, ok: int = 200) -> Expect:
    """user:edit on the target's organization and every rule granted (nobody grants what they lack)."""
    granted = DEFAULT_ROLES[role][1] if role else frozenset({rule}) if rule else frozenset()

    def expect(actor: str, scope: str) -> int:
        base = ruled("user", "edit", ok, owner_counts=False)(actor, scope)
        return base if base != DENIED and holds_all(actor, granted) else DENIED

    return expect


def grants(role: str, ok: int) -> Expect:
    """Every rule of ``role`` held (a new user gets it)."""
    return lambda actor, scope: ok if holds_all(actor, DEFAULT_ROLES[role][1]) else DENIED


def results(actor: str, scope: str) -> int:
    """A run's result: the run visible and the task's results covered (a node: its own runs)."""
    if actor == "node":
        return 200 if scope == "organization" else DENIED
    if ruled("run", "view", callers=("user", "container"))(actor, scope) == DENIED:
        return DENIED
    return ruled("result", "view", callers=("user", "container"))(actor, scope)


def task_results(actor: str, scope: str) -> int:
    if actor == "node":  # its own runs' rows of the tasks it sees
        return ruled("task", "view", callers=("node",))(actor, scope)
    if ruled("task", "view", callers=("user", "container"))(actor, scope) == DENIED:
        return DENIED
    return ruled("result", "view", callers=("user", "container"))(actor, scope)


def own_then(conflict: int, expect: Expect) -> Expect:
    """One's own account where the act is allowed: a conflict (cannot delete oneself)."""
    return lambda actor, scope: (
        conflict if scope == "own" and expect(actor, scope) != DENIED else expect(actor, scope)
    )


def default_role_conflict(operation: str) -> Expect:
    """Default roles cannot be changed: 409 for whoever holds the rule at all."""

    def expect(actor: str, scope: str) -> int:
        if scope == "default":
            return 409 if is_user(actor) and holds(actor, "role", operation, "own") else DENIED
        return ruled("role", operation)(actor, scope)

    return expect


# the endpoints ---------------------------------------------------------------------------------

ALL4 = ("own", "organization", "collaboration", "global")
NOT_OWN = ("organization", "collaboration", "global")
COLLAB = ("collaboration", "global")
NONE = ("-",)
ROLE_SCOPES = ("default", "organization", "collaboration", "global")


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str  # as Flask's url_map spells it
    scopes: tuple[str, ...]
    build: Callable[[World, str, str], Req]
    expect: Expect
    mutates_self: bool = False  # the case changes the caller: done by a clone of the actor

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"


def _anon(path: str) -> Callable[[World, str, str], Req]:
    return lambda w, a, s: Req("GET", path)


def _login(w: World, actor: str, scope: str) -> Req:
    return Req("POST", "/api/token/user", json={"username": "root", "password": ROOT_PASSWORD})


def _refresh(w: World, actor: str, scope: str) -> Req:
    body = w.ok("POST", "/api/token/user", json={"username": "root", "password": ROOT_PASSWORD})
    return Req("POST", "/api/token/refresh", json={"refresh_token": body["refresh_token"]})


def _revoke_token(w: World, actor: str, scope: str) -> Req:
    if is_user(actor):
        _, headers = w.clone(actor)
        return Req("POST", "/api/token/revoke", headers=headers)
    return Req("POST", "/api/token/revoke")


def _container_token(w: World, actor: str, scope: str) -> Req:
    rid = w.run_of(task_for(w, actor, scope), _ORG_OF[scope])
    return Req("POST", "/api/token/container", json={"run_id": rid})


def _user_target(
    w: World, actor: str, scope: str, roles: tuple[str, ...] = ()
) -> tuple[int, dict[str, str] | None]:
    """The target user and the headers to act with (a clone of the actor when it is oneself)."""
    if scope == "own":
        return w.clone(actor, *roles)
    return user_for(w, actor, scope, roles), None


def _user_req(method: str, suffix: str = "", json: Any = None) -> Any:
    def build(w: World, actor: str, scope: str) -> Req:
        uid, headers = _user_target(w, actor, scope)
        return Req(method, f"/api/user/{uid}{suffix}", json=json, headers=headers)

    return build


def _user_extra_rule(method: str) -> Any:
    rule = Rule("task", "view", "own")

    def build(w: World, actor: str, scope: str) -> Req:
        uid, headers = _user_target(w, actor, scope)
        with w.db() as s:
            rid = rule_id(s, rule)
            if method == "DELETE":
                s.execute(insert(user_rule).values(user_id=uid, rule_id=rid))
                s.commit()
        return Req(method, f"/api/user/{uid}/rule/{rid}", headers=headers)

    return build


def _user_role(method: str) -> Any:
    def build(w: World, actor: str, scope: str) -> Req:
        held = ("viewer",) if method == "DELETE" else ()
        uid, headers = _user_target(w, actor, scope, held)
        return Req(method, f"/api/user/{uid}/role/{w.default_role('viewer')}", headers=headers)

    return build


def _totp_confirm(w: World, actor: str, scope: str) -> Req:
    uid, headers = _user_target(w, actor, scope)
    code = "000000"
    if headers is not None:
        secret = w.ok("POST", f"/api/user/{uid}/totp", headers)["secret"]
        code = pyotp.TOTP(secret).now()
    return Req("POST", f"/api/user/{uid}/totp/confirm", json={"code": code}, headers=headers)


def _create_user(w: World, actor: str, scope: str) -> Req:
    body = {
        "username": w.name("new"),
        "password": PASSWORD,
        "organization_id": w.orgs[_ORG_OF[scope]],
    }
    return Req("POST", "/api/user", json=body)


def _list(path: str, target: Callable[[World, str, str], int]) -> Callable[[World, str, str], Req]:
    return lambda w, a, s: Req("GET", path, listed=target(w, a, s))


def _org_target(w: World, actor: str, scope: str) -> int:
    return w.orgs[_ORG_OF[scope]]


def _delete_org(w: World, actor: str, scope: str) -> Req:
    if scope == "organization":  # one's own organization: a clone in a fresh one
        oid = w.org()
        w.orgs["fresh"] = oid
        uid = w.user("fresh", (actor,) if is_user(actor) else ())
        with w.db() as s:
            headers = w.login(s.get(User, uid).username)
        return Req(
            "DELETE", f"/api/organization/{oid}", headers=headers if is_user(actor) else None
        )
    return Req("DELETE", f"/api/organization/{w.org('ab' if scope == 'collaboration' else 'cd')}")


def _collab_target(w: World, actor: str, scope: str) -> int:
    return w.collabs["ab" if scope == "collaboration" else "cd"]


def _member(method: str) -> Callable[[World, str, str], Req]:
    def build(w: World, actor: str, scope: str) -> Req:
        cid = fresh_collab(w, scope)
        oid = w.ok("POST", "/api/organization", json={"name": w.name("member")})["id"]
        if method == "DELETE":
            w.ok("POST", f"/api/collaboration/{cid}/organization", json={"id": oid})
        return Req(method, f"/api/collaboration/{cid}/organization", json={"id": oid})

    return build


_NODE_OF = {"own": "a", "organization": "a", "collaboration": "b", "global": "c"}


def _node_target(w: World, actor: str, scope: str) -> int:
    return w.nodes[_NODE_OF[scope]]["id"]


def node_scopes(actor: str) -> tuple[str, ...]:
    return ("own", "collaboration", "global") if actor == "node" else NOT_OWN


def _new_node(w: World, actor: str, scope: str) -> Req:
    body = {"organization_id": w.orgs[_ORG_OF[scope]], "collaboration_id": fresh_collab(w, scope)}
    return Req("POST", "/api/node", json=body)


def _delete_node(w: World, actor: str, scope: str) -> Req:
    if scope == "own":
        return Req("DELETE", f"/api/node/{w.nodes['a']['id']}")
    node = w.node(_ORG_OF[scope], fresh_collab(w, scope))
    return Req("DELETE", f"/api/node/{node['id']}")


_COLUMN_REPORT = {
    "databases": [{"label": "default", "columns": [{"name": "a", "type": "integer"}]}]
}


def _fresh_collab_expect(expect: Expect) -> Expect:
    """Objects in a fresh collaboration: outside a node's or container's one collaboration."""
    return lambda actor, scope: expect(actor, "global" if not is_user(actor) else scope)


def _new_task(w: World, actor: str, scope: str) -> Req:
    if actor == "container" and scope == "own":
        return Req(
            "POST",
            "/api/task",
            json={"organizations": [{"id": w.orgs["a"], "input": "{}"}], "method": "m"},
        )
    collab, org = ("ab", "a") if scope in ("own", "collaboration") else ("cd", "c")
    body = {
        "collaboration_id": w.collabs[collab],
        "organizations": [{"id": w.orgs[org], "input": "{}"}],
        "image": "img:1",
        "method": "m",
    }
    return Req("POST", "/api/task", json=body)


def task_create_scopes(actor: str) -> tuple[str, ...]:
    return ("own", "global") if actor == "container" else COLLAB


def _new_input(w: World, actor: str, scope: str) -> Req:
    """An input uploaded as bytes for a task to create (POST /api/task/input)."""
    collab, org = ("ab", "a") if scope in ("own", "collaboration") else ("cd", "c")
    return Req(
        "POST",
        f"/api/task/input?collaboration_id={w.collabs[collab]}&organization_id={w.orgs[org]}",
        data=b"{}",
        content_type="application/octet-stream",
    )


def run_input(actor: str, scope: str) -> int:
    """A run's input as bytes: only the node of the run's organization (and that run's own
    container, which no target here is) reads it."""
    return 200 if actor == "node" and scope == "organization" else DENIED


def _put_result(w: World, actor: str, scope: str) -> Req:
    rid = w.run_of(task_for(w, actor, scope), _ORG_OF[scope])
    return Req(
        "PUT",
        f"/api/run/{rid}/result",
        data=b'{"answer": 42}',
        content_type="application/octet-stream",
    )


def _role_target(w: World, actor: str, scope: str) -> int:
    return w.default_role("researcher") if scope == "default" else w.role(_ORG_OF[scope])


ENDPOINTS: tuple[Endpoint, ...] = (
    # public and self-service
    Endpoint("GET", "/api/health", NONE, _anon("/api/health"), everyone()),
    Endpoint("GET", "/api/version", NONE, _anon("/api/version"), everyone()),
    Endpoint("GET", "/api/openapi.json", NONE, _anon("/api/openapi.json"), everyone()),
    Endpoint("POST", "/api/token/user", NONE, _login, everyone()),
    Endpoint(
        "POST",
        "/api/token/node",
        NONE,
        lambda w, a, s: Req("POST", "/api/token/node", json={"api_key": w.nodes["b"]["api_key"]}),
        everyone(),
    ),
    Endpoint("POST", "/api/token/refresh", NONE, _refresh, everyone()),
    Endpoint("POST", "/api/token/revoke", NONE, _revoke_token, users_only()),
    Endpoint(
        "POST",
        "/api/token/container",
        NOT_OWN,
        _container_token,
        ruled("run", "edit", callers=("node",)),
    ),
    Endpoint("GET", "/api/user/me", NONE, lambda w, a, s: Req("GET", "/api/user/me"), users_only()),
    Endpoint("GET", "/api/rule", NONE, lambda w, a, s: Req("GET", "/api/rule"), users_only()),
    Endpoint(
        "GET", "/api/audit", NONE, lambda w, a, s: Req("GET", "/api/audit"), ruled("audit", "view")
    ),
    # users
    Endpoint(
        "GET",
        "/api/user",
        ALL4,
        _list("/api/user", lambda w, a, s: user_for(w, a, s) if is_user(a) or s != "own" else 0),
        ruled("user", "view"),
    ),
    Endpoint(
        "POST",
        "/api/user",
        NOT_OWN,
        _create_user,
        both(ruled("user", "create", 201), grants("researcher", 201)),
    ),
    Endpoint("GET", "/api/user/<int:user_id>", ALL4, _user_req("GET"), ruled("user", "view")),
    Endpoint(
        "PATCH",
        "/api/user/<int:user_id>",
        ALL4,
        _user_req("PATCH", json={"email": "m@example.org"}),
        ruled("user", "edit"),
    ),
    Endpoint(
        "DELETE",
        "/api/user/<int:user_id>",
        ALL4,
        _user_req("DELETE"),
        own_then(409, ruled("user", "delete", owner_counts=False)),
    ),
    Endpoint(
        "POST",
        "/api/user/<int:user_id>/revoke",
        ALL4,
        _user_req("POST", "/revoke"),
        ruled("user", "revoke"),
    ),
    Endpoint(
        "POST",
        "/api/user/<int:user_id>/role/<int:role_id>",
        ALL4,
        _user_role("POST"),
        granting("viewer", ok=201),
    ),
    Endpoint(
        "DELETE",
        "/api/user/<int:user_id>/role/<int:role_id>",
        ALL4,
        _user_role("DELETE"),
        granting("viewer"),
    ),
    Endpoint(
        "POST",
        "/api/user/<int:user_id>/rule/<int:rule_id>",
        ALL4,
        _user_extra_rule("POST"),
        granting(rule=Rule("task", "view", "own"), ok=201),
    ),
    Endpoint(
        "DELETE",
        "/api/user/<int:user_id>/rule/<int:rule_id>",
        ALL4,
        _user_extra_rule("DELETE"),
        granting(rule=Rule("task", "view", "own")),
    ),
    Endpoint("POST", "/api/user/<int:user_id>/totp", ALL4, _user_req("POST", "/totp"), self_only()),
    Endpoint("POST", "/api/user/<int:user_id>/totp/confirm", ALL4, _totp_confirm, self_only()),
    Endpoint(
        "DELETE",
        "/api/user/<int:user_id>/totp",
        ALL4,
        _user_req("DELETE", "/totp"),
        lambda a, s: (
            200 if is_user(a) and s == "own" else ruled("user", "edit", owner_counts=False)(a, s)
        ),
    ),
    # organizations
    Endpoint(
        "GET",
        "/api/organization",
        NOT_OWN,
        _list("/api/organization", _org_target),
        ruled("organization", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "POST",
        "/api/organization",
        NONE,
        lambda w, a, s: Req("POST", "/api/organization", json={"name": w.name("org")}),
        ruled("organization", "create", 201, callers=("user", "node", "container")),
    ),
    Endpoint(
        "GET",
        "/api/organization/<int:org_id>",
        NOT_OWN,
        lambda w, a, s: Req("GET", f"/api/organization/{_org_target(w, a, s)}"),
        ruled("organization", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "PATCH",
        "/api/organization/<int:org_id>",
        NOT_OWN,
        lambda w, a, s: Req(
            "PATCH", f"/api/organization/{_org_target(w, a, s)}", json={"name": w.name("renamed")}
        ),
        ruled("organization", "edit", callers=("user", "node", "container")),
    ),
    Endpoint(
        "DELETE",
        "/api/organization/<int:org_id>",
        NOT_OWN,
        _delete_org,
        # one's own organization still has its users (oneself): 409 where the act is allowed
        lambda a, s: (
            409
            if s == "organization" and holds(a, "organization", "delete", s)
            else ruled("organization", "delete", callers=("user", "node", "container"))(a, s)
        ),
    ),
    Endpoint(
        "POST",
        "/api/organization/<int:org_id>/require-totp",
        NOT_OWN,
        lambda w, a, s: Req(
            "POST",
            f"/api/organization/{_org_target(w, a, s)}/require-totp",
            json={"require_totp": False},
        ),
        ruled("organization", "edit", callers=("user", "node", "container")),
    ),
    # collaborations
    Endpoint(
        "GET",
        "/api/collaboration",
        COLLAB,
        _list("/api/collaboration", _collab_target),
        ruled("collaboration", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "POST",
        "/api/collaboration",
        NONE,
        lambda w, a, s: Req("POST", "/api/collaboration", json={"name": w.name("collab")}),
        ruled("collaboration", "create", 201, callers=("user", "node", "container")),
    ),
    Endpoint(
        "GET",
        "/api/collaboration/<int:collab_id>",
        COLLAB,
        lambda w, a, s: Req("GET", f"/api/collaboration/{_collab_target(w, a, s)}"),
        ruled("collaboration", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "PATCH",
        "/api/collaboration/<int:collab_id>",
        COLLAB,
        lambda w, a, s: Req(
            "PATCH",
            f"/api/collaboration/{_collab_target(w, a, s)}",
            json={"name": w.name("renamed")},
        ),
        ruled("collaboration", "edit", callers=("user", "node", "container")),
    ),
    Endpoint(
        "DELETE",
        "/api/collaboration/<int:collab_id>",
        COLLAB,
        lambda w, a, s: Req("DELETE", f"/api/collaboration/{fresh_collab(w, s)}"),
        _fresh_collab_expect(
            ruled("collaboration", "delete", callers=("user", "node", "container"))
        ),
    ),
    Endpoint(
        "POST",
        "/api/collaboration/<int:collab_id>/organization",
        COLLAB,
        _member("POST"),
        _fresh_collab_expect(
            ruled("collaboration", "edit", 201, callers=("user", "node", "container"))
        ),
    ),
    Endpoint(
        "DELETE",
        "/api/collaboration/<int:collab_id>/organization",
        COLLAB,
        _member("DELETE"),
        _fresh_collab_expect(ruled("collaboration", "edit", callers=("user", "node", "container"))),
    ),
    # nodes
    Endpoint(
        "GET",
        "/api/node",
        ALL4,
        _list("/api/node", _node_target),
        ruled("node", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "POST",
        "/api/node",
        NOT_OWN,
        _new_node,
        _fresh_collab_expect(ruled("node", "create", 201, callers=("user", "node", "container"))),
    ),
    Endpoint(
        "GET",
        "/api/node/<int:node_id>",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/node/{_node_target(w, a, s)}"),
        ruled("node", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "PATCH",
        "/api/node/<int:node_id>",
        ALL4,
        lambda w, a, s: Req(
            "PATCH", f"/api/node/{_node_target(w, a, s)}", json={"name": w.name("node")}
        ),
        ruled("node", "edit", callers=("user", "node", "container")),
    ),
    Endpoint(
        "DELETE",
        "/api/node/<int:node_id>",
        ALL4,
        _delete_node,
        lambda a, s: ruled("node", "delete", callers=("user", "node", "container"))(
            a, s if s == "own" or is_user(a) else "global"
        ),
    ),
    # column reports: a node puts (and clears) its own; whoever sees the collaboration reads them
    Endpoint(
        "PUT",
        "/api/node/<int:node_id>/columns",
        ALL4,
        lambda w, a, s: Req(
            "PUT", f"/api/node/{_node_target(w, a, s)}/columns", json=_COLUMN_REPORT
        ),
        ruled("node", "edit", callers=("node",)),
    ),
    Endpoint(
        "DELETE",
        "/api/node/<int:node_id>/columns",
        ALL4,
        lambda w, a, s: Req("DELETE", f"/api/node/{_node_target(w, a, s)}/columns"),
        ruled("node", "edit", callers=("node",)),
    ),
    Endpoint(
        "GET",
        "/api/column",
        COLLAB,
        lambda w, a, s: Req("GET", f"/api/column?collaboration_id={_collab_target(w, a, s)}"),
        ruled("collaboration", "view", callers=("user", "node", "container")),
    ),
    # tasks
    Endpoint(
        "GET",
        "/api/task",
        ALL4,
        _list("/api/task", task_for),
        ruled("task", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "POST",
        "/api/task",
        COLLAB,
        _new_task,
        ruled("task", "create", 201, callers=("user", "container")),
    ),
    Endpoint(
        "POST",
        "/api/task/input",
        COLLAB,
        _new_input,
        ruled("task", "create", 201, callers=("user", "container")),
    ),
    Endpoint(
        "GET",
        "/api/task/<int:task_id>",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/task/{task_for(w, a, s)}"),
        ruled("task", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "DELETE",
        "/api/task/<int:task_id>",
        ALL4,
        lambda w, a, s: Req("DELETE", f"/api/task/{task_for(w, a, s)}"),
        ruled("task", "delete"),
    ),
    Endpoint(
        "POST",
        "/api/task/<int:task_id>/kill",
        ALL4,
        lambda w, a, s: Req("POST", f"/api/task/{task_for(w, a, s)}/kill"),
        ruled("task", "kill"),
    ),
    # runs and results
    Endpoint(
        "GET",
        "/api/run",
        ALL4,
        _list("/api/run", run_for),
        ruled("run", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "GET",
        "/api/run/<int:run_id>",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/run/{run_for(w, a, s)}"),
        ruled("run", "view", callers=("user", "node", "container")),
    ),
    Endpoint(
        "PATCH",
        "/api/run/<int:run_id>",
        ALL4,
        lambda w, a, s: Req("PATCH", f"/api/run/{run_for(w, a, s)}", json={"log": "matrix"}),
        ruled("run", "edit", callers=("node",)),
    ),
    Endpoint(
        "PUT",
        "/api/run/<int:run_id>/result",
        NOT_OWN,
        _put_result,
        ruled("result", "create", callers=("node",)),
    ),
    Endpoint(
        "GET",
        "/api/run/<int:run_id>/result",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/run/{run_for(w, a, s, finished=True)}/result"),
        results,
    ),
    Endpoint(
        "GET",
        "/api/run/<int:run_id>/input",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/run/{run_for(w, a, s)}/input"),
        run_input,
    ),
    Endpoint(
        "GET",
        "/api/result",
        ALL4,
        lambda w, a, s: Req("GET", f"/api/result?task_id={task_for(w, a, s)}"),
        task_results,
    ),
    # roles and rules
    Endpoint(
        "GET",
        "/api/role",
        ROLE_SCOPES,
        _list("/api/role", _role_target),
        lambda a, s: users_only()(a, s) if s == "default" else ruled("role", "view")(a, s),
    ),
    Endpoint(
        "POST",
        "/api/role",
        NOT_OWN,
        lambda w, a, s: Req(
            "POST",
            "/api/role",
            json={"name": w.name("role"), "organization_id": w.orgs[_ORG_OF[s]], "rules": []},
        ),
        ruled("role", "create", 201),
    ),
    Endpoint(
        "GET",
        "/api/role/<int:role_id>",
        ROLE_SCOPES,
        lambda w, a, s: Req("GET", f"/api/role/{_role_target(w, a, s)}"),
        lambda a, s: users_only()(a, s) if s == "default" else ruled("role", "view")(a, s),
    ),
    Endpoint(
        "PATCH",
        "/api/role/<int:role_id>",
        ROLE_SCOPES,
        lambda w, a, s: Req(
            "PATCH", f"/api/role/{_role_target(w, a, s)}", json={"description": "changed"}
        ),
        default_role_conflict("edit"),
    ),
    Endpoint(
        "DELETE",
        "/api/role/<int:role_id>",
        ROLE_SCOPES,
        lambda w, a, s: Req("DELETE", f"/api/role/{_role_target(w, a, s)}"),
        default_role_conflict("delete"),
    ),
)


def scopes_for(endpoint: Endpoint, actor: str) -> tuple[str, ...]:
    """The target scopes that exist for this caller (a node has no own task; its own node record
    stands in for the organization's; a container's own is its job)."""
    if endpoint.rule.startswith("/api/node") and endpoint.scopes == ALL4:
        return node_scopes(actor)
    if endpoint.id in ("POST /api/task", "POST /api/task/input"):
        return task_create_scopes(actor)
    if endpoint.scopes == ALL4 and not is_user(actor):
        if actor == "container" and endpoint.rule.startswith(
            ("/api/task", "/api/run", "/api/result")
        ):
            return ALL4
        return NOT_OWN
    return endpoint.scopes


def expected_matrix() -> list[str]:
    rows = []
    for ep in ENDPOINTS:
        for actor in ACTORS:
            for scope in scopes_for(ep, actor):
                want = ep.expect(actor, scope)
                rows.append(f"{ep.id}\t{actor}\t{scope}\t{'deny' if want == DENIED else want}")
    return rows


# the tests -------------------------------------------------------------------------------------


def test_every_endpoint_is_in_the_matrix(world: World):
    routes = {
        f"{m} {r.rule}"
        for r in world.app.url_map.iter_rules()
        if r.endpoint != "static"
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    listed = [ep.id for ep in ENDPOINTS]
    assert len(listed) == len(set(listed)), "an endpoint is listed twice"
    assert routes == set(listed), (
        f"not in the matrix: {sorted(routes - set(listed))}; gone from the app: "
        f"{sorted(set(listed) - routes)}"
    )


def test_the_matrix_matches_its_pinned_table():
    rows = expected_matrix()
    text = "# endpoint\tcaller\ttarget scope\texpected (tests/server/test_permission_matrix.py)\n"
    text += "\n".join(rows) + "\n"
    if os.environ.get("V6NB_UPDATE_MATRIX") == "1":
        SNAPSHOT.write_text(text, encoding="utf-8")
    pinned = SNAPSHOT.read_text(encoding="utf-8")
    assert pinned == text, (
        "the rule table changed without tests/server/permission_matrix.txt: review the change, "
        "then regenerate it with V6NB_UPDATE_MATRIX=1"
    )


def _listed_ids(w: World, path: str, headers: dict[str, str]) -> set[int] | int:
    ids: set[int] = set()
    page = 1
    while True:
        r = w.client.get(path, query_string={"per_page": 500, "page": page}, headers=headers)
        if r.status_code != 200:
            return r.status_code
        body = r.get_json()
        ids.update(int(item["id"]) for item in body["data"])
        if len(body["data"]) < 500:
            return ids
        page += 1


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda ep: ep.id)
def test_permission_matrix(world: World, endpoint: Endpoint):
    wrong: list[str] = []
    for actor in ACTORS:
        for scope in scopes_for(endpoint, actor):
            want = endpoint.expect(actor, scope)
            req = endpoint.build(world, actor, scope)
            headers = req.headers if req.headers is not None else world.tokens[actor]
            if endpoint.id in {
                f"GET {p}" for p in ("/api/health", "/api/version", "/api/openapi.json")
            }:
                headers = {}
            cell = f"{actor} on a {scope} target"
            if req.listed is not None:
                got = _listed_ids(world, req.path, headers)
                if isinstance(got, int):  # the listing itself refused
                    if want != DENIED or got not in (403, 404):
                        wrong.append(f"{cell}: listing answered {got}")
                elif (req.listed in got) != (want != DENIED):
                    wrong.append(
                        f"{cell}: target {'listed' if req.listed in got else 'not listed'}, expected {'listed' if want != DENIED else 'hidden'}"
                    )
                continue
            kw: dict[str, Any] = {"headers": headers}
            if req.json is not None:
                kw["json"] = req.json
            if req.data is not None:
                kw["data"], kw["content_type"] = req.data, req.content_type
            r = world.client.open(req.path, method=req.method, **kw)
            if want == DENIED:
                if r.status_code not in (403, 404):
                    wrong.append(f"{cell}: {r.status_code}, expected 403/404 ({r.get_json()})")
                elif not (r.is_json and r.get_json().get("msg")):
                    wrong.append(f"{cell}: a refusal without a JSON message")
            elif r.status_code != want:
                wrong.append(f"{cell}: {r.status_code}, expected {want} ({r.get_json()})")
    assert not wrong, f"{endpoint.id}:\n" + "\n".join(wrong)
