"""Schema migrations, on SQLite and PostgreSQL.

- the revisions build exactly the models' schema (Alembic's ``compare_metadata`` finds nothing),
  and so does the start on an empty database;
- a database of the release before migrations (revision 0001, with or without ``alembic_version``)
  holding rows in every table is upgraded by a real server start, which then finds every row
  through the API, logs in the old users with their passwords and keeps ids unused;
- two usernames that differ only by case stop the upgrade: the server refuses to start, naming
  them and saying what to do; after ``v6nb server db rename-user`` it starts;
- instances upgrading one database at the same moment take turns.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from werkzeug.security import generate_password_hash

from server_app import migrations
from server_app.db import make_engine
from server_app.models import Base
from server_app.tokens import hash_api_key
from tests.support import PG_URL, ServerProcess, fresh_database, require_postgres
from tests.support.processes import REPO

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, 9, 30)
PASSWORDS = {
    "root": "old-root-password-1",
    "alice": "alice-old-password",
    "bob": "bob-old-password",
}
NODE_KEYS = {"Leiden": "leiden-node-api-key-0001", "Utrecht": "utrecht-node-api-key-0001"}
BLOB = b'{"big": "' + b"x" * 5000 + b'"}'


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.sqlite'}"
        return
    require_postgres()
    with fresh_database(PG_URL) as url:
        yield url


@contextmanager
def _engine(url: str) -> Iterator[sa.engine.Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.engine.Engine]:
    with _engine(db_url) as e:
        yield e


def _to_revision(engine: sa.engine.Engine, revision: str) -> None:
    """Run the revisions up to ``revision`` (not the create-and-stamp of an empty database)."""
    with engine.connect() as conn:
        command.upgrade(migrations.alembic_config(conn), revision)
        conn.commit()


def _differences(engine: sa.engine.Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, Base.metadata))


def _revision(engine: sa.engine.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _forget_alembic(engine: sa.engine.Engine) -> None:
    """What the release before migrations left: its tables, no ``alembic_version``."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))


# -- the schema -------------------------------------------------------------------------------


def test_revisions_build_the_models_schema(engine: sa.engine.Engine) -> None:
    _to_revision(engine, "head")
    assert _differences(engine) == []
    assert _revision(engine) == migrations.head()


def test_start_on_an_empty_database_is_at_head(engine: sa.engine.Engine) -> None:
    before, after = migrations.upgrade(engine)
    assert before.empty and after.current and after.revision == migrations.head()
    assert _differences(engine) == []
    again = migrations.upgrade(engine)
    assert again[0] == again[1] == after  # nothing left to do


def test_a_database_without_alembic_version_is_stamped_then_upgraded(
    engine: sa.engine.Engine,
) -> None:
    _to_revision(engine, migrations.FIRST)
    _forget_alembic(engine)
    assert migrations.state(engine).legacy
    before, after = migrations.upgrade(engine)
    assert before.legacy and before.revision is None
    assert after.revision == migrations.head()
    assert _differences(engine) == []


def test_instances_upgrading_together_take_turns(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(3)]
    try:
        _to_revision(engines[0], migrations.FIRST)
        _forget_alembic(engines[0])
        start = threading.Barrier(len(engines))
        outcomes: list[Any] = []

        def upgrade(engine: sa.engine.Engine) -> None:
            start.wait(30)
            try:
                outcomes.append(migrations.upgrade(engine))
            except Exception as exc:  # recorded, asserted below
                outcomes.append(exc)

        threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "an upgrade hangs"
        assert all(isinstance(o, tuple) for o in outcomes), outcomes
        assert sum(1 for before, _after in outcomes if before.legacy) == 1  # one did the work
        assert {after.revision for _before, after in outcomes} == {migrations.head()}
        assert _differences(engines[0]) == []
    finally:
        for e in engines:
            e.dispose()


def test_an_unknown_revision_is_refused(engine: sa.engine.Engine) -> None:
    _to_revision(engine, "head")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrations.UnknownRevision, match="9999.*newer vantage6nb"):
        migrations.upgrade(engine)


# -- a database of the release before migrations ----------------------------------------------


def _t(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, sa.JSON() if c == "databases" else None) for c in columns))


def _fill_release_database(engine: sa.engine.Engine, blob_dir: Path) -> dict[str, Any]:
    """Rows in every table of revision 0001, as that release wrote them (plain SQL: the models
    are ahead); returns the ids."""
    org = _t("organization", "id", "name", "domain", "public_key", "key_fingerprint")
    collab = _t("collaboration", "id", "name", "encrypted")
    member = _t("collaboration_member", "collaboration_id", "organization_id")
    user = _t("user", "id", "username", "password_hash", "organization_id", "is_admin", "email")
    node = _t(
        "node",
        "id",
        "name",
        "organization_id",
        "collaboration_id",
        "api_key_hash",
        "status",
        "last_seen",
    )
    task = _t(
        "task",
        "id",
        "uid",
        "name",
        "description",
        "collaboration_id",
        "image",
        "method",
        "init_org_id",
        "init_user_id",
        "parent_id",
        "job_id",
        "databases",
        "created_at",
    )
    run = _t(
        "run",
        "id",
        "task_id",
        "organization_id",
        "status",
        "input",
        "result",
        "log",
        "reason",
        "assigned_at",
        "started_at",
        "finished_at",
    )
    blob = _t("payload_blob", "id", "run_id", "kind", "name", "size", "sealed", "created_at")

    def hashed(pw: str) -> str:
        return generate_password_hash(pw, method="scrypt:16384:8:1")  # that release's hash

    with engine.begin() as conn:
        for oid, name, domain, key, fingerprint in (
            (1, "root", None, None, None),
            (2, "Leiden", "leiden.example", "cHVi", None),
            (3, "Utrecht", None, None, "ab:cd"),
        ):
            conn.execute(
                org.insert().values(
                    id=oid, name=name, domain=domain, public_key=key, key_fingerprint=fingerprint
                )
            )
        conn.execute(collab.insert(), [{"id": 1, "name": "study", "encrypted": False}])
        conn.execute(
            member.insert(),
            [
                {"collaboration_id": 1, "organization_id": 2},
                {"collaboration_id": 1, "organization_id": 3},
            ],
        )
        for row in (
            {"id": 1, "username": "root", "organization_id": 1, "is_admin": True, "email": None},
            {
                "id": 2,
                "username": "alice",
                "organization_id": 2,
                "is_admin": True,
                "email": "a@l.example",
            },
            {"id": 3, "username": "bob", "organization_id": 3, "is_admin": False, "email": None},
            {"id": 4, "username": "gone", "organization_id": 3, "is_admin": False, "email": None},
        ):
            pw = PASSWORDS.get(row["username"], "gone-old-password")
            conn.execute(user.insert().values(password_hash=hashed(pw), **row))
        conn.execute(user.delete().where(user.c.id == 4))  # its id stays used
        for nid, (name, oid) in enumerate((("Leiden", 2), ("Utrecht", 3)), start=1):
            conn.execute(
                node.insert().values(
                    id=nid,
                    name=f"{name} node",
                    organization_id=oid,
                    collaboration_id=1,
                    api_key_hash=hash_api_key(NODE_KEYS[name]),
                    status="online",  # as a crash left it: the start marks it offline
                    last_seen=T0,
                )
            )
        for tid, parent, name in ((1, None, "average"), (2, 1, "average, part")):
            conn.execute(
                task.insert().values(
                    id=tid,
                    uid=f"uid-{tid}",
                    name=name,
                    description="from the old release",
                    collaboration_id=1,
                    image="v6nb/average:1",
                    method="central" if parent is None else "partial",
                    init_org_id=2,
                    init_user_id=2,
                    parent_id=parent,
                    job_id=1,
                    databases=[{"label": "default"}],
                    created_at=T0,
                )
            )
        finished = {
            "assigned_at": T0,
            "started_at": T0,
            "finished_at": T0 + dt.timedelta(seconds=3),
        }
        conn.execute(
            run.insert().values(
                id=1,
                task_id=1,
                organization_id=2,
                status="completed",
                input='{"method": "central"}',
                result='{"mean": 4.5}',
                log="done",
                reason=None,
                **finished,
            )
        )
        conn.execute(
            run.insert().values(
                id=2,
                task_id=1,
                organization_id=3,
                status="completed",
                input='{"method": "central"}',
                result=None,
                log="big result",
                reason=None,
                **finished,
            )
        )
        conn.execute(
            run.insert().values(
                id=3,
                task_id=2,
                organization_id=3,
                status="pending",
                input='{"method": "partial"}',
                result=None,
                log=None,
                reason=None,
                assigned_at=None,
                started_at=None,
                finished_at=None,
            )
        )
        blob_dir.mkdir(parents=True, exist_ok=True)
        (blob_dir / "run-2-0123456789abcdef.blob").write_bytes(BLOB)
        conn.execute(
            blob.insert().values(
                id=1,
                run_id=2,
                kind="result",
                name="run-2-0123456789abcdef.blob",
                size=len(BLOB),
                sealed=False,
                created_at=T0,
            )
        )
        if conn.dialect.name == "postgresql":  # rows came with their ids: move the sequences on
            for table in ("organization", "collaboration", "user", "node", "task", "run"):
                top = 4 if table == "user" else f'(SELECT max(id) FROM "{table}")'
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), {top})")
                )
    return {"orgs": {"root": 1, "Leiden": 2, "Utrecht": 3}, "collab": 1, "tasks": (1, 2)}


def _server(tmp_path: Path, db_url: str) -> ServerProcess:
    # no root_password: the old root keeps its own
    return ServerProcess(
        tmp_path / "srv", {"database_url": db_url, "blob_dir": str(tmp_path / "blobs")}
    )


@pytest.mark.parametrize("stamped", [True, False], ids=["at-0001", "no-alembic_version"])
def test_server_start_upgrades_a_release_database_and_finds_every_row(
    db_url: str, tmp_path: Path, stamped: bool
) -> None:
    with _engine(db_url) as engine:
        _to_revision(engine, migrations.FIRST)
        if not stamped:
            _forget_alembic(engine)
        ids = _fill_release_database(engine, tmp_path / "blobs")

    with _server(tmp_path, db_url) as srv:
        root = srv.login("root", PASSWORDS["root"])
        alice = srv.login("alice", PASSWORDS["alice"])
        bob = srv.login("bob", PASSWORDS["bob"])

        orgs = {o["name"]: o for o in srv.ok("GET", "/api/organization", root)["data"]}
        assert {n: o["id"] for n, o in orgs.items()} == ids["orgs"]
        assert (
            orgs["Leiden"]["domain"] == "leiden.example" and orgs["Leiden"]["public_key"] == "cHVi"
        )
        assert orgs["Utrecht"]["key_fingerprint"] == "ab:cd"

        collabs = srv.ok("GET", "/api/collaboration", root)["data"]
        assert [(c["name"], c["encrypted"], c["organization_ids"]) for c in collabs] == [
            ("study", False, [2, 3])
        ]

        users = {u["username"]: u for u in srv.ok("GET", "/api/user", root)["data"]}
        assert set(users) == {"root", "alice", "bob"}
        assert (
            users["root"]["is_admin"]
            and users["alice"]["is_admin"]
            and not users["bob"]["is_admin"]
        )
        assert users["alice"]["email"] == "a@l.example" and users["alice"]["organization_id"] == 2
        assert srv.ok("GET", "/api/user/me", bob)["username"] == "bob"

        nodes = {n["name"]: n for n in srv.ok("GET", "/api/node", root)["data"]}
        assert set(nodes) == {"Leiden node", "Utrecht node"}
        assert {n["status"] for n in nodes.values()} == {"offline"}
        for key in NODE_KEYS.values():
            assert srv.ok("POST", "/api/token/node", json={"api_key": key})["access_token"]

        tasks = {t["id"]: t for t in srv.ok("GET", "/api/task", alice)["data"]}
        assert set(tasks) == set(ids["tasks"])
        assert tasks[2]["parent_id"] == 1 and tasks[1]["init_user_id"] == 2
        assert tasks[1]["databases"] == [{"label": "default"}]
        runs = srv.ok("GET", "/api/run", alice, params={"task_id": 1})["data"]
        assert [(r["id"], r["organization_id"], r["status"]) for r in runs] == [
            (1, 2, "completed"),
            (2, 3, "completed"),
        ]
        child = srv.ok("GET", "/api/run", bob, params={"task_id": 2})["data"]
        assert [(r["id"], r["status"]) for r in child] == [(3, "pending")]

        results = {
            r["run_id"]: r
            for r in srv.ok("GET", "/api/result", alice, params={"task_id": 1})["data"]
        }
        assert results[1]["result"] == '{"mean": 4.5}' and results[1]["result_ref"] is None
        assert results[2]["result_ref"] == "/api/run/2/result" and results[2]["result_size"] == len(
            BLOB
        )
        stored = srv.request("GET", "/api/run/2/result", alice)
        assert stored.status_code == 200 and stored.content == BLOB

        # ids stay unused after the rebuild of a table: the deleted user 4 is not handed out again
        new = srv.ok(
            "POST",
            "/api/user",
            root,
            json={"username": "carol", "password": "Carol-new-password-7", "organization_id": 3},
        )
        assert new["id"] > 4

    with _engine(db_url) as engine:
        assert _revision(engine) == migrations.head()
        assert _differences(engine) == []
        with engine.connect() as conn:
            keys = dict(conn.execute(sa.text('SELECT username, username_key FROM "user"')).all())
        assert keys["alice"] == "alice" and keys["carol"] == "carol"


def test_usernames_that_differ_only_by_case_stop_the_start(db_url: str, tmp_path: Path) -> None:
    with _engine(db_url) as engine:
        _to_revision(engine, migrations.FIRST)
        _forget_alembic(engine)  # as the release left it
        _fill_release_database(engine, tmp_path / "blobs")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    'INSERT INTO "user" (id, username, password_hash, organization_id, is_admin) '
                    "VALUES (7, 'Alice', 'x', 2, false)"
                )
            )

    srv = _server(tmp_path, db_url)
    with pytest.raises(AssertionError, match="exited"):
        srv.start()
    out = srv.output()
    assert srv.returncode not in (None, 0)
    assert "'alice' (id 2) and 'Alice' (id 7)" in out
    assert "v6nb server db rename-user 'Alice' 'Alice-7' --config server.yaml" in out
    assert "UPDATE \"user\" SET username = 'Alice-7' WHERE id = 7" in out

    with _engine(db_url) as engine:  # nothing changed
        assert migrations.state(engine).legacy
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("user")}
        assert "username_key" not in columns

    cli = [sys.executable, "-m", "server_app", "db"]
    config = ["--config", str(srv.config_path)]
    renamed = subprocess.run(
        [*cli, "rename-user", *config, "Alice", "Alice-7"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert renamed.returncode == 0, renamed.stderr
    current = subprocess.run(
        [*cli, "current", *config], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert current.returncode == 0 and "before migrations" in current.stdout, current.stderr

    srv.start()
    try:
        srv.login("alice", PASSWORDS["alice"])
        names = {
            u["username"]
            for u in srv.ok("GET", "/api/user", srv.login("root", PASSWORDS["root"]))["data"]
        }
        assert {"alice", "Alice-7"} <= names
    finally:
        srv.stop()


def test_db_commands(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "database_url": db_url}))

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server_app", "db", *args, "--config", str(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    with _engine(db_url) as engine:
        _to_revision(engine, migrations.FIRST)
    first = db("current")
    assert first.returncode == 0, first.stderr
    assert f"at revision {migrations.FIRST}" in first.stdout and "db upgrade" in first.stdout
    up = db("upgrade")
    assert up.returncode == 0, up.stderr
    assert f"revision {migrations.FIRST} to revision {migrations.head()}" in up.stdout
    assert "nothing to do" in db("upgrade").stdout
    assert "up to date" in db("current").stdout
    with _engine(db_url) as engine:
        assert _differences(engine) == []
