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
from sqlalchemy import ColumnElement, Select, and_, bindparam, or_, select, union
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
    "can_edit_user",
    "can_see_result",
    "can_see_run",
    "can_see_task",
    "collaboration_ids",
    "current",
    "identity_from_claims",
    "is_node_run",
    "holds",
    "key_change_allowed",
    "missing_rules",
    "require",
    "require_collaboration",
    "require_node_run",
    "require_type",
    "rules_of",
    "scoped_collaborations",
    "scoped_nodes",
    "scoped_runs",
    "scoped_tasks",
    "scoped_users",
    "visible_collaboration_ids",
    "visible_node",
    "visible_organization",
    "visible_organization_ids",
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


def needed_scope(
    ident: Identity,
    *,
    org_id: int | None = None,
    collaboration_ids: Iterable[int] = (),
    owner_id: int | None = None,
) -> str:
    """The narrowest scope that covers the target (described by its organization, collaborations
    and owner) from where ``ident`` stands; no target at all: any rule will do ("own")."""
    collabs = {c for c in collaboration_ids if c is not None}
    if org_id is None and not collabs and owner_id is None:
        return "own"
    if owner_id is not None and ident.type == "user" and owner_id == ident.id:
        return "own"
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
) -> bool:
    """Whether ``ident`` may do ``operation`` on a ``resource`` of organization ``org_id``, in
    ``collaboration_ids``, owned by user ``owner_id`` (give what the target has).

    Examples
    --------
    >>> allowed(ident, "task", "delete", org_id=2, collaboration_ids=[1], owner_id=7)  # doctest: +SKIP
    False
    """
    held = _broadest(ident, resource, operation)
    if held is None:
        return False
    if held == "global":
        return True
    need = needed_scope(
        ident, org_id=org_id, collaboration_ids=collaboration_ids, owner_id=owner_id
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
    ident: Identity | None = None,
    what: str = "",
) -> Identity:
    """The caller (or ``ident``), who must be :func:`allowed` this; else a 403 naming the rule."""
    ident = ident or current()
    collabs = tuple(collaboration_ids)
    if not allowed(
        ident, resource, operation, org_id=org_id, collaboration_ids=collabs, owner_id=owner_id
    ):
        need = needed_scope(ident, org_id=org_id, collaboration_ids=collabs, owner_id=owner_id)
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


def collaboration_ids(
    s: Session, ident: Identity, resource: str = "collaboration"
) -> set[int] | None:
    """Collaborations in which the caller sees ``resource``s; None means all (``view`` at
    scope global), an empty set none (no ``view`` rule for it)."""
    scope = _broadest(ident, resource, "view", s)
    if scope == "global":
        return None
    if scope is None:
        return set()
    if ident.type in ("node", "container"):
        return {ident.collaboration_id} if ident.collaboration_id is not None else set()
    rows = s.execute(
        select(collaboration_member.c.collaboration_id).where(
            collaboration_member.c.organization_id == ident.org_id
        )
    )
    return {r[0] for r in rows}


def visible_organization_ids(s: Session, ident: Identity) -> set[int] | None:
    """Organizations the caller may see: its own and those sharing a collaboration; None: all."""
    collabs = collaboration_ids(s, ident, "organization")
    if collabs is None:
        return None
    ids = {ident.org_id}
    if collabs:
        rows = s.execute(
            select(collaboration_member.c.organization_id).where(
                collaboration_member.c.collaboration_id.in_(collabs)
            )
        )
        ids.update(r[0] for r in rows)
    return ids


def visible_organizations_clause(ident: Identity) -> ColumnElement[bool] | None:
    """:func:`visible_organization_ids` as a SQL condition on ``Organization.id`` (None: all).

    One statement instead of two extra queries: the hot list read uses it. Clauses are immutable,
    so one is built per caller kind and organization and then reused (building it costs more
    than running it).
    """
    if _global(ident, "organization"):
        return None
    collab = ident.collaboration_id if ident.type in ("node", "container") else -1
    return _visible_clause(ident.org_id, collab)


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


def require_collaboration(s: Session, ident: Identity, collaboration_id: int) -> Collaboration:
    """The collaboration, which the caller must act in (404 when unknown, 403 when not a member)."""
    collab = s.get(Collaboration, collaboration_id) if 0 < collaboration_id < 2**63 else None
    if collab is None:
        raise NotFound(f"Collaboration {collaboration_id} does not exist.")
    allowed = collaboration_ids(s, ident)
    if allowed is not None and collaboration_id not in allowed:
        raise PermissionDenied(
            f"Your organization is not a member of collaboration '{collab.name}' ({collaboration_id})."
        )
    return collab


def visible_collaboration_ids(s: Session, ident: Identity) -> list[int]:
    """Collaborations whose task events the caller receives, as a list (socket rooms)."""
    allowed = collaboration_ids(s, ident, "task")
    if allowed is None:
        return list(s.scalars(select(Collaboration.id)))
    return sorted(allowed)


def scoped_collaborations(s: Session, ident: Identity) -> Select[Any]:
    """Collaborations the caller acts in, as a statement to filter and page further."""
    stmt = select(Collaboration)
    allowed = collaboration_ids(s, ident)
    return stmt if allowed is None else stmt.where(Collaboration.id.in_(allowed))


def scoped_nodes(s: Session, ident: Identity) -> Select[Any]:
    """Nodes of the collaborations the caller acts in."""
    stmt = select(Node)
    allowed = collaboration_ids(s, ident, "node")
    return stmt if allowed is None else stmt.where(Node.collaboration_id.in_(allowed))


def visible_node(s: Session, ident: Identity, node_id: int) -> Node:
    """The node, which must be in a collaboration the caller acts in (404 / 403 otherwise)."""
    node = get_or_404(s, Node, node_id)
    allowed = collaboration_ids(s, ident, "node")
    if allowed is not None and node.collaboration_id not in allowed:
        raise PermissionDenied(
            f"Node {node_id} is in a collaboration your organization is not part of."
        )
    return node


def visible_organization(s: Session, ident: Identity, org_id: int) -> Organization:
    """The organization, which must share a collaboration with the caller's (404 / 403 otherwise)."""
    org = get_or_404(s, Organization, org_id)
    visible = visible_organization_ids(s, ident)
    if visible is not None and org.id not in visible:
        raise PermissionDenied(f"Organization {org_id} shares no collaboration with yours.")
    return org


def scoped_users(ident: Identity) -> Select[Any]:
    """Users the caller may see, by the scope of their ``user:view`` rule: everyone (global), the
    organizations sharing a collaboration, their organization, or only themselves."""
    stmt = select(User)
    scope = _broadest(ident, "user", "view")
    if scope == "global":
        return stmt
    if scope == "collaboration":
        peers = select(collaboration_member.c.organization_id).where(
            collaboration_member.c.collaboration_id.in_(sorted(_my_collaborations(ident)))
        )
        return stmt.where(
            or_(User.organization_id == ident.org_id, User.organization_id.in_(peers))
        )
    if scope == "organization":
        return stmt.where(User.organization_id == ident.org_id)
    return stmt.where(User.id == ident.id)


def visible_user(s: Session, ident: Identity, user_id: int) -> User:
    """The user, whom the caller's ``user:view`` rule must cover (404 / 403 otherwise)."""
    user = get_or_404(s, User, user_id)
    if not allowed(ident, "user", "view", org_id=user.organization_id, owner_id=user.id):
        need = needed_scope(ident, org_id=user.organization_id, owner_id=user.id)
        raise denied(Rule("user", "view", need), f"User {user_id} belongs to another organization")
    return user


def _task_scope(s: Session, ident: Identity) -> ColumnElement[bool] | None:
    # SQL twin of can_see_task (None: no restriction)
    if ident.type == "container":
        return Task.job_id == ident.job_id
    allowed = collaboration_ids(s, ident, "task")
    return None if allowed is None else Task.collaboration_id.in_(allowed)


def can_see_task(s: Session, ident: Identity, task: Task) -> bool:
    """Users of member organizations, the collaboration's nodes, and containers of the same job."""
    if ident.type == "container":
        return task.job_id == ident.job_id
    allowed = collaboration_ids(s, ident, "task")
    return allowed is None or task.collaboration_id in allowed


def scoped_tasks(s: Session, ident: Identity) -> Select[Any]:
    """Tasks the caller may see (:func:`can_see_task`), as a statement to filter further."""
    clause = _task_scope(s, ident)
    return select(Task) if clause is None else select(Task).where(clause)


def visible_task(s: Session, ident: Identity, task_id: int) -> Task:
    """The task, if the caller may see it (404 / 403 otherwise)."""
    task = get_or_404(s, Task, task_id)
    if not can_see_task(s, ident, task):
        if ident.type == "container":  # same collaboration maybe, but another job
            raise PermissionDenied(
                f"Task {task_id} is not part of this algorithm's job: an algorithm sees only "
                "its own task and the subtasks of its job."
            )
        raise PermissionDenied(
            f"Task {task_id} is in a collaboration your organization is not part of."
        )
    return task


def is_node_run(ident: Identity, run: Run, task: Task) -> bool:
    """Whether ``run`` (of ``task``) is one the node ``ident`` executes: its organization's part
    of a task in its collaboration."""
    return run.organization_id == ident.org_id and task.collaboration_id == ident.collaboration_id


def require_node_run(ident: Identity, run: Run, task: Task) -> None:
    """Raise unless :func:`is_node_run`: a node updates and uploads only its own runs."""
    if not is_node_run(ident, run, task):
        raise PermissionDenied(f"Run {run.id} belongs to another node.")


def can_see_run(s: Session, ident: Identity, task: Task, organization_id: int) -> bool:
    """Like tasks, but a node sees only the runs of its own organization."""
    if ident.type == "node":
        return task.collaboration_id == ident.collaboration_id and organization_id == ident.org_id
    return can_see_task(s, ident, task)


def scoped_runs(s: Session, ident: Identity) -> Select[Any]:
    """Runs the caller may see (:func:`can_see_run`), joined with their task (filter on both)."""
    stmt = select(Run).join(Task, Run.task_id == Task.id)
    if ident.type == "node":
        return stmt.where(
            Task.collaboration_id == ident.collaboration_id, Run.organization_id == ident.org_id
        )
    clause = _task_scope(s, ident)
    return stmt if clause is None else stmt.where(clause)


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


def can_edit_user(ident: Identity, user: User) -> bool:
    """Whether the caller's ``user:edit`` rule covers ``user`` (everyone edits their own account)."""
    return ident.type == "user" and allowed(
        ident, "user", "edit", org_id=user.organization_id, owner_id=user.id
    )


def can_see_result(ident: Identity, task: Task) -> bool:
    """A user's ``result:view`` rule must cover the task (its organization, collaboration and
    creator); nodes and containers see what their runs let them (:func:`visible_run`)."""
    if ident.type != "user":
        return True
    return allowed(
        ident,
        "result",
        "view",
        org_id=task.init_org_id,
        collaboration_ids=(task.collaboration_id,),
        owner_id=task.init_user_id,
    )


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
