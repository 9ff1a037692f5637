"""Who may do what, in one place: identities from tokens, and the checks every resource calls.

Today there are three roles (administrator, user of an organization, node of an organization in a
collaboration) plus algorithm containers acting for one run; the checks are written so that full,
configurable roles can replace the ``is_admin`` tests later without touching the resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from flask import current_app, g, request
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import AuthenticationError, NotFound, PermissionDenied

from .models import Collaboration, Organization, Task, collaboration_member

__all__ = [
    "Identity",
    "collaboration_ids",
    "current",
    "identity_from_claims",
    "require_admin",
    "require_collaboration",
    "require_type",
    "visible_organization_ids",
    "visible_organizations_clause",
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
    """The authenticated caller of this request; 401 when the request carries no valid access token."""
    ident = g.get("_v6nb_identity")
    if ident is not None:
        return ident
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Missing access token: send 'Authorization: Bearer <access_token>' (log in at /api/token/user)."
        )
    claims = current_app.extensions["v6nb"].tokens.verify(token.strip(), kind="access")
    ident = g._v6nb_identity = identity_from_claims(claims)
    return ident


def require_type(*types: str) -> Identity:
    """The caller, who must be one of ``types`` (e.g. "user", "node")."""
    ident = current()
    if ident.type not in types:
        raise PermissionDenied(
            f"This endpoint is for {' or '.join(types)}s, not for a {ident.type}."
        )
    return ident


def require_admin() -> Identity:
    """The caller, who must be an administrator."""
    ident = current()
    if not ident.is_admin:
        raise PermissionDenied(
            "Only an administrator may do this: ask your server's administrator."
        )
    return ident


def collaboration_ids(s: Session, ident: Identity) -> set[int] | None:
    """Collaborations the caller acts in; None means all (administrators)."""
    if ident.is_admin:
        return None
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
    collabs = collaboration_ids(s, ident)
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
    if ident.is_admin:
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


def can_see_task(s: Session, ident: Identity, task: Task) -> bool:
    """Users of member organizations, the collaboration's nodes, and containers of the same job."""
    if ident.type == "container":
        return task.job_id == ident.job_id
    allowed = collaboration_ids(s, ident)
    return allowed is None or task.collaboration_id in allowed


def can_see_run(s: Session, ident: Identity, task: Task, organization_id: int) -> bool:
    """Like tasks, but a node sees only the runs of its own organization."""
    if ident.type == "node":
        return task.collaboration_id == ident.collaboration_id and organization_id == ident.org_id
    return can_see_task(s, ident, task)


def can_edit_user(ident: Identity, user_id: int) -> bool:
    """Administrators edit anyone; a user edits only their own account."""
    return ident.is_admin or (ident.type == "user" and ident.id == user_id)


def key_change_allowed(ident: Identity, org: Organization, replace_key: bool) -> str:
    """Check a public-key change on ``org``; return "set" or "replace" (for the log), else raise.

    Members may set their organization's key while it is unset. Replacing a key is an explicit act:
    an administrator, or a node of that organization sending ``replace_key: true``.
    """
    from vantage6nb.common.errors import KeyMismatch

    unset = not org.public_key
    if ident.is_admin:
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
