"""Schema migrations (Alembic, scripts in ``versions/``): bring any database of this server to head.

The server calls :func:`upgrade` when it starts (``Database.init_app``); ``v6nb server db
upgrade|current`` does the same by hand (docs/operations.md, "Database migrations"). No
``alembic.ini``: the configuration is built here, the scripts ship inside the package.

- an empty database gets the tables of ``server_app.models`` and is stamped head (a test checks that
  the revisions build the same schema);
- a database made by a release before migrations (``create_all``: tables, no ``alembic_version``)
  is stamped 0001, that release's schema, and upgraded;
- otherwise every revision after the stamped one runs, in one transaction under a lock
  (PostgreSQL: an advisory lock, so instances starting together take turns; SQLite: ``BEGIN
  IMMEDIATE``, with foreign keys off while tables are rebuilt, and a refusal when that broke a
  reference).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Alembic's INFO lines (its plugins, on import; its dialect, on every run) are noise in the
# server's log: the server logs each upgrade itself ("database schema 0001 -> 0002").
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import inspect, text  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

from vantage6nb.common.errors import ConfigurationError  # noqa: E402

from ..models import Base  # noqa: E402

__all__ = [
    "FIRST",
    "SchemaState",
    "UnknownRevision",
    "UpgradeFailed",
    "UsernameCaseClash",
    "alembic_config",
    "head",
    "rename_user",
    "state",
    "upgrade",
]

FIRST = "0001"  # the schema of the release before migrations
MIGRATIONS_DIR = Path(__file__).resolve().parent
# Tables of revision 0001: one of them without an alembic_version marks a pre-migration database.
FIRST_TABLES = frozenset(
    {
        "organization",
        "collaboration",
        "collaboration_member",
        "user",
        "node",
        "task",
        "run",
        "payload_blob",
    }
)
_PG_LOCK = 7601760176  # the advisory lock instances take turns on (as create_all did)


class UpgradeFailed(ConfigurationError):
    """The database cannot be brought to this release's schema; the message says what to do."""

    code = "upgrade_failed"


class UsernameCaseClash(UpgradeFailed):
    """Revision 0002 makes usernames unique regardless of case; some differ only by case."""

    code = "username_case_clash"


class UnknownRevision(UpgradeFailed):
    """The database is at a revision this release does not have (a newer release upgraded it)."""

    code = "unknown_revision"


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: ``revision`` (None: no ``alembic_version``), ``head`` of this
    release, and ``legacy`` (tables of a release before migrations, not stamped yet)."""

    revision: str | None
    head: str
    legacy: bool = False
    empty: bool = False

    @property
    def current(self) -> bool:
        return self.revision == self.head

    def describe(self) -> str:
        """One line for an operator."""
        if self.empty:
            return f"empty database: the server creates the schema ({self.head}) when it starts"
        if self.legacy:
            return (
                f"schema of a release before migrations (no alembic_version): it is stamped "
                f"{FIRST} and upgraded to {self.head} on start or by `v6nb server db upgrade`"
            )
        if self.current:
            return f"at revision {self.revision} (head: up to date)"
        return (
            f"at revision {self.revision}; this release's head is {self.head}: the server "
            "upgrades on start, or run `v6nb server db upgrade --config server.yaml`"
        )


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration: the scripts in this package, run on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision of this release.

    Examples
    --------
    >>> head()
    '0005'
    """
    rev = _scripts().get_current_head()
    assert rev is not None
    return rev


def state(engine: Engine) -> SchemaState:
    """Where ``engine``'s database stands (reads only)."""
    with engine.connect() as conn:
        return _state(conn)


def upgrade(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """Bring ``engine``'s database to head (see the module); the state before and after.

    Raises :class:`UpgradeFailed` (nothing changed then) when it cannot.
    """
    with engine.connect() as conn, _locked(conn):
        before = _state(conn)
        cfg = alembic_config(conn)
        if before.empty:
            Base.metadata.create_all(conn)
            command.stamp(cfg, "head")
        elif not before.current:
            broken = _broken_references(conn)
            if before.legacy:
                command.stamp(cfg, FIRST)
            command.upgrade(cfg, "head")
            _refuse_new_broken_references(conn, broken)
        after = _state(conn)
    return before, after


def rename_user(engine: Engine, old: str, new: str) -> None:
    """Rename user ``old`` (exact name) to ``new``, at any revision (plain SQL: the models may be
    ahead of the database); refuses a name that equals another one regardless of case."""
    with engine.connect() as conn, _locked(conn):
        columns = {c["name"] for c in inspect(conn).get_columns("user")}
        rows = conn.execute(text('SELECT id, username FROM "user"')).all()
        ids = [uid for uid, name in rows if name == old]
        if not ids:
            raise ConfigurationError(
                f"No user is called {old!r} (names are exact here, case included). "
                'List them with SQL: SELECT id, username FROM "user";'
            )
        taken = [name for uid, name in rows if uid != ids[0] and name.casefold() == new.casefold()]
        if taken or not new.strip():
            raise ConfigurationError(
                f"Cannot rename {old!r} to {new!r}: "
                + (
                    f"{taken[0]!r} exists (usernames are unique regardless of case)."
                    if taken
                    else "the name is empty."
                )
                + " Pick another name."
            )
        values: dict[str, Any] = {"name": new, "id": ids[0]}
        sets = "username = :name"
        if "username_key" in columns:
            sets += ", username_key = :key"
            values["key"] = new.casefold()
        conn.execute(text(f'UPDATE "user" SET {sets} WHERE id = :id'), values)


def _state(conn: Connection) -> SchemaState:
    tables = set(inspect(conn).get_table_names())
    top = head()
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        ours = tables & FIRST_TABLES
        return SchemaState(None, top, legacy=bool(ours), empty=not ours)
    known = {script.revision for script in _scripts().walk_revisions()}
    if revision not in known:
        raise UnknownRevision(
            f"The database is at schema revision {revision}, which this release does not know "
            f"(its newest is {top}): a newer vantage6nb upgraded it. Run that release again, or "
            "restore the backup taken before the upgrade."
        )
    return SchemaState(revision, top)


def _broken_references(conn: Connection) -> set[tuple[Any, ...]]:
    """SQLite: the rows whose foreign key points at nothing, as (table, rowid, parent table)."""
    if conn.dialect.name != "sqlite":
        return set()
    return {tuple(row[:3]) for row in conn.exec_driver_sql("PRAGMA foreign_key_check")}


def _refuse_new_broken_references(conn: Connection, before: set[tuple[Any, ...]]) -> None:
    """Foreign keys are off while SQLite rebuilds tables: refuse a result that broke a reference."""
    new = sorted(_broken_references(conn) - before, key=repr)
    if new:
        raise UpgradeFailed(
            f"The upgrade would leave {len(new)} row(s) pointing at rows that do not exist (first: "
            f"table {new[0][0]}, row {new[0][1]}, referring to {new[0][2]}); nothing was changed. "
            "Keep the database file and report this as a bug of the migration."
        )


@contextmanager
def _locked(conn: Connection) -> Iterator[None]:
    """One transaction, alone: committed when the block ends, rolled back when it raises."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # Rebuilding a table (batch mode) drops it: with foreign keys on, that would cascade into
        # the rows that point at it. The pragma only takes effect outside a transaction.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one writer; DDL inside it is transactional
    elif dialect == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
