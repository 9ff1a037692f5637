"""Who may do what, in one place: identities from tokens, their rules, and the checks every resource calls.

A user holds the rules of their roles plus their own extra rules (server_app/rules.py); nodes and
algorithm containers hold fixed rule sets and the fixed checks below. :func:`allowed` and
:func:`require` decide one act on one target; the ``scoped_*`` / ``visible_*`` helpers turn the
``view`` rules into queries. A user's rules are read once per (user, session version): any change
of roles or rules bumps the session version, so the next request re-checks at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from flask import current_app, g, has_request_context, request
from sqlalchemy import ColumnElement, Select, and_, bindparam, false, or_, select, union
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from vantage6nb.common.errors import AuthenticationError, NotFound, PermissionDenied

from .blobs import is_result_of
from .models import (
    AccessRule,
    Collaboration,
    Node,
    Organization,
    PayloadBlob,
    Run,
    Task,
    User,
    collaboration_member,
    role_rule,
    user_role,
    user_rule,
)
from .request_parsing import MAX_ID, get_or_404
from .rules import CONTAINER_RULES, DEFAULT_ROLES, EVERY_USER, NODE_RULES, SCOPES, Rule, covers

__all__ = [
    "Identity",
    "allowed",
    "denied",
    "can_edit_user",
    "can_see_result",
    "can_see_run",
    "can_see_task",
    "current",
    "identity_from_claims",
    "holds",
    "is_node_run",
    "key_change_allowed",
    "missing_rules",
    "needed_scope",
    "node_target",
    "require",
    "require_collaboration",
    "require_node_run",
    "require_type",
    "run_target",
    "rules_of",
    "scope_filter",
    "scoped_collaborations",
    "scoped_nodes",
    "scoped_runs",
    "scoped_tasks",
    "scoped_users",
    "task_target",
    "visible_collaboration_ids",
    "visible_node",
    "visible_organization",
    "visible_organizations_clause",
    "visible_run",
    "visible_task",
    "visible_user",
]


@dataclass(frozen=True)
class Identity:
    """The caller, as its token says (no database lookup)."""

    type: str  # "user" | "node" | "container"
    id: int
    org_id: int
    is_admin: bool = False
    name: str = ""
    collaboration_id: int | None = None  # nodes and containers
    node_id: int | None = None  # nodes and containers
    run_id: int | None = None  # containers
    task_id: int | None = None  # containers
    job_id: int | None = None  # containers
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # a user's rules, once loaded (:func:`rules_of`); None: not yet
    rules: frozenset[Rule] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """How logs and reasons name the caller."""
        return self.name or f"{self.type} {self.id}"


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """Build an Identity from verified token claims."""
    try:
        typ = str(claims["type"])
        ident = Identity(
            type=typ,
            id=int(claims["sub"]),
            org_id=int(claims["org"]),
            is_admin=bool(claims.get("admin", False)) and typ == "user",
            name=str(claims.get("name", "")),
            collaboration_id=_opt_int(claims.get("collaboration_id")),
            node_id=_opt_int(claims.get("node_id", claims["sub"] if typ == "node" else None)),
            run_id=_opt_int(claims.get("run_id")),
            task_id=_opt_int(claims.get("task_id")),
            job_id=_opt_int(claims.get("job_id")),
            claims=claims,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthenticationError("Malformed token: log in again.") from exc
    if typ not in ("user", "node", "container"):
        raise AuthenticationError("Unknown token type: log in again.")
    return ident


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def current() -> Identity:
    """The authenticated caller of this request; 401 when the request carries no valid access token.

    Besides the signature and expiry, a user's token must carry the user's current session
    version and a family not revoked, and a container token's run must still be open: both are
    checked against the instance's cache (``server_app.sessions``), not the database each time.
    """
    ident = g.get("_v6nb_identity")
    if ident is not None:
        return ident
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Missing access token: send 'Authorization: Bearer <access_token>' (log in at /api/token/user)."
        )
    extensions = current_app.extensions
    claims = extensions["v6nb"].tokens.verify(token.strip(), kind="access")
    ident = identity_from_claims(claims)
    if ident.type != "node":  # a node's API key is what is taken back, not its tokens
        extensions["v6nb_sessions"].check(claims, endpoint=request.endpoint)
    ident = replace(ident, rules=rules_of(ident))
    g._v6nb_identity = ident
    return ident


def require_type(*types: str) -> Identity:
    """The caller, who must be one of ``types`` (e.g. "user", "node")."""
    ident = current()
    if ident.type not in types:
        raise PermissionDenied(
            f"This endpoint is for {' or '.join(types)}s, not for a {ident.type}."
        )
    return ident


# rules: loading, holding, deciding ---------------------------------------------------------------

_USER_RULES = union(
    select(AccessRule.resource, AccessRule.operation, AccessRule.scope)
    .join(role_rule, role_rule.c.rule_id == AccessRule.id)
    .join(user_role, user_role.c.role_id == role_rule.c.role_id)
    .where(user_role.c.user_id == bindparam("uid")),
    select(AccessRule.resource, AccessRule.operation, AccessRule.scope)
    .join(user_rule, user_rule.c.rule_id == AccessRule.id)
    .where(user_rule.c.user_id == bindparam("uid")),
)
# engine -> (user id, session version) -> rules; a new session version is a new key, so nothing
# here is ever stale for a token that passed the session check
_RULE_CACHE: weakref.WeakKeyDictionary[Engine, dict[tuple[int, int], frozenset[Rule]]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()
_MAX_CACHED = 50_000


def _load_user_rules(engine: Engine, user_id: int, version: int) -> frozenset[Rule]:
    with _CACHE_LOCK:
        table = _RULE_CACHE.setdefault(engine, {})
    hit = table.get((user_id, version))
    if hit is not None:
        return hit
    with engine.connect() as conn:
        rows = conn.execute(_USER_RULES, {"uid": user_id}).all()
    rules = EVERY_USER | frozenset(Rule(*row) for row in rows)
    if len(table) >= _MAX_CACHED:
        table.clear()
    table[(user_id, version)] = rules
    return rules


def rules_of(ident: Identity, s: Session | None = None) -> frozenset[Rule]:
    """The rules ``ident`` holds: a user's roles and extra rules, or a node's or container's fixed set.

    ``s``: a session to find the database by, outside a request (socket.io handlers).
    """
    if ident.rules is not None:
        return ident.rules
    if ident.type == "node":
        return NODE_RULES
    if ident.type == "container":
        return CONTAINER_RULES
    if s is not None:
        engine = s.get_bind()
    else:
        engine = current_app.extensions["v6nb_db"].engine
    version = ident.claims.get("sv", 0)
    return _load_user_rules(engine, ident.id, int(version) if isinstance(version, int) else 0)


def holds(ident: Identity, rule: Rule, s: Session | None = None) -> bool:
    """Whether ``ident`` holds ``rule`` (the same rule at its scope or a broader one)."""
    return any(
        covers(scope, rule.scope)
        for scope in SCOPES
        if Rule(rule.resource, rule.operation, scope) in rules_of(ident, s)
    )


def missing_rules(ident: Identity, rules: Iterable[Rule]) -> list[Rule]:
    """Those of ``rules`` that ``ident`` does not hold (nobody grants a rule they do not hold)."""
    return sorted(r for r in set(rules) if not holds(ident, r))


def _broadest(
    ident: Identity, resource: str, operation: str, s: Session | None = None
) -> str | None:
    """The broadest scope at which ``ident`` holds ``resource:operation`` (None: not at all)."""
    held = rules_of(ident, s)
    for scope in reversed(SCOPES):
        if Rule(resource, operation, scope) in held:
            return scope
    return None


def _my_collaborations(ident: Identity) -> frozenset[int]:
    """The collaborations the caller's organization is in (a node's or container's: its one)."""
    if ident.type in ("node", "container"):
        return frozenset({ident.collaboration_id} if ident.collaboration_id is not None else ())
    cached = g.get("_v6nb_my_collabs") if has_request_context() else None
    if cached is not None and cached[0] == ident.org_id:
        return cached[1]
    from .db import session

    rows = session().execute(
        select(collaboration_member.c.collaboration_id).where(
            collaboration_member.c.organization_id == ident.org_id
        )
    )
    mine = frozenset(r[0] for r in rows)
    if has_request_context():
        g._v6nb_my_collabs = (ident.org_id, mine)
    return mine


def _shares_collaboration(ident: Identity, org_id: int) -> bool:
    mine = _my_collaborations(ident)
    if not mine:
        return False
    from .db import session

    stmt = select(collaboration_member.c.organization_id).where(
        collaboration_member.c.collaboration_id.in_(mine),
        collaboration_member.c.organization_id == org_id,
    )
    return session().execute(stmt.limit(1)).first() is not None


def _is_own(ident: Identity, owner_id: int | None, job_id: int | None, node_id: int | None) -> bool:
    """ "Own" is the user's own object, a container's own job, a node's own node record."""
    if ident.type == "user":
        return owner_id is not None and owner_id == ident.id
    if ident.type == "container":
        return job_id is not None and job_id == ident.job_id
    return node_id is not None and node_id == ident.node_id


def needed_scope(
    ident: Identity,
    *,
    org_id: int | None = None,
    collaboration_ids: Iterable[int] = (),
    owner_id: int | None = None,
    job_id: int | None = None,
    node_id: int | None = None,
) -> str:
    """The narrowest scope that covers the target (described by its organization, collaborations,
    owner, job and node record) from where ``ident`` stands; no target at all: any rule will do
    ("own"). Nodes and containers are confined to their one collaboration: anything outside it
    needs scope global, which they never hold."""
    collabs = {c for c in collaboration_ids if c is not None}
    if ident.type != "user" and collabs and ident.collaboration_id not in collabs:
        return "global"
    if _is_own(ident, owner_id, job_id, node_id):
        return "own"
    if org_id is None and not collabs:
        return "own" if owner_id is None and job_id is None and node_id is None else "global"
    if org_id is not None and org_id == ident.org_id:
        return "organization"
    if collabs:
        return "collaboration" if collabs & _my_collaborations(ident) else "global"
    if org_id is not None and _shares_collaboration(ident, org_id):
        return "collaboration"
    return "global"


def allowed(
    ident: Identity,
    resource: str,
    operation: str,
    *,
    org_id: int | None = None,
    collaboration_ids: Iterable[int] = (),
    owner_id: int | None = None,
    job_id: int | None = None,
    node_id: int | None = None,
) -> bool:
    """Whether ``ident`` may do ``operation`` on a ``resource`` of organization ``org_id``, in
    ``collaboration_ids``, owned by user ``owner_id`` (give what the target has: the ``*_target``
    functions below describe each kind of object).

    Examples
    --------
    >>> allowed(ident, "task", "delete", **task_target(task))  # doctest: +SKIP
    False
    """
    held = _broadest(ident, resource, operation)
    if held is None:
        return False
    collabs = tuple(collaboration_ids)
    if held == "global" and not (ident.type != "user" and collabs):
        return True
    need = needed_scope(
        ident,
        org_id=org_id,
        collaboration_ids=collabs,
        owner_id=owner_id,
        job_id=job_id,
        node_id=node_id,
    )
    return covers(held, need)


_ASK = {
    "own": "ask an organization admin",
    "organization": "ask an organization admin",
    "collaboration": "ask a collaboration admin",
    "global": "ask the server's root administrator",
}


def denied(rule: Rule, what: str = "") -> PermissionDenied:
    """The 403 naming the missing rule and whom to ask."""
    prefix = f"{what}: y" if what else "Y"
    return PermissionDenied(
        f"{prefix}ou need rule {rule.resource}:{rule.operation} at scope {rule.scope}; "
        f"{_ASK[rule.scope]}.",
        errors={"rule": str(rule)},
    )


def require(
    resource: str,
    operation: str,
    *,
    org_id: int | None = None,
    collaboration_ids: Iterable[int] = (),
    owner_id: int | None = None,
    job_id: int | None = None,
    node_id: int | None = None,
    ident: Identity | None = None,
    what: str = "",
) -> Identity:
    """The caller (or ``ident``), who must be :func:`allowed` this; else a 403 naming the rule."""
    ident = ident or current()
    target = {
        "org_id": org_id,
        "collaboration_ids": tuple(collaboration_ids),
        "owner_id": owner_id,
        "job_id": job_id,
        "node_id": node_id,
    }
    if not allowed(ident, resource, operation, **target):
        need = needed_scope(ident, **target)
        if need == "own" and _broadest(ident, resource, operation) is None:
            need = _usual_scope(resource, operation)  # no rule at all: name the usual one
        raise denied(Rule(resource, operation, need), what)
    return ident


@lru_cache(maxsize=256)
def _usual_scope(resource: str, operation: str) -> str:
    """The narrowest scope at which a default role holds ``resource:operation``."""
    scopes = {
        r.scope
        for _desc, rules in DEFAULT_ROLES.values()
        for r in rules
        if (r.resource, r.operation) == (resource, operation)
    }
    return min(scopes, key=SCOPES.index) if scopes else "global"


def _global(
    ident: Identity, resource: str, operation: str = "view", s: Session | None = None
) -> bool:
    return Rule(resource, operation, "global") in rules_of(ident, s)


# what each kind of object is, for the checks: its organization, collaborations, owner, job -------


def task_target(task: Task) -> dict[str, Any]:
    """A task as a target: its initiating organization and user, collaboration and job."""
    return {
        "org_id": task.init_org_id,
        "collaboration_ids": (task.collaboration_id,),
        "owner_id": task.init_user_id,
        "job_id": task.job_id,
    }


def run_target(run: Run, task: Task) -> dict[str, Any]:
    """A run as a target: the organization that runs it, in its task's collaboration, owned by
    the task's creator."""
    return {**task_target(task), "org_id": run.organization_id}


def node_target(node: Node) -> dict[str, Any]:
    """A node as a target: its organization and collaboration (its own record for a node)."""
    return {
        "org_id": node.organization_id,
        "collaboration_ids": (node.collaboration_id,),
        "node_id": node.id,
    }


def scope_filter(
    ident: Identity,
    resource: str,
    operation: str = "view",
    *,
    org: Any = None,
    collaboration: Any = None,
    owner: Any = None,
    job: Any = None,
    node: Any = None,
    s: Session | None = None,
) -> ColumnElement[bool] | None:
    """The SQL twin of :func:`allowed` for every row of a listing: the columns say where a row's
    organization, collaboration, owner, job and node are (None: no restriction).

    A rule at a scope covers every narrower one, so the condition is the union of the scopes
    up to the caller's broadest; nodes and containers stay inside their collaboration.
    """
    scope = _broadest(ident, resource, operation, s)
    if scope is None:
        return false()
    confined = ident.type != "user" and collaboration is not None
    if scope == "global":
        return collaboration == ident.collaboration_id if confined else None
    conds: list[ColumnElement[bool]] = []
    if ident.type == "user" and owner is not None:
        conds.append(owner == ident.id)
    elif ident.type == "container" and job is not None:
        conds.append(job == ident.job_id)
    elif ident.type == "node" and node is not None:
        conds.append(node == ident.node_id)
    if covers(scope, "organization") and org is not None:
        conds.append(org == ident.org_id)
    if covers(scope, "collaboration"):
        mine = _my_collaborations_clause(ident)
        if collaboration is not None:
            conds.append(collaboration.in_(mine))
        elif org is not None:
            conds.append(
                org.in_(
                    select(collaboration_member.c.organization_id).where(
                        collaboration_member.c.collaboration_id.in_(mine)
                    )
                )
            )
    clause = or_(*conds) if conds else false()
    return and_(clause, collaboration == ident.collaboration_id) if confined else clause


def _my_collaborations_clause(ident: Identity) -> Any:
    if ident.type != "user":
        return [ident.collaboration_id] if ident.collaboration_id is not None else []
    return select(collaboration_member.c.collaboration_id).where(
        collaboration_member.c.organization_id == ident.org_id
    )


def _where(stmt: Select[Any], clause: ColumnElement[bool] | None) -> Select[Any]:
    return stmt if clause is None else stmt.where(clause)


# organizations and collaborations -------------------------------------------------------------


def visible_organizations_clause(ident: Identity) -> ColumnElement[bool] | None:
    """Organizations the caller's ``organization:view`` rule covers, as a SQL condition on
    ``Organization.id`` (None: all).

    The hot list read uses it. Clauses are immutable, so one is built per caller kind, scope and
    organization and then reused (building it costs more than running it).
    """
    scope = _broadest(ident, "organization", "view")
    if scope == "global" and ident.type == "user":
        return None
    if scope is None:
        return false()
    if not covers(scope, "collaboration"):
        return _own_org_clause(ident.org_id if covers(scope, "organization") else -1)
    collab = ident.collaboration_id if ident.type in ("node", "container") else -1
    return _visible_clause(ident.org_id, collab)


@lru_cache(maxsize=4096)
def _own_org_clause(org_id: int) -> ColumnElement[bool]:
    return Organization.id == org_id


@lru_cache(maxsize=4096)
def _visible_clause(org_id: int, collaboration_id: int | None) -> ColumnElement[bool]:
    # collaboration_id: a node's or container's one collaboration (None: none); -1: a user's.
    mine = Organization.id == org_id
    if collaboration_id != -1:
        if collaboration_id is None:
            return mine
        collabs: Any = [collaboration_id]
    else:
        collabs = select(collaboration_member.c.collaboration_id).where(
            collaboration_member.c.organization_id == org_id
        )
    peers = select(collaboration_member.c.organization_id).where(
        collaboration_member.c.collaboration_id.in_(collabs)
    )
    return or_(mine, Organization.id.in_(peers))


def visible_organization(s: Session, ident: Identity, org_id: int) -> Organization:
    """The organization, which the caller's ``organization:view`` rule must cover (404 / 403)."""
    org = get_or_404(s, Organization, org_id)
    if not allowed(ident, "organization", "view", org_id=org.id):
        raise PermissionDenied(f"Organization {org_id} shares no collaboration with yours.")
    return org


def require_collaboration(s: Session, ident: Identity, collaboration_id: int) -> Collaboration:
    """The collaboration, which the caller's ``collaboration:view`` rule must cover (404 when
    unknown, 403 otherwise): the collaborations one sees are the ones one acts in."""
    collab = s.get(Collaboration, collaboration_id) if 0 < collaboration_id < 2**63 else None
    if collab is None:
        raise NotFound(f"Collaboration {collaboration_id} does not exist.")
    if not allowed(ident, "collaboration", "view", collaboration_ids=(collab.id,)):
        raise PermissionDenied(
            f"Your organization is not a member of collaboration '{collab.name}' ({collaboration_id})."
        )
    return collab


def scoped_collaborations(s: Session, ident: Identity) -> Select[Any]:
    """Collaborations the caller acts in, as a statement to filter and page further."""
    clause = scope_filter(ident, "collaboration", collaboration=Collaboration.id, s=s)
    return _where(select(Collaboration), clause)


def visible_collaboration_ids(s: Session, ident: Identity) -> list[int]:
    """Collaborations whose task events the caller receives (socket rooms): those where its
    ``task:view`` rule covers every task, i.e. at scope collaboration or broader."""
    scope = _broadest(ident, "task", "view", s)
    if scope is None or not covers(scope, "collaboration"):
        return []
    if ident.type != "user":
        return [ident.collaboration_id] if ident.collaboration_id is not None else []
    if scope == "global":
        return list(s.scalars(select(Collaboration.id)))
    rows = s.execute(
        select(collaboration_member.c.collaboration_id).where(
            collaboration_member.c.organization_id == ident.org_id
        )
    )
    return sorted(r[0] for r in rows)


# nodes and users --------------------------------------------------------------------------------


def scoped_nodes(s: Session, ident: Identity) -> Select[Any]:
    """Nodes the caller's ``node:view`` rule covers."""
    clause = scope_filter(
        ident,
        "node",
        org=Node.organization_id,
        collaboration=Node.collaboration_id,
        node=Node.id,
        s=s,
    )
    return _where(select(Node), clause)


def visible_node(s: Session, ident: Identity, node_id: int) -> Node:
    """The node, which the caller's ``node:view`` rule must cover (404 / 403 otherwise)."""
    node = get_or_404(s, Node, node_id)
    if not allowed(ident, "node", "view", **node_target(node)):
        raise PermissionDenied(
            f"Node {node_id} is in a collaboration your organization is not part of."
        )
    return node


def scoped_users(ident: Identity) -> Select[Any]:
    """Users the caller may see, by the scope of their ``user:view`` rule: everyone (global), the
    organizations sharing a collaboration, their organization, or only themselves."""
    clause = scope_filter(ident, "user", org=User.organization_id, owner=User.id)
    return _where(select(User), clause)


def visible_user(s: Session, ident: Identity, user_id: int) -> User:
    """The user, whom the caller's ``user:view`` rule must cover (404 / 403 otherwise)."""
    user = get_or_404(s, User, user_id)
    if not allowed(ident, "user", "view", org_id=user.organization_id, owner_id=user.id):
        need = needed_scope(ident, org_id=user.organization_id, owner_id=user.id)
        raise denied(Rule("user", "view", need), f"User {user_id} belongs to another organization")
    return user


def can_edit_user(ident: Identity, user: User) -> bool:
    """Whether the caller's ``user:edit`` rule covers ``user`` (everyone edits their own account)."""
    return ident.type == "user" and allowed(
        ident, "user", "edit", org_id=user.organization_id, owner_id=user.id
    )


# tasks, runs and results ----------------------------------------------------------------------


def _task_clause(s: Session, ident: Identity) -> ColumnElement[bool] | None:
    return scope_filter(
        ident,
        "task",
        org=Task.init_org_id,
        collaboration=Task.collaboration_id,
        owner=Task.init_user_id,
        job=Task.job_id,
        s=s,
    )


def can_see_task(s: Session, ident: Identity, task: Task) -> bool:
    """Whether the caller's ``task:view`` rule covers ``task`` (a container: its own job)."""
    return allowed(ident, "task", "view", **task_target(task))


def scoped_tasks(s: Session, ident: Identity) -> Select[Any]:
    """Tasks the caller may see (:func:`can_see_task`), as a statement to filter further."""
    return _where(select(Task), _task_clause(s, ident))


def visible_task(s: Session, ident: Identity, task_id: int) -> Task:
    """The task, if the caller may see it (404 / 403 otherwise)."""
    task = get_or_404(s, Task, task_id)
    if not can_see_task(s, ident, task):
        if ident.type == "container":  # same collaboration maybe, but another job
            raise PermissionDenied(
                f"Task {task_id} is not part of this algorithm's job: an algorithm sees only "
                "its own task and the subtasks of its job."
            )
        raise denied(
            Rule("task", "view", needed_scope(ident, **task_target(task))), f"Task {task_id}"
        )
    return task


def is_node_run(ident: Identity, run: Run, task: Task) -> bool:
    """Whether ``run`` (of ``task``) is one the node ``ident`` executes: its organization's part
    of a task in its collaboration."""
    return (
        ident.type == "node"
        and run.organization_id == ident.org_id
        and task.collaboration_id == ident.collaboration_id
    )


def require_node_run(ident: Identity, run: Run, task: Task) -> None:
    """Raise unless :func:`is_node_run`: a node updates and uploads only its own runs."""
    if not is_node_run(ident, run, task):
        raise PermissionDenied(f"Run {run.id} belongs to another node.")


def can_see_run(s: Session, ident: Identity, task: Task, organization_id: int) -> bool:
    """Whether the caller's ``run:view`` rule covers the run of ``organization_id`` in ``task``
    (a node: the runs of its organization; a container: the runs of its job)."""
    target = {**task_target(task), "org_id": organization_id}
    return allowed(ident, "run", "view", **target)


def scoped_runs(s: Session, ident: Identity) -> Select[Any]:
    """Runs the caller may see (:func:`can_see_run`), joined with their task (filter on both)."""
    clause = scope_filter(
        ident,
        "run",
        org=Run.organization_id,
        collaboration=Task.collaboration_id,
        owner=Task.init_user_id,
        job=Task.job_id,
        s=s,
    )
    return _where(select(Run).join(Task, Run.task_id == Task.id), clause)


def visible_run(
    s: Session, ident: Identity, run_id: int
) -> tuple[Run, Task, Node | None, PayloadBlob | None]:
    """The run with its task, its node and its stored result file, in one query (404 / 403)."""
    row = s.execute(_ONE_RUN, {"run_id": run_id}).first() if 0 < run_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"Run {run_id} does not exist.")
    run, task, node, blob = row
    if not can_see_run(s, ident, task, run.organization_id):
        raise PermissionDenied(f"Run {run_id} is not visible to you.")
    return run, task, node, blob


# built once: a run, its task, its node and its result file (statement cache hits every time)
_ONE_RUN = (
    select(Run, Task, Node, PayloadBlob)
    .join(Task, Run.task_id == Task.id)
    .outerjoin(
        Node,
        and_(
            Node.collaboration_id == Task.collaboration_id,
            Node.organization_id == Run.organization_id,
        ),
    )
    .outerjoin(PayloadBlob, is_result_of(Run.id))
    .where(Run.id == bindparam("run_id"))
)


def can_see_result(ident: Identity, task: Task, run: Run | None = None) -> bool:
    """Whether the caller's ``result:view`` rule covers ``task`` (its initiating organization,
    collaboration, creator; a container: its own job), or ``run`` is the caller's own run (the
    node that produced a result reads it back)."""
    if run is not None and is_node_run(ident, run, task):
        return True
    return allowed(ident, "result", "view", **task_target(task))


def key_change_allowed(ident: Identity, org: Organization, replace_key: bool) -> str:
    """Check a public-key change on ``org``; return "set" or "replace" (for the log), else raise.

    Members may set their organization's key while it is unset. Replacing a key is an explicit act:
    an administrator, or a node of that organization sending ``replace_key: true``.
    """
    from vantage6nb.common.errors import KeyMismatch

    unset = not org.public_key
    if _global(ident, "organization", "edit"):
        return "set" if unset else "replace"
    if ident.type not in ("user", "node") or ident.org_id != org.id:
        raise PermissionDenied(
            "Only members of this organization (or an administrator) may set its public key."
        )
    if unset:
        return "set"
    if ident.type == "node" and replace_key:
        return "replace"
    raise KeyMismatch(
        f"Organization '{org.name}' already has a public key ({org.key_fingerprint}). Replacing it is an "
        "explicit act: a node of that organization sends replace_key: true, or an administrator replaces it.",
        errors={"public_key": "already set"},
    )
