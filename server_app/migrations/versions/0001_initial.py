"""The schema of the first release: what ``Base.metadata.create_all`` made before migrations.

Revision ID: 0001
Revises: (none)

A database made by that release's ``create_all`` has these tables and no ``alembic_version``; the
server stamps it 0001 (server_app.migrations.upgrade) and upgrades it from there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_IDS_NEVER_REUSED = {"sqlite_autoincrement": True}  # SQLite AUTOINCREMENT


def upgrade() -> None:
    op.create_table(
        "organization",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("key_fingerprint", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        **_IDS_NEVER_REUSED,
    )
    op.create_table(
        "collaboration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        **_IDS_NEVER_REUSED,
    )
    op.create_table(
        "collaboration_member",
        sa.Column("collaboration_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["collaboration_id"], ["collaboration.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collaboration_id", "organization_id"),
    )
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_user_organization_id", "user", ["organization_id"])
    op.create_table(
        "node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("collaboration_id", sa.Integer(), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["collaboration_id"], ["collaboration.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_hash"),
        sa.UniqueConstraint("organization_id", "collaboration_id"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_node_collaboration_id", "node", ["collaboration_id"])
    op.create_index("ix_node_organization_id", "node", ["organization_id"])
    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("collaboration_id", sa.Integer(), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("method", sa.String(255), nullable=False),
        sa.Column("init_org_id", sa.Integer(), nullable=False),
        sa.Column("init_user_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("databases", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collaboration_id"], ["collaboration.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["init_org_id"], ["organization.id"]),
        sa.ForeignKeyConstraint(["init_user_id"], ["user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parent_id"], ["task.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_task_collaboration_id", "task", ["collaboration_id"])
    op.create_index("ix_task_init_org_id", "task", ["init_org_id"])
    op.create_index("ix_task_job_id", "task", ["job_id"])
    op.create_index("ix_task_parent_id", "task", ["parent_id"])
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_run_organization_id", "run", ["organization_id"])
    op.create_index("ix_run_status", "run", ["status"])
    op.create_index("ix_run_task_id", "run", ["task_id"])
    op.create_table(
        "payload_blob",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("run_id", "kind"),
    )
    op.create_index("ix_payload_blob_run_id", "payload_blob", ["run_id"])


def downgrade() -> None:
    for table in (
        "payload_blob",
        "run",
        "task",
        "node",
        "user",
        "collaboration_member",
        "collaboration",
        "organization",
    ):
        op.drop_table(table)
