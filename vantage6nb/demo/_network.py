"""``start()`` and ``DemoNetwork``: a real server and real nodes on loopback, set up and torn down in one call."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..algorithms import IMAGES
from ..common.errors import ConfigurationError, NotFound
from ._docker import docker_node_settings
from ._podman import podman_node_settings
from ._processes import ManagedProcess, forget_at_exit, free_port, stop_at_exit, wait_until
from ._setup import AdminSession, organization_names, split_dataset

__all__ = ["DemoNetwork", "start"]

RUNTIMES = ("process", "docker", "podman")
STARTUP_TIMEOUT_S = 90.0
COLUMNS_TIMEOUT_S = 15.0  # a report that does not come within this is not waited for
RESEARCHER = "researcher"
# a demo network on one machine: each process-runtime node is about 75-130 MiB (BENCHMARKS.md)
MAX_NODES = 200


@dataclass
class _Node:
    organization: str
    organization_id: int
    node_id: int
    config: Path
    process: ManagedProcess


@dataclass
class DemoNetwork:
    """Handle on a running demo network; see :func:`start`.

    Attributes
    ----------
    url : str
        The server's base URL (``http://127.0.0.1:<port>``).
    datasets : dict
        Organization name -> path (or URL) of that node's ``default`` database (else its first).
    databases : dict
        Organization name -> ``{label: path or URL}`` of every database of that node.
    credentials : dict
        ``{"username", "password"}`` of the researcher (in the first organization), and
        ``root_username``/``root_password`` of the administrator.
    server_db_url : str
        SQLAlchemy URL of the server's database (tests read it to see what the server stores).
    researcher_key : pathlib.Path or None
        With ``encrypted=True``: the private key file of the researcher's organization (the same
        key as that organization's node, ``nodes/<org>/private.key``); :meth:`client` loads it.
    workdir : pathlib.Path
        Folder holding the configurations, data and logs.
    """

    url: str
    datasets: dict[str, str]
    credentials: dict[str, str]
    server_db_url: str
    workdir: Path
    collaboration_id: int
    organizations: dict[str, int]
    runtime: str
    encrypted: bool
    _server: ManagedProcess
    _nodes: dict[str, _Node] = field(default_factory=dict)
    _owns_workdir: bool = False
    _stopped: bool = False
    # extra image -> module, or {module, python} (process_algorithms in node.yaml)
    algorithms: dict[str, Any] = field(default_factory=dict)
    node_settings: dict[str, Any] = field(default_factory=dict)  # extra node.yaml settings
    researcher_key: Path | None = None
    databases: dict[str, dict[str, str]] = field(default_factory=dict)

    # --- researcher side ---
    def client(self) -> Any:
        """A researcher :class:`vantage6nb.Client`, logged in.

        Examples
        --------
        >>> net.client().organizations()  # doctest: +SKIP
        """
        from ..client import Client

        # the researcher's state (key pins, tasks created) stays with the demo, not in ~/.local
        state = self.workdir / "researcher" / "state"
        client = Client(self.url, state_dir=state).login(
            self.credentials["username"], self.credentials["password"]
        )
        if self.encrypted and self.researcher_key is not None:
            client.setup_encryption(self.researcher_key)
        return client

    def admin(self) -> AdminSession:
        """A REST session as the server's root user (for tests and tinkering)."""
        return AdminSession(
            self.url, self.credentials["root_username"], self.credentials["root_password"]
        )

    # --- life cycle ---
    def stop(self) -> None:
        """Stop every node and the server; remove the working folder if :func:`start` created it."""
        if self._stopped:
            return
        self._stopped = True
        for node in self._nodes.values():
            node.process.stop()
        self._server.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        forget_at_exit(self)

    def __enter__(self) -> DemoNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return (
            f"<DemoNetwork {self.url} {len(self._nodes)} nodes ({', '.join(self._nodes)}) {state}>"
        )

    # --- helpers for tests ---
    @property
    def node_names(self) -> list[str]:
        """Organization names, one node each, in creation order."""
        return list(self._nodes)

    def stop_node(self, name: str, *, kill: bool = False) -> None:
        """Stop the node of organization ``name`` (SIGKILL when ``kill``: a crash, not a shutdown)."""
        self._node(name).process.stop(kill=kill)

    def start_node(self, name: str, *, wait: bool = True) -> None:
        """Start the node of organization ``name`` again; wait until the server sees it online."""
        node = self._node(name)
        node.process.start()
        if wait:
            self._wait_online([node])

    def restart_server(self) -> None:
        """Stop and start the server process (same port, same database); nodes reconnect on their own."""
        self._server.stop()
        self._server.start()
        self._wait_health()

    def node_log(self, name: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the node's log."""
        return self._node(name).process.log_tail(lines)

    def server_log(self, lines: int = 200) -> str:
        """The last ``lines`` lines of the server's log."""
        return self._server.log_tail(lines)

    def pids(self) -> dict[str, int | None]:
        """Process ids: ``"server"`` and one per organization name (None when stopped)."""
        out: dict[str, int | None] = {"server": self._server.pid if self._server.running else None}
        out.update(
            {n: (x.process.pid if x.process.running else None) for n, x in self._nodes.items()}
        )
        return out

    def _node(self, name: str) -> _Node:
        if name not in self._nodes:
            raise NotFound(
                f"No demo node for organization {name!r}; there are {', '.join(self._nodes)}."
            )
        return self._nodes[name]

    def _wait_health(self) -> None:
        import requests

        def healthy() -> bool:
            try:
                return requests.get(f"{self.url}/api/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(
            healthy,
            timeout=STARTUP_TIMEOUT_S,
            what=f"the demo server at {self.url}",
            check=self._server.check_alive,
        )

    def _wait_online(self, nodes: list[_Node]) -> None:
        admin = self.admin()
        wanted = {n.node_id for n in nodes}

        def online() -> bool:
            status = {r["id"]: r.get("status") for r in admin.nodes(self.collaboration_id)}
            return all(status.get(i) == "online" for i in wanted)

        def alive() -> None:
            for n in nodes:
                n.process.check_alive()

        wait_until(
            online, timeout=STARTUP_TIMEOUT_S, what="the demo nodes to come online", check=alive
        )
        # a node without databases has nothing to report: waiting for it would take the timeout
        reporting = {n.node_id for n in nodes if self.databases.get(n.organization)}
        if self.node_settings.get("report_columns", True) and reporting:
            self._wait_columns(reporting, alive)

    def _wait_columns(self, wanted: set[int], alive: Any) -> None:
        # a node reports its columns just after it comes online: wait for them (briefly, then go
        # on without) so that client.columns() right after start lists every organization
        admin = self.admin()

        def reported() -> bool:
            data = admin.get("/column", collaboration_id=self.collaboration_id)["data"]
            return wanted <= {int(item["node_id"]) for item in data}

        try:
            wait_until(
                reported,
                timeout=COLUMNS_TIMEOUT_S,
                what="the column reports",
                check=alive,
                error=TimeoutError,
            )
        except TimeoutError:
            pass


def start(
    nodes: int | None = None,
    *,
    encrypted: bool = False,
    runtime: str = "process",
    workdir: str | os.PathLike[str] | None = None,
    port: int | None = None,
    dataset: Any = None,
    algorithms: dict[str, Any] | None = None,
    node_settings: dict[str, Any] | None = None,
    datasets: Sequence[Any] | None = None,
) -> DemoNetwork:
    """Start a demo network on loopback: a server, ``nodes`` organizations with one node each, one
    collaboration of them all, a researcher account, and the demo data split over the nodes.

    Parameters
    ----------
    nodes : int, optional
        How many organizations (and nodes); default 3, or one per entry of ``datasets``.
    encrypted : bool
        Whether the collaboration uses end-to-end encryption.
    runtime : {"process", "docker", "podman"}
        How nodes run algorithms.
    workdir : path, optional
        Folder for configurations, data and logs; kept. None: a temporary folder, removed by
        ``stop()``, or when the interpreter or notebook kernel exits without it.
    port : int, optional
        The server's port on 127.0.0.1; a free one if None.
    dataset : DataFrame or path, optional
        Data to split over the nodes (default: the Palmer penguins shipped with vantage6nb).
    algorithms : dict, optional
        Extra algorithms the nodes may run: image name -> importable module, e.g.
        ``{"v6nb/my-mean": "my_mean"}`` (the module must be importable by the nodes: their
        ``PYTHONPATH`` is this process's, plus the current folder), or -> ``{"module": ...,
        "python": ".../venv/bin/python"}`` to run it in an interpreter of its own (a vantage6
        algorithm with its ``vantage6-algorithm-tools``). The nodes allow these images and trust
        their plain-JSON results (``disclosure.untyped_images``), as an operator would for an
        algorithm they approved; on the Docker runtime the names are images (the module is unused).
    node_settings : dict, optional
        Extra settings written into every node's ``node.yaml`` (see docs/configuration.md), e.g.
        ``{"limits": {"memory_mb": 256}}``; they win over the demo's own.
    datasets : sequence, optional
        One dataset per node, instead of splitting ``dataset``: a DataFrame (written to the node's
        folder as Parquet, which keeps its column types, or as CSV without pyarrow), a file path
        of a supported format (``.csv``, ``.parquet``, ``.xlsx``/``.xls``, or an SQLite file
        ``.sqlite``/``.sqlite3``/``.db`` holding one table; copied into the node's folder), an
        SQLAlchemy URL (used as it is), or a mapping of database label to one of those, for
        several databases per node. A single dataset is the node's ``default`` database.

    Notes
    -----
    With ``runtime="docker"`` the nodes run the shipped images from the registry on 127.0.0.1:5000,
    pinned to the digests it serves at start (``image_registry`` and ``image_digests`` in each
    ``node.yaml``); run ``scripts/setup-docker.sh`` and ``scripts/build-images.sh`` first. With
    ``runtime="podman"`` they do the same through a rootless Podman (``scripts/setup-podman.sh``).

    Returns
    -------
    DemoNetwork
        Also a context manager. At interpreter (or kernel) exit, a network not stopped is
        stopped: its processes end and the temporary folder it made is removed.

    Examples
    --------
    >>> from vantage6nb import demo
    >>> with demo.start(nodes=3) as net:  # doctest: +SKIP
    ...     client = net.client()
    ...     client.organizations()
    >>> net = demo.start(datasets=[small_df, "site2.parquet", {"default": df3, "labs": "labs.csv"}])  # doctest: +SKIP
    """
    if datasets is not None and dataset is not None:
        raise ConfigurationError(
            "Give dataset (one dataset, split over the nodes) or datasets (one per node), not both.",
            errors={"datasets": "with dataset"},
        )
    if nodes is None:
        nodes = len(datasets) if isinstance(datasets, (list, tuple)) else 3
    if not isinstance(nodes, int) or isinstance(nodes, bool) or not 1 <= nodes <= MAX_NODES:
        raise ConfigurationError(
            f"nodes must be a whole number from 1 to {MAX_NODES}.", errors={"nodes": nodes}
        )
    if runtime not in RUNTIMES:
        raise ConfigurationError(
            f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}.",
            errors={"runtime": runtime},
        )
    _check_supported(encrypted=encrypted, runtime=runtime)
    if node_settings is not None and not isinstance(node_settings, dict):
        raise ConfigurationError(
            "node_settings must be a dict of node.yaml settings.",
            errors={"node_settings": "not a dict"},
        )
    extra_settings = (
        docker_node_settings()
        if runtime == "docker"
        else podman_node_settings()
        if runtime == "podman"
        else {}
    )
    extra_settings.update(node_settings or {})
    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="v6nb-demo-")) if owns else Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if runtime == "podman" and owns:
        root.chmod(0o711)  # a rootless Podman of another user mounts the nodes' data from here
    if not owns and (root / "server").exists():
        raise ConfigurationError(
            f"{root} already holds a demo network; give an empty or new workdir.",
            errors={"workdir": str(root)},
        )
    # fails early on bad data, before any process starts
    parts = (
        [[("default", _SplitPart(part))] for part in split_dataset(dataset, nodes)]
        if datasets is None
        else _node_datasets(datasets, nodes)
    )
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    root_password = secrets.token_urlsafe(18)
    server_dir = root / "server"
    server_dir.mkdir()
    db_url = f"sqlite:///{server_dir / 'data' / 'server.sqlite'}"
    _write_yaml(
        server_dir / "server.yaml",
        {
            "host": "127.0.0.1",
            "port": port,
            "data_dir": "data",
            "database_url": db_url,
            "root_username": "root",
            "root_password": root_password,
            # every demo node and client connects from 127.0.0.1, about 5 connections per node:
            # the per-address bound (500) would refuse a demo of 100 nodes
            "max_connections_per_address": 0,
        },
    )
    env = _child_env()
    server = ManagedProcess(
        "demo server",
        ["-m", "server_app", "start", "--config", "server.yaml"],
        root / "logs" / "server.log",
        cwd=server_dir,
        env=env,
    )
    net = DemoNetwork(
        url=url,
        datasets={},
        server_db_url=db_url,
        workdir=root,
        collaboration_id=0,
        organizations={},
        runtime=runtime,
        encrypted=encrypted,
        _server=server,
        _owns_workdir=owns,
        credentials={
            "username": RESEARCHER,
            "password": secrets.token_urlsafe(12),
            "root_username": "root",
            "root_password": root_password,
        },
        algorithms=dict(algorithms or {}),
        node_settings=extra_settings,
    )
    stop_at_exit(net)  # a kernel shut down without net.stop() leaves nothing behind
    try:
        server.start()
        net._wait_health()
        _populate(net, parts, env)
        for node in net._nodes.values():
            node.process.start()
        net._wait_online(list(net._nodes.values()))
    except BaseException:
        net.stop()
        raise
    return net


def _populate(net: DemoNetwork, parts: list[Any], env: dict[str, str]) -> None:
    admin = net.admin()
    names = organization_names(len(parts))
    orgs = {name: int(admin.create_organization(name)["id"]) for name in names}
    net.organizations = orgs
    collab = admin.create_collaboration("Demo", list(orgs.values()), encrypted=net.encrypted)
    net.collaboration_id = int(collab["id"])
    admin.create_user(net.credentials["username"], net.credentials["password"], orgs[names[0]])
    keys = _create_keys(net, admin, names) if net.encrypted else {}
    for name, part in zip(names, parts, strict=True):
        folder = net.workdir / "nodes" / _folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)  # may hold its private key already
        databases = _write_databases(folder, part, name)
        node = admin.create_node(orgs[name], net.collaboration_id, f"{name} node")
        _write_yaml(
            folder / "node.yaml",
            {
                "server_url": net.url,
                "api_key": node["api_key"],
                "name": f"{name} node",
                "data_dir": "data",
                "databases": databases,
                "runtime": net.runtime,
                "process_algorithms": {**IMAGES, **net.algorithms},
                "allowed_images": ["v6nb/*", *net.algorithms],
                "encryption": net.encrypted,
                # the diagnostics image and the algorithms given to the demo return plain JSON;
                # a real node trusts such images one by one (docs/privacy.md)
                **net.node_settings,
                "disclosure": {
                    "untyped_images": ["v6nb/diagnostics", *net.algorithms],
                    **net.node_settings.get("disclosure", {}),
                },
                **({"private_key": str(keys[name])} if net.encrypted else {}),
            },
        )
        proc = ManagedProcess(
            f"node of {name}",
            ["-m", "node_app", "start", "--config", "node.yaml"],
            net.workdir / "logs" / f"node-{folder.name}.log",
            cwd=folder,
            env=env,
        )
        net._nodes[name] = _Node(name, orgs[name], int(node["id"]), folder / "node.yaml", proc)
        net.databases[name] = {d["label"]: d["uri"] for d in databases}
        uris = net.databases[name]
        net.datasets[name] = uris.get("default", databases[0]["uri"])


# a dataset file's suffix -> its database type in node.yaml
_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".xlsx": "excel",
    ".xls": "excel",
    ".sqlite": "sql",
    ".sqlite3": "sql",
    ".db": "sql",
}
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _node_datasets(datasets: Any, nodes: int) -> list[list[tuple[str, Any]]]:
    """``datasets`` checked, as one list of ``(label, DataFrame, path or URL)`` per node."""
    if isinstance(datasets, (str, os.PathLike, Mapping)) or hasattr(datasets, "columns"):
        raise ConfigurationError(
            "datasets is one dataset per node: a list, such as [df1, df2, 'site3.csv'].",
            errors={"datasets": "expected a list"},
        )
    entries = list(datasets)
    if len(entries) != nodes:
        raise ConfigurationError(
            f"datasets has {len(entries)} entries for {nodes} nodes: give one per node (or leave "
            "nodes out).",
            errors={"datasets": f"{len(entries)} for {nodes} nodes"},
        )
    out = []
    for i, entry in enumerate(entries):
        items = list(entry.items()) if isinstance(entry, Mapping) else [("default", entry)]
        if not items:
            raise ConfigurationError(
                f"datasets[{i}] is an empty mapping: give at least one database.",
                errors={f"datasets[{i}]": "empty"},
            )
        checked = []
        for label, source in items:
            where = f"datasets[{i}]" + (f"[{label!r}]" if isinstance(entry, Mapping) else "")
            if not isinstance(label, str) or not _LABEL.fullmatch(label):
                raise ConfigurationError(
                    f"{where}: a database label is a name of letters, digits and _ that starts "
                    f"with a letter, such as 'default' or 'labs'; got {label!r}.",
                    errors={where: "bad label"},
                )
            checked.append((label, _check_source(source, where)))
        out.append(checked)
    return out


def _check_source(source: Any, where: str) -> Any:
    if hasattr(source, "columns") and hasattr(source, "to_csv"):
        return source
    if isinstance(source, str) and "://" in source:
        return source  # an SQLAlchemy URL: the node connects to it
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigurationError(
            f"{where} is a {type(source).__name__}: give a DataFrame, a file path or a URL.",
            errors={where: "unsupported"},
        )
    path = Path(source).expanduser()
    if path.suffix.lower() not in _SUFFIXES:
        raise ConfigurationError(
            f"{where}: {str(path)!r} is not a supported data file; use "
            f"{', '.join(_SUFFIXES)} (or a DataFrame).",
            errors={where: "unsupported format"},
        )
    if not path.is_file():
        raise ConfigurationError(
            f"{where}: {str(path)!r} does not exist.", errors={where: "missing"}
        )
    return path.resolve()


def _write_databases(
    folder: Path, entries: list[tuple[str, Any]], org: str
) -> list[dict[str, str]]:
    """Put a node's datasets in its folder; the ``databases`` of its node.yaml."""
    out = []
    for label, source in entries:
        if isinstance(source, str):  # a URL
            out.append({"label": label, "uri": source, "type": "sql"})
            continue
        if isinstance(source, Path):
            target = folder / f"{label}{source.suffix.lower()}"
            shutil.copyfile(source, target)
        elif isinstance(source, _SplitPart):
            target = folder / "penguins.csv"  # the demo's own split, as it always was
            source.frame.to_csv(target, index=False)
        else:
            target = _write_frame(folder, label, source, org)
        typ = _SUFFIXES[target.suffix]
        uri = f"sqlite:///{target}" if typ == "sql" else str(target)
        out.append({"label": label, "uri": uri, "type": typ})
    return out


@dataclass(frozen=True)
class _SplitPart:
    """A part of the split ``dataset``: written as CSV, as the demo always did."""

    frame: Any


def _write_frame(folder: Path, label: str, frame: Any, org: str) -> Path:
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # CSV keeps what it can; install pyarrow to keep the types
        target = folder / f"{label}.csv"
        frame.to_csv(target, index=False)
        return target
    target = folder / f"{label}.parquet"
    try:
        frame.to_parquet(target, index=False)
    except (TypeError, ValueError) as exc:  # pyarrow's errors are ValueError/TypeError subclasses
        raise ConfigurationError(
            f"The dataset of {org} ({label}) cannot be written as Parquet: {exc}. A column that "
            "mixes types (numbers and text) needs one type, or write the file yourself and pass "
            "its path.",
            errors={"datasets": label},
        ) from exc
    return target


def _create_keys(net: DemoNetwork, admin: AdminSession, names: list[str]) -> dict[str, Path]:
    """One key pair per organization: ``nodes/<org>/private.key`` (mode 0600), public key uploaded;
    the researcher's organization (the first) shares its node's key, copied to ``researcher/``."""
    from ..client import Client  # the public call researchers use too

    paths: dict[str, Path] = {}
    for name in names:
        path = net.workdir / "nodes" / _folder_name(name) / "private.key"
        key = Client.create_private_key(path)
        admin.set_public_key(net.organizations[name], key.public_key_b64)
        paths[name] = path
    net.researcher_key = net.workdir / "researcher" / "private.key"
    net.researcher_key.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(net.researcher_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(paths[names[0]].read_bytes())
    return paths


def _folder_name(name: str) -> str:
    return name.lower().replace(" ", "-")


def _check_supported(*, encrypted: bool, runtime: str) -> None:
    # The Docker runtime lands in its own issue; until it does, say so instead of starting a
    # network that silently does something else.
    if runtime == "docker":
        from importlib.util import find_spec

        if find_spec("node_app.runtimes.docker") is None:
            raise ConfigurationError(
                "runtime='docker' is not supported yet: this build has no Docker runtime. "
                "Start the demo with runtime='process'.",
                errors={"runtime": "not implemented"},
            )


def _child_env() -> dict[str, str]:
    # Configuration files decide; a stray V6NB_SERVER_*/V6NB_NODE_* in the caller's shell must not.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("V6NB_SERVER_", "V6NB_NODE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    # Children run in their own folders: put the folder holding our packages first on their path, so
    # they import the same server_app/node_app as we do (an editable install made before those
    # packages had an __init__ would otherwise hand them a namespace package).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _write_yaml(path: Path, values: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)  # holds a password or an API key
