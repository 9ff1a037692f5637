"""Revocable sessions, hardened login and the server audit log.

Revision ID: 0002
Revises: 0001

- ``user``: ``username_key`` (the username casefolded, unique: usernames are unique regardless of
  case), ``session_version``, ``failed_logins``, ``locked_until``, ``totp_secret``;
- ``organization``: ``require_totp``;
- new tables ``refresh_token`` and ``audit_event``.

``username_key`` is filled from the usernames; when two differ only by case the upgrade stops
before changing anything (:class:`~server_app.migrations.UsernameCaseClash` names them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

from server_app.migrations import UsernameCaseClash

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_IDS_NEVER_REUSED = {"sqlite_autoincrement": True}  # SQLite AUTOINCREMENT, kept when rebuilt


def upgrade() -> None:
    keys = _username_keys()  # refuses first, before any change

    with op.batch_alter_table("organization") as b:
        b.add_column(
            sa.Column("require_totp", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("user") as b:
        b.add_column(sa.Column("username_key", sa.String(255), nullable=True))
        b.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("locked_until", sa.DateTime(), nullable=True))
        b.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))

    if keys:
        user = sa.table(
            "user", sa.column("id", sa.Integer()), sa.column("username_key", sa.String())
        )
        op.get_bind().execute(
            user.update()
            .where(user.c.id == sa.bindparam("uid"))
            .values(username_key=sa.bindparam("key")),
            [{"uid": uid, "key": key} for uid, key in keys.items()],
        )

    # The defaults above only filled the existing rows; the models set these values themselves.
    # SQLite rebuilds both tables here (batch mode): ids stay, and so does the AUTOINCREMENT high mark.
    with (
        _sqlite_sequence_kept("organization"),
        op.batch_alter_table("organization", table_kwargs=_IDS_NEVER_REUSED) as b,
    ):
        b.alter_column("require_totp", existing_type=sa.Boolean(), server_default=None)
    with (
        _sqlite_sequence_kept("user"),
        op.batch_alter_table("user", table_kwargs=_IDS_NEVER_REUSED) as b,
    ):
        b.alter_column("username_key", existing_type=sa.String(255), nullable=False)
        b.alter_column("session_version", existing_type=sa.Integer(), server_default=None)
        b.alter_column("failed_logins", existing_type=sa.Integer(), server_default=None)
        # the name PostgreSQL gives the unnamed constraint of a new database (models: unique=True)
        b.create_unique_constraint("user_username_key_key", ["username_key"])

    op.create_table(
        "refresh_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("jti"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_refresh_token_family", "refresh_token", ["family"])
    op.create_index("ix_refresh_token_user_id", "refresh_token", ["user_id"])
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_org_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **_IDS_NEVER_REUSED,
    )
    op.create_index("ix_audit_event_action", "audit_event", ["action"])
    op.create_index("ix_audit_event_time", "audit_event", ["time"])


def downgrade() -> None:
    op.drop_table("audit_event")
    op.drop_table("refresh_token")
    with (
        _sqlite_sequence_kept("user"),
        op.batch_alter_table("user", table_kwargs=_IDS_NEVER_REUSED) as b,
    ):
        b.drop_constraint("user_username_key_key", type_="unique")
        for column in (
            "totp_secret",
            "locked_until",
            "failed_logins",
            "session_version",
            "username_key",
        ):
            b.drop_column(column)
    with (
        _sqlite_sequence_kept("organization"),
        op.batch_alter_table("organization", table_kwargs=_IDS_NEVER_REUSED) as b,
    ):
        b.drop_column("require_totp")


def _username_keys() -> dict[int, str]:
    """User id -> username casefolded (``server_app.models.username_key``); refuses case clashes."""
    user = sa.table("user", sa.column("id", sa.Integer()), sa.column("username", sa.String()))
    rows = op.get_bind().execute(sa.select(user.c.id, user.c.username).order_by(user.c.id)).all()
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for uid, name in rows:
        groups[name.casefold()].append((uid, name))
    clashes = [group for group in groups.values() if len(group) > 1]
    if clashes:
        names = "; ".join(" and ".join(f"{name!r} (id {uid})" for uid, name in g) for g in clashes)
        first_uid, first_name = clashes[0][-1]
        new_name = f"{first_name}-{first_uid}"
        sql_name = new_name.replace("'", "''")
        raise UsernameCaseClash(
            "Cannot upgrade the database: from this release on usernames are unique regardless "
            f"of case, and these differ only by case: {names}. Rename all but one of each "
            f"group, e.g. `v6nb server db rename-user {first_name!r} {new_name!r} "
            "--config server.yaml`, or in SQL: "
            f"UPDATE \"user\" SET username = '{sql_name}' WHERE id = {first_uid}; "
            "then start the server again. Nothing was changed.",
            errors={"usernames": [[name for _uid, name in g] for g in clashes]},
        )
    return {uid: key for key, group in groups.items() for uid, _name in group}


@contextmanager
def _sqlite_sequence_kept(table: str) -> Iterator[None]:
    """Keep ``table``'s AUTOINCREMENT high mark across a SQLite rebuild (a deleted top id stays
    unused); elsewhere nothing."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    seq = sa.table(
        "sqlite_sequence", sa.column("name", sa.String()), sa.column("seq", sa.Integer())
    )
    before = bind.execute(sa.select(seq.c.seq).where(seq.c.name == table)).scalar()
    yield
    if before is None:
        return
    after = bind.execute(sa.select(seq.c.seq).where(seq.c.name == table)).scalar()
    if after is None:
        bind.execute(seq.insert().values(name=table, seq=before))
    elif after < before:
        bind.execute(seq.update().where(seq.c.name == table).values(seq=before))
