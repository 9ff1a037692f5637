"""Roles and rules: the tables, the rule table and default roles, and today's users in them.

Revision ID: 0003
Revises: 0002

New tables ``rule``, ``role``, ``role_rule``, ``user_role``, ``user_rule``, seeded from
server_app/rules.py. Users keep what they could do: an ``is_admin`` user (a global administrator
until now) becomes root, everyone else a researcher; a root can then narrow an administrator to
organization admin. ``user.is_admin`` stays, kept in step with the roles
(true: holds root or organization admin).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server_app.rules import ALL_RULES, DEFAULT_ROLES

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_IDS_NEVER_REUSED = {"sqlite_autoincrement": True}


def upgrade() -> None:
    rule = op.create_table(
        "rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource", "operation", "scope"),
    )
    role = op.create_table(
        "role",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_role_organization_id", "role", ["organization_id"])
    role_rule = op.create_table(
        "role_rule",
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["role_id"], ["role.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rule_id"], ["rule.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("role_id", "rule_id"),
    )
    user_role = op.create_table(
        "user_role",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["role_id"], ["role.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "role_id"),
    )
    op.create_table(
        "user_rule",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["rule.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "rule_id"),
    )

    # no explicit ids: PostgreSQL's sequences must stay ahead of the rows
    bind = op.get_bind()
    bind.execute(
        rule.insert(),
        [{"resource": r.resource, "operation": r.operation, "scope": r.scope} for r in ALL_RULES],
    )
    rule_ids = {
        (res, opn, scope): rid
        for rid, res, opn, scope in bind.execute(
            sa.select(rule.c.id, rule.c.resource, rule.c.operation, rule.c.scope)
        )
    }
    bind.execute(
        role.insert(),
        [
            {"name": name, "description": description, "organization_id": None, "is_default": True}
            for name, (description, _rules) in DEFAULT_ROLES.items()
        ],
    )
    role_ids = dict(bind.execute(sa.select(role.c.name, role.c.id)).all())
    bind.execute(
        role_rule.insert(),
        [
            {"role_id": role_ids[name], "rule_id": rule_ids[tuple(r)]}
            for name, (_description, rules) in DEFAULT_ROLES.items()
            for r in sorted(rules)
        ],
    )

    user = sa.table(
        "user",
        sa.column("id", sa.Integer()),
        sa.column("is_admin", sa.Boolean()),
    )
    rows = bind.execute(sa.select(user.c.id, user.c.is_admin)).all()
    grants = []
    for uid, is_admin in rows:
        name = "root" if is_admin else "researcher"  # is_admin was global: nobody loses a power
        grants.append({"user_id": uid, "role_id": role_ids[name]})
    if grants:
        bind.execute(user_role.insert(), grants)


def downgrade() -> None:
    for table in ("user_rule", "user_role", "role_rule"):
        op.drop_table(table)
    op.drop_index("ix_role_organization_id", "role")
    op.drop_table("role")
    op.drop_table("rule")
