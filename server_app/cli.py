"""``v6nb server start|import|db``: serve the app with gunicorn (gevent or gthread), load entities from YAML, or
see and upgrade the database schema."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from typing import Any

from vantage6nb.common.errors import ConfigurationError, V6Error

from .config import load_config

__all__ = ["main", "serve"]

log = logging.getLogger("server_app")


def serve(cfg: dict[str, Any]) -> int:
    """Serve ``create_app(cfg)`` with gunicorn: 1 worker (socket.io state is in-process).

    ``worker_class`` gevent: one greenlet per connection, so idle websockets and slow clients
    cost almost nothing, with the limits of server_app.serving; gthread: ``threads`` threads, each
    open websocket holding one. See docs/operations.md.

    Examples
    --------
    >>> serve(load_config("server.yaml"))  # doctest: +SKIP
    """
    from .serving import serve_app

    _check_port_free(cfg["host"], int(cfg["port"]))
    try:
        serve_app(cfg, f"vantage6nb server listening on http://{cfg['host']}:{cfg['port']}")
    except SystemExit as exc:  # gunicorn exits through sys.exit on SIGTERM/SIGINT
        return int(exc.code or 0)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse with a clear message when ``host:port`` is taken (gunicorn would retry, then die)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"Cannot listen on {host}:{port}: the port is in use (another server?). "
                    "Stop it, or pick another port with --port or `port:` in server.yaml.",
                    errors={"port": "in use"},
                ) from exc
            raise ConfigurationError(
                f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Check `host` "
                "(an address of this machine, e.g. 127.0.0.1) and `port` in server.yaml.",
                errors={"host": "cannot bind"},
            ) from exc


def _import(cfg: dict[str, Any], entities_path: str) -> int:
    from .entities_import import import_entities

    created = 0
    for line in import_entities(cfg, entities_path):
        print(line)
        created += 1
    if not created:
        print(f"nothing to create: everything in {entities_path} already exists (names are kept)")
    return 0


def _db(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from . import migrations
    from .bootstrap import prepare_data_dir
    from .db import make_engine

    url = make_url(cfg["database_url"])
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if args.db_command == "upgrade":
            prepare_data_dir(cfg)
        elif not Path(url.database).exists():
            raise ConfigurationError(
                f"No database at {url.database} yet: the server creates it when it starts "
                "(`v6nb server start`), or `v6nb server db upgrade` does. Check `data_dir` and "
                "`database_url` in the configuration if you expected one there.",
            )
    engine = make_engine(cfg["database_url"])
    try:
        if args.db_command == "current":
            print(migrations.state(engine).describe())
        elif args.db_command == "upgrade":
            before, after = migrations.upgrade(engine)
            if before.revision == after.revision:
                print(f"already at revision {after.revision} (head): nothing to do")
            else:
                was = "an empty database" if before.empty else f"revision {before.revision}"
                if before.legacy:
                    was = f"a database from before migrations (stamped {migrations.FIRST})"
                print(f"upgraded {was} to revision {after.revision} (head)")
        else:
            migrations.rename_user(engine, args.old, args.new)
            print(f"renamed user {args.old!r} to {args.new!r}")
    except SQLAlchemyError as exc:
        why = str(getattr(exc, "orig", None) or exc).strip()
        raise ConfigurationError(
            f"Cannot use the database at {where}: {why}. Check "
            "`database_url` in the configuration, and that the database server runs.",
        ) from exc
    finally:
        engine.dispose()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="v6nb server", description="Run and manage a vantage6nb server."
    )
    sub = p.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="serve the REST API and socket.io (gunicorn, one process)")
    start.add_argument("--config", help="YAML configuration file (see docs/configuration.md)")
    start.add_argument("--host", help="override the 'host' setting")
    start.add_argument("--port", type=int, help="override the 'port' setting")
    start.add_argument("--data-dir", help="override the 'data_dir' setting")
    imp = sub.add_parser(
        "import", help="create organizations, collaborations, users and nodes from YAML"
    )
    imp.add_argument("--config", help="YAML configuration file of the server")
    imp.add_argument("entities", help="YAML file with organizations, collaborations, users, nodes")
    db = sub.add_parser(
        "db", help="the database schema: where it stands, upgrade it (the server does on start)"
    )
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, what in (
        ("current", "print the schema revision of the database and whether it is up to date"),
        ("upgrade", "upgrade the database to this release's schema (head), as a start does"),
    ):
        db_sub.add_parser(name, help=what).add_argument(
            "--config", help="YAML configuration file of the server"
        )
    rename = db_sub.add_parser(
        "rename-user",
        help="rename a user in the database, at any schema revision (e.g. before an upgrade "
        "that refuses two usernames that differ only by case)",
    )
    rename.add_argument("--config", help="YAML configuration file of the server")
    rename.add_argument("old", help="the current username, exactly (case included)")
    rename.add_argument("new", help="the new username")
    lb = sub.add_parser(
        "haproxy-config",
        help="print an HAProxy configuration for instances behind one address (docs/operations.md)",
    )
    lb.add_argument("--bind", required=True, help="where the balancer listens, host:port")
    lb.add_argument("instances", nargs="+", help="the server instances, host:port each")
    lb.add_argument(
        "--max-per-address",
        type=int,
        default=500,
        help="connections one client address may hold at the balancer (0: no bound)",
    )
    lb.add_argument("--check-interval-ms", type=int, default=1000, help="health check interval")
    lb.add_argument("--stats", default="", help="host:port for HAProxy's statistics page")
    return p


def _haproxy(args: argparse.Namespace) -> int:
    from .haproxy import haproxy_config

    print(
        haproxy_config(
            args.bind,
            args.instances,
            max_per_address=args.max_per_address,
            check_interval_ms=args.check_interval_ms,
            stats=args.stats,
        ),
        end="",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``v6nb server``; returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "haproxy-config":  # needs no server configuration
        return _haproxy(args)
    overrides = {
        k: v
        for k, v in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "data_dir": getattr(args, "data_dir", None),
        }.items()
        if v is not None
    }
    try:
        cfg = load_config(args.config, overrides=overrides)
        logging.basicConfig(
            level=cfg["log_level"],
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if args.command == "start":
            return serve(cfg)
        if args.command == "db":
            return _db(cfg, args)
        return _import(cfg, args.entities)
    except V6Error as exc:
        print(f"v6nb server: {exc}", file=sys.stderr)
        return 2
