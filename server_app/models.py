"""SQLAlchemy 2 typed models: organizations, collaborations, users, nodes, tasks and runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

__all__ = [
    "AccessRule",
    "AuditEvent",
    "Base",
    "Collaboration",
    "Node",
    "NodeColumns",
    "Organization",
    "PayloadBlob",
    "RefreshToken",
    "Role",
    "Run",
    "Task",
    "User",
    "collaboration_member",
    "role_rule",
    "user_role",
    "user_rule",
    "username_key",
    "utcnow",
]


def username_key(username: str) -> str:
    """The case-blind form of a username (``User.username_key``).

    Examples
    --------
    >>> username_key("Alice")
    'alice'
    """
    return username.casefold()


def utcnow() -> dt.datetime:
    """Now, in UTC (naive, as stored; serialized with a trailing ``Z``)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every server table."""


collaboration_member = Table(
    "collaboration_member",
    Base.metadata,
    Column(
        "collaboration_id", ForeignKey("collaboration.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("organization_id", ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True),
)


class Organization(Base):
    __tablename__ = "organization"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    domain: Mapped[str | None] = mapped_column(String(255))
    public_key: Mapped[str | None] = mapped_column(Text)  # base64
    key_fingerprint: Mapped[str | None] = mapped_column(String(128))
    require_totp: Mapped[bool] = mapped_column(default=False)

    collaborations: Mapped[list[Collaboration]] = relationship(
        secondary=collaboration_member, back_populates="organizations"
    )


class Collaboration(Base):
    __tablename__ = "collaboration"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    encrypted: Mapped[bool] = mapped_column(default=False)

    organizations: Mapped[list[Organization]] = relationship(
        secondary=collaboration_member, back_populates="collaborations", order_by="Organization.id"
    )
    nodes: Mapped[list[Node]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    tasks: Mapped[list[Task]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class User(Base):
    __tablename__ = "user"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    email: Mapped[str | None] = mapped_column(String(255))
    # username.casefold(): usernames are unique regardless of case; set by ``_key_username``.
    username_key: Mapped[str] = mapped_column(String(255), unique=True)
    session_version: Mapped[int] = mapped_column(default=0)  # bumped: every token of the user dies
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # base32; None: no second factor
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)  # last accepted code's step

    organization: Mapped[Organization] = relationship()

    @validates("username")
    def _key_username(self, _key: str, username: str) -> str:
        """Keep ``username_key`` in step with every assignment of ``username``."""
        self.username_key = username_key(username)
        return username


class Node(Base):
    __tablename__ = "node"
    __table_args__ = (
        UniqueConstraint("organization_id", "collaboration_id"),
        {"sqlite_autoincrement": True},  # ids are never reused
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    collaboration_id: Mapped[int] = mapped_column(
        ForeignKey("collaboration.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 (hex) of the API key: login is one indexed lookup, the key itself is never stored.
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="offline")
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)


class NodeColumns(Base):
    """A node's column report: per database label, column names and types (never values).

    One row per node, replaced by each report (``PUT /api/node/<id>/columns``) and removed when
    the node turns reporting off or is deleted.
    """

    __tablename__ = "node_columns"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), unique=True)
    # [{"label": str, "columns": [{"name": str, "type": str}]}], as vantage6nb.common.columns checks
    databases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Task(Base):
    __tablename__ = "task"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    collaboration_id: Mapped[int] = mapped_column(
        ForeignKey("collaboration.id", ondelete="CASCADE"), index=True
    )
    image: Mapped[str] = mapped_column(String(512))
    method: Mapped[str] = mapped_column(String(255))
    init_org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    init_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("task.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(index=True)
    databases: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    runs: Mapped[list[Run]] = relationship(
        back_populates="task", cascade="all, delete-orphan", passive_deletes=True, order_by="Run.id"
    )
    children: Mapped[list[Task]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class Run(Base):
    __tablename__ = "run"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    input: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    task: Mapped[Task] = relationship(back_populates="runs")


class PayloadBlob(Base):
    """A payload too large for a Text column, kept as a file in ``blob_dir`` (docs/api.md).

    Its own table (not columns on ``run``): a large payload costs a row here, not a wide ``run``.
    """

    __tablename__ = "payload_blob"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="result")  # "result"
    name: Mapped[str] = mapped_column(String(128), unique=True)  # file name inside blob_dir
    size: Mapped[int] = mapped_column(BigInteger)
    sealed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RefreshToken(Base):
    """One issued refresh token (by its ``jti``); a family is one login's chain of rotations."""

    __tablename__ = "refresh_token"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(default=False)


class AuditEvent(Base):
    """One security-relevant event on the server (server_app/audit.py writes them)."""

    __tablename__ = "audit_event"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    actor_type: Mapped[str | None] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    actor_org_id: Mapped[int | None]
    address: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccessRule(Base):
    """One rule of server_app/rules.py: (resource, operation, scope)."""

    __tablename__ = "rule"
    __table_args__ = (UniqueConstraint("resource", "operation", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(32))


class Role(Base):
    """A named set of rules; default roles (``is_default``) are kept by server_app/bootstrap.py."""

    __tablename__ = "role"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # None: a server-wide role; else the organization that made it (its admins manage it)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    is_default: Mapped[bool] = mapped_column(default=False)

    rules: Mapped[list[AccessRule]] = relationship(secondary="role_rule", order_by="AccessRule.id")


role_rule = Table(
    "role_rule",
    Base.metadata,
    Column("role_id", ForeignKey("role.id", ondelete="CASCADE"), primary_key=True),
    Column("rule_id", ForeignKey("rule.id", ondelete="CASCADE"), primary_key=True),
)
user_role = Table(
    "user_role",
    Base.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("role.id", ondelete="CASCADE"), primary_key=True),
)
user_rule = Table(
    "user_rule",
    Base.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("rule_id", ForeignKey("rule.id", ondelete="CASCADE"), primary_key=True),
)
