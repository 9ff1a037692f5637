"""Two-factor codes are single-use: the time step of the last accepted code.

Revision ID: 0004
Revises: 0003

- ``user``: ``totp_last_step`` (the 30-second step of the last two-factor code a login accepted;
  a code of that step or an earlier one is refused, so a code seen over a shoulder or in a log
  cannot be replayed within its window).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user") as b:
        b.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user") as b:
        b.drop_column("totp_last_step")
