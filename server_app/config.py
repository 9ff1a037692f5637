"""Server settings, declared once, and ``load_config``: defaults -> YAML -> ``V6NB_SERVER_*`` -> overrides."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.settings import Setting, resolve_settings

__all__ = ["PREFIX", "SETTINGS", "WORKER_CLASSES", "load_config", "sqlite_url"]

PREFIX = "server"

SETTINGS: list[Setting] = [
    Setting(
        "host",
        "127.0.0.1",
        "Address to listen on. Keep 127.0.0.1 unless a proxy sits in front.",
        str,
    ),
    Setting("port", 7601, "TCP port for the REST API and socket.io.", int),
    Setting(
        "data_dir",
        "v6nb-server-data",
        "Folder for the SQLite database, the token secret and the generated root password; "
        "relative paths are resolved against the configuration file's folder.",
        str,
    ),
    Setting(
        "database_url",
        "",
        "SQLAlchemy URL of the database; empty: a SQLite file `server.sqlite` in data_dir. "
        "Example: postgresql+psycopg2://v6:secret@127.0.0.1/v6.",
        str,
    ),
    Setting(
        "root_username", "root", "Name of the administrator account created on first start.", str
    ),
    Setting(
        "root_password",
        "",
        "Password of the root account; empty on first start: one is generated and written to "
        "data_dir/root_password.txt (mode 0600). When set, it is (re)applied at every start.",
        str,
    ),
    Setting(
        "secret_key",
        "",
        "Secret that signs tokens; empty: generated once and kept in data_dir/secret_key, "
        "so tokens survive a restart.",
        str,
    ),
    Setting("access_token_minutes", 60, "Lifetime of an access token, in minutes.", int),
    Setting("refresh_token_hours", 48, "Lifetime of a refresh token, in hours.", int),
    Setting(
        "container_token_hours",
        24,
        "Lifetime of a container token (an algorithm's token for subtasks), in hours.",
        int,
    ),
    Setting(
        "session_cache_s",
        1.0,
        "How long an instance trusts what it read about a user's sessions (session version, "
        "revoked sessions) and a container token's run, in seconds: a logout, password change or "
        "revocation on another instance takes effect within this time; 0 reads the database on "
        "every request.",
        float,
    ),
    Setting(
        "login_max_failures",
        5,
        "Failed logins (wrong password or two-factor code) after which an account is locked for "
        "login_lockout_s seconds.",
        int,
    ),
    Setting(
        "login_lockout_s",
        900,
        "How long an account stays locked after login_max_failures failed logins, in seconds.",
        int,
    ),
    Setting(
        "login_rate_per_minute",
        30,
        "Failed logins one client address may make per minute (per server instance); past that "
        "every login from it is answered 429 until the minute has passed.",
        int,
    ),
    Setting("max_body_mb", 256, "Largest request body accepted, in MiB (larger: 413).", int),
    Setting(
        "blob_dir",
        "blobs",
        "Folder for large run results, stored as files (ciphertext on encrypted collaborations); "
        "relative paths are resolved against data_dir.",
        str,
    ),
    Setting(
        "blob_threshold_kb",
        1024,
        "Results uploaded as binary (PUT /api/run/<id>/result) larger than this many KiB are kept "
        "as files in blob_dir and fetched with GET /api/run/<id>/result; smaller ones are stored "
        "in the database and inlined in the JSON as before.",
        int,
    ),
    Setting(
        "max_result_mb",
        2048,
        "Largest result accepted on the binary path (PUT /api/run/<id>/result), in MiB "
        "(larger: 413). JSON bodies stay limited by max_body_mb.",
        int,
    ),
    Setting(
        "worker_class",
        "gevent",
        "How the (single) server process serves connections: `gevent` (one greenlet per "
        "connection: thousands of idle websockets and slow clients cost almost nothing; see "
        "docs/operations.md) or `gthread` (a pool of `threads` threads; each open websocket "
        "holds one).",
        str,
    ),
    Setting(
        "threads",
        64,
        "Threads of the gunicorn gthread worker (worker_class gthread only); each open "
        "websocket holds one.",
        int,
    ),
    Setting(
        "max_connections",
        10000,
        "Connections one instance holds at once (open websockets, requests, idle keep-alive "
        "connections); past that new connections wait in the listen queue. Keep it under the "
        "process's open-file limit (`ulimit -n`).",
        int,
    ),
    Setting(
        "max_connections_per_address",
        500,
        "Connections one client address may hold open at once (worker_class gevent); past that "
        "a new connection from it is answered 503 and closed. 0: no bound. Behind a load "
        "balancer listed in trusted_proxies, the client's own address (from X-Forwarded-For) "
        "is bounded: its requests in progress and open websockets, per instance.",
        int,
    ),
    Setting(
        "trusted_proxies",
        [],
        "Addresses or networks (CIDR) of the load balancers or reverse proxies in front of this "
        "server, e.g. [127.0.0.1] or [10.0.0.5, 10.1.0.0/24]. From these peers only, the "
        "client's address is read from X-Forwarded-For (the right-most address that is not a "
        "trusted proxy) and used for the login limit, the audit log, the logs and "
        "max_connections_per_address; from any other peer the header is ignored. Empty: "
        "the header is never read. List only the proxies' own addresses, never clients'.",
        list,
    ),
    Setting(
        "header_timeout_s",
        10.0,
        "Time a new connection has to send its first complete request head, in seconds; a "
        "kept-alive connection has keepalive_s for its next one (idle time included). Slower "
        "connections are closed without an answer.",
        float,
    ),
    Setting(
        "keepalive_s",
        30.0,
        "How long an idle keep-alive connection stays open waiting for its next request, in "
        "seconds (clients such as the node reuse a connection only within 15 s).",
        float,
    ),
    Setting(
        "body_timeout_s",
        30.0,
        "Longest silence while a request body is read or a response written, in seconds "
        "(worker_class gevent): a body that stops arriving is answered 408 and the connection "
        "closed. Not applied to websockets (socket.io pings those).",
        float,
    ),
    Setting(
        "max_unauthenticated_body_kb",
        64,
        "Largest body, in KiB, of a request without a valid bearer token (logins, token "
        "refresh, password recovery); checked on the Content-Length before reading and while "
        "reading a chunked body (larger: 413).",
        int,
    ),
    Setting(
        "node_offline_s",
        10.0,
        "A node whose socket.io connection stops answering is marked offline within this many "
        "seconds (socket.io pings it every node_offline_s / 2 and waits as long for the "
        "answer); researchers' clients get the node_offline event then.",
        float,
    ),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING or ERROR.", str),
    Setting(
        "message_queue_url",
        "",
        "Empty: socket.io events stay in-process. Else an AMQP URL (RabbitMQ, through kombu) shared "
        "by several server instances, e.g. amqp://guest:guest@127.0.0.1:5672//.",
        str,
    ),
    Setting(
        "message_queue_channel",
        "vantage6nb",
        "Name of the RabbitMQ exchange the instances of one deployment share; give every "
        "deployment on the same RabbitMQ (and virtual host) its own, or events leak between them.",
        str,
    ),
]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
WORKER_CLASSES = ("gevent", "gthread")


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file.

    Examples
    --------
    >>> sqlite_url(Path("/tmp/x/server.sqlite"))
    'sqlite:////tmp/x/server.sqlite'
    """
    return f"sqlite:///{path}"


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve every server setting: defaults, then the YAML file, then the environment, then overrides.

    Parameters
    ----------
    path
        A YAML file with a mapping of setting names to values, or None.
    environ
        Where ``V6NB_SERVER_*`` variables are read; ``os.environ`` when None.
    overrides
        Values that win over everything (tests, command-line flags).

    Returns
    -------
    dict
        Every setting, with ``data_dir`` absolute and ``database_url`` filled in.

    Examples
    --------
    >>> cfg = load_config(None, environ={"V6NB_SERVER_PORT": "7700"}, overrides={"data_dir": "/tmp/d"})
    >>> cfg["port"], cfg["database_url"]
    (7700, 'sqlite:////tmp/d/server.sqlite')
    """
    file_values: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"Configuration file {p} does not exist. Create it or leave --config out.",
                errors={"config": "not found"},
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(
                f"Configuration file {p} is not valid YAML: {exc}",
                errors={"config": "invalid YAML"},
            ) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigurationError(
                f"Configuration file {p} must hold a mapping of setting names to values.",
                errors={"config": "expected a mapping"},
            )
        file_values = loaded
        base = p.resolve().parent
    cfg = resolve_settings(
        SETTINGS,
        prefix=PREFIX,
        file_values=file_values,
        environ=os.environ if environ is None else environ,
        overrides=overrides,
    )
    data_dir = Path(os.path.expanduser(str(cfg["data_dir"])))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    cfg["data_dir"] = str(data_dir)
    if not cfg["database_url"]:
        cfg["database_url"] = sqlite_url(data_dir / "server.sqlite")
    cfg["log_level"] = str(cfg["log_level"]).upper()
    cfg["worker_class"] = str(cfg["worker_class"]).lower()
    _check(cfg)
    return cfg


def _bad_networks(entries: list[Any]) -> list[str]:
    bad = []
    for entry in entries:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            bad.append(repr(entry))
    return bad


def _check(cfg: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    if not 0 < cfg["port"] < 65536:
        errors["port"] = "must be between 1 and 65535"
    for key in (
        "access_token_minutes",
        "refresh_token_hours",
        "container_token_hours",
        "max_body_mb",
        "threads",
        "login_max_failures",
        "login_lockout_s",
        "login_rate_per_minute",
    ):
        if cfg[key] < 1:
            errors[key] = "must be at least 1"
    if cfg["blob_threshold_kb"] < 0:
        errors["blob_threshold_kb"] = "must be at least 0"
    if cfg["max_result_mb"] < 1:
        errors["max_result_mb"] = "must be at least 1"
    if cfg["worker_class"] not in WORKER_CLASSES:
        errors["worker_class"] = f"must be one of {', '.join(WORKER_CLASSES)}"
    if cfg["max_connections"] < 1:
        errors["max_connections"] = "must be at least 1"
    if cfg["max_connections_per_address"] < 0:
        errors["max_connections_per_address"] = "must be at least 0 (0: no bound)"
    if bad := _bad_networks(cfg["trusted_proxies"]):
        errors["trusted_proxies"] = (
            f"not an IP address or network: {', '.join(bad)} (write e.g. 127.0.0.1 or 10.0.0.0/24)"
        )
    if cfg["max_unauthenticated_body_kb"] < 1:
        errors["max_unauthenticated_body_kb"] = "must be at least 1"
    for key in ("header_timeout_s", "keepalive_s", "body_timeout_s"):
        if cfg[key] <= 0:
            errors[key] = "must be more than 0"
    if cfg["node_offline_s"] < 2:
        errors["node_offline_s"] = "must be at least 2"
    if cfg["session_cache_s"] < 0:
        errors["session_cache_s"] = "must be at least 0"
    if cfg["log_level"] not in _LOG_LEVELS:
        errors["log_level"] = f"must be one of {', '.join(_LOG_LEVELS)}"
    if errors:
        raise ConfigurationError(
            "Invalid server configuration: fix the settings listed in 'errors'.", errors=errors
        )
