"""The rule table and the default roles, as data: what each role may do (docs/security.md, "Roles and rules").

A rule is ``(resource, operation, scope)``. A rule held at a scope covers every narrower scope:
``global`` ⊇ ``collaboration`` ⊇ ``organization`` ⊇ ``own``. Revision 0003 seeds these tables and
:func:`ensure_defaults` keeps the rule rows and the default roles in step with this module at
every start (default roles cannot be changed through the API, so this module is their one writer);
it is also the one writer of who holds which role (:func:`set_roles`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .models import AccessRule, Role, User, user_role

__all__ = [
    "ADMIN_ROLES",
    "ALL_RULES",
    "CONTAINER_RULES",
    "DEFAULT_ROLES",
    "EVERY_USER",
    "NODE_RULES",
    "OPERATIONS",
    "RESOURCES",
    "SCOPES",
    "Rule",
    "covers",
    "ensure_defaults",
    "give_default_roles",
    "holders",
    "parse_rule",
    "role_ids_of",
    "role_named",
    "rule_rows",
    "set_roles",
    "sync_admin_flag",
]

SCOPES = ("own", "organization", "collaboration", "global")  # narrow to broad
_RANK = {name: i for i, name in enumerate(SCOPES)}
_BASIC = ("view", "create", "edit", "delete")
OPERATIONS: dict[str, tuple[str, ...]] = {
    "user": (*_BASIC, "revoke"),  # revoke: end the user's sessions
    "organization": _BASIC,
    "collaboration": _BASIC,
    "node": _BASIC,
    "task": (*_BASIC, "kill"),
    "run": ("view", "edit"),
    "result": ("view", "create"),
    "role": _BASIC,
    "audit": ("view",),
}
RESOURCES = tuple(OPERATIONS)


class Rule(NamedTuple):
    """One rule; ``str(rule)`` is how messages and the API name it (``task:delete:organization``)."""

    resource: str
    operation: str
    scope: str

    def __str__(self) -> str:
        return f"{self.resource}:{self.operation}:{self.scope}"


ALL_RULES: tuple[Rule, ...] = tuple(
    Rule(res, op, scope) for res, ops in OPERATIONS.items() for op in ops for scope in SCOPES
)


def parse_rule(text: str) -> Rule:
    """``"task:view:collaboration"`` -> Rule; ValueError for anything not in the table.

    Examples
    --------
    >>> parse_rule("task:kill:collaboration")
    Rule(resource='task', operation='kill', scope='collaboration')
    """
    parts = tuple(str(text).split(":"))
    rule = Rule(*parts) if len(parts) == 3 else None
    if rule is None or rule not in _ALL:
        raise ValueError(f"unknown rule {text!r}: GET /api/rule lists them")
    return rule


_ALL = frozenset(ALL_RULES)


def covers(held: str, needed: str) -> bool:
    """Whether a rule held at scope ``held`` covers a target that needs scope ``needed``.

    Examples
    --------
    >>> covers("collaboration", "organization"), covers("own", "organization")
    (True, False)
    """
    return _RANK[held] >= _RANK[needed]


def _rules(scope: str, spec: dict[str, Iterable[str]]) -> frozenset[Rule]:
    return frozenset(Rule(res, op, scope) for res, ops in spec.items() for op in ops)


# Every user holds these, whatever their roles: see and edit one's own account, end one's sessions.
EVERY_USER = _rules("own", {"user": ("view", "edit", "revoke")})

_SEE_COLLABORATIONS = _rules(
    "collaboration",
    {"collaboration": ("view",), "organization": ("view",), "node": ("view",), "run": ("view",)},
)
_VIEWER = (
    EVERY_USER
    | _SEE_COLLABORATIONS
    | _rules("collaboration", {"task": ("view",)})
    | _rules("organization", {"user": ("view",), "result": ("view",), "role": ("view",)})
)
_RESEARCHER = (
    _VIEWER
    | _rules("collaboration", {"task": ("view", "create", "kill")})
    | _rules("own", {"task": ("delete",)})
)
_ORGANIZATION_ADMIN = (
    _RESEARCHER
    | _rules("organization", {"user": OPERATIONS["user"], "node": _BASIC, "role": _BASIC})
    | _rules("organization", {"organization": ("edit",), "task": ("delete",)})
)
_COLLABORATION_ADMIN = _RESEARCHER | _rules(
    "collaboration",
    {"collaboration": ("edit",), "node": _BASIC, "task": ("delete",), "result": ("view",)},
)

DEFAULT_ROLES: dict[str, tuple[str, frozenset[Rule]]] = {
    "root": ("Everything, everywhere: the server's operator.", _rules("global", OPERATIONS)),
    "collaboration admin": (
        "Manages the collaborations of its organization: their nodes and tasks.",
        _COLLABORATION_ADMIN,
    ),
    "organization admin": (
        "Manages its organization's users, nodes and roles; a researcher besides.",
        _ORGANIZATION_ADMIN,
    ),
    "researcher": (
        "Creates, views and kills tasks in its collaborations; views its organization's results.",
        _RESEARCHER,
    ),
    "viewer": ("Views tasks and runs of its collaborations; changes nothing.", _VIEWER),
}
# holding one of these makes ``is_admin`` true in the API (compatibility with the one-bit model)
ADMIN_ROLES = ("root", "organization admin")

# Fixed identities (not assignable): what the checks in server_app/permissions.py let them do.
# A node: its collaboration, the runs of its own organization, results of those runs. Setting
# its organization's key (replace_key to replace it) is the fixed check key_change_allowed, not
# a rule: a node cannot rename its organization or change its two-factor requirement.
NODE_RULES = (
    _rules(
        "collaboration", {"collaboration": ("view",), "organization": ("view",), "node": ("view",)}
    )
    | _rules("organization", {"run": ("view", "edit"), "result": ("create",)})
    | _rules("collaboration", {"task": ("view",)})
    | _rules("own", {"node": ("view", "edit")})
)
# A container: its own job's tasks and subtasks in its collaboration, while its run is open
# ("own", for a container, is its job).
CONTAINER_RULES = _rules(
    "collaboration", {"collaboration": ("view",), "organization": ("view",), "node": ("view",)}
) | _rules("own", {"task": ("view", "create"), "run": ("view",), "result": ("view",)})


# the one writer of rule rows, default roles and role holdings --------------------------------


def ensure_defaults(s: Session) -> dict[str, Role]:
    """Make the rule rows and the default roles match this module (at every start); returns the
    default roles by name. New rules are added; rules no longer in the table are removed."""
    rows = {Rule(r.resource, r.operation, r.scope): r for r in s.scalars(select(AccessRule))}
    for rule in ALL_RULES:
        if rule not in rows:
            rows[rule] = AccessRule(
                resource=rule.resource, operation=rule.operation, scope=rule.scope
            )
            s.add(rows[rule])
    for rule in set(rows) - _ALL:
        s.delete(rows.pop(rule))
    s.flush()
    roles = {r.name: r for r in s.scalars(select(Role).where(Role.name.in_(DEFAULT_ROLES)))}
    for name, (description, rules) in DEFAULT_ROLES.items():
        role = roles.get(name)
        if role is None:
            role = roles[name] = Role(name=name, organization_id=None)
            s.add(role)
        role.description, role.is_default = description, True
        wanted = [rows[r] for r in sorted(rules)]
        if [r.id for r in role.rules] != [r.id for r in wanted]:
            role.rules = wanted
    s.flush()
    return roles


def rule_rows(s: Session, rules: Iterable[Rule]) -> list[AccessRule]:
    """The database rows of ``rules`` (which must be in the table)."""
    wanted = set(rules)
    return [
        r for r in s.scalars(select(AccessRule)) if Rule(r.resource, r.operation, r.scope) in wanted
    ]


def role_named(s: Session, name: str) -> Role:
    """A role by name (default roles always exist after start)."""
    role = s.scalar(select(Role).where(Role.name == name))
    if role is None:
        role = ensure_defaults(s)[name]
    return role


def holders(s: Session, role_id: int) -> list[User]:
    """The users holding role ``role_id``."""
    stmt = select(User).join(user_role, user_role.c.user_id == User.id)
    return list(s.scalars(stmt.where(user_role.c.role_id == role_id)))


def role_ids_of(s: Session, user_id: int) -> list[int]:
    """Ids of the roles ``user_id`` holds."""
    stmt = select(user_role.c.role_id).where(user_role.c.user_id == user_id)
    return sorted(s.scalars(stmt))


def set_roles(s: Session, user: User, role_ids: Iterable[int]) -> None:
    """Make ``user`` hold exactly ``role_ids``; keeps ``user.is_admin`` in step (flushes)."""
    want = set(role_ids)
    have = set(role_ids_of(s, user.id))
    if have - want:
        s.execute(
            delete(user_role).where(
                user_role.c.user_id == user.id, user_role.c.role_id.in_(have - want)
            )
        )
    if want - have:
        s.execute(
            insert(user_role), [{"user_id": user.id, "role_id": rid} for rid in sorted(want - have)]
        )
    sync_admin_flag(s, user)


def sync_admin_flag(s: Session, user: User) -> None:
    """``user.is_admin`` := holds one of :data:`ADMIN_ROLES` (what ``is_admin`` means in the API)."""
    stmt = (
        select(Role.id)
        .join(user_role, user_role.c.role_id == Role.id)
        .where(user_role.c.user_id == user.id, Role.name.in_(ADMIN_ROLES))
    )
    user.is_admin = s.scalar(stmt.limit(1)) is not None
    s.flush()


def give_default_roles(s: Session, user: User, *, is_admin: bool) -> None:
    """A new account's roles from the one-bit model: root if ``is_admin``, else researcher."""
    s.flush()  # user.id
    set_roles(s, user, [role_named(s, "root" if is_admin else "researcher").id])
