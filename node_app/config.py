"""Node settings: declared once, layered defaults -> YAML file -> ``V6NB_NODE_*`` -> overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vantage6nb.common.contract import DATABASE_TYPES
from vantage6nb.common.disclosure import DisclosurePolicy
from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.settings import Setting, resolve_settings

from .runtimes.base import Limits

__all__ = ["SETTINGS", "DatabaseConfig", "NodeConfig", "load_config", "settings_table"]

PREFIX = "node"

SETTINGS: tuple[Setting, ...] = (
    Setting("server_url", "http://127.0.0.1:7601", "URL of the server (scheme, host, port).", str),
    Setting(
        "api_key",
        "",
        "The node's API key, shown once when the node was created on the server.",
        str,
    ),
    Setting("name", "node", "A name for this node in logs and messages.", str),
    Setting(
        "data_dir",
        "node-data",
        "Folder for per-run work folders and the upload outbox; relative to the config file's folder.",
        str,
    ),
    Setting(
        "databases",
        [],
        "List of `{label, uri, type (csv, parquet, excel, sql), query?, hide_columns?}`; relative file paths are resolved against the config file's folder. `hide_columns`: column names (or fnmatch patterns) left out of this database's column report (`report_columns`).",
        list,
    ),
    Setting(
        "runtime",
        "auto",
        "`process`, `docker`, `podman` (rootless; `podman_socket`), or `auto` (Docker when an engine answers, else process: no isolation, logged loudly).",
        str,
    ),
    Setting(
        "process_algorithms",
        {
            "v6nb/summary": "vantage6nb.algorithms.summary",
            "v6nb/crosstab": "vantage6nb.algorithms.crosstab",
            "v6nb/diagnostics": "vantage6nb.algorithms.diagnostics",
        },
        "Image name -> importable module, for the process runtime (registry host, tag and digest are ignored when matching); or -> `{module, python}` to run that image in an interpreter of its own, e.g. a virtual environment's `bin/python` holding a vantage6 algorithm and its `vantage6-algorithm-tools` (relative paths are resolved against the config file's folder).",
        dict,
    ),
    Setting(
        "allowed_images",
        ["v6nb/*"],
        "Images this node runs: exact names or fnmatch patterns (`*` allows every image).",
        list,
    ),
    Setting(
        "image_digests", {}, "Image -> pinned `sha256:` digest; any other digest is refused.", dict
    ),
    Setting(
        "image_registry",
        "",
        "Registry (`host:port`) for image names that name none (`v6nb/summary`): the Docker runtime pulls `<registry>/<name>@<pinned digest>` (by tag when none is pinned) instead of using a local image. Empty: such names are local images.",
        str,
    ),
    Setting(
        "limits",
        {
            "memory_mb": 1024,
            "cpus": 1.0,
            "pids": 256,
            "timeout_s": 3600,
            "output_mb": 256,
            "scratch_mb": 256,
            "shm_mb": 16,
        },
        "Per-run limits: `memory_mb`, `cpus`, `pids`, `timeout_s` (null: no limit); `output_mb` (the run's writable output folder, and the most the node reads back from `OUTPUT_FILE`), `scratch_mb` (`/tmp`) and `shm_mb` (`/dev/shm`) cap what an algorithm can write (always set; in Docker they are memory and count against `memory_mb`).",
        dict,
    ),
    Setting(
        "max_parallel_runs",
        2,
        "How many runs execute at once; the rest wait. A run that creates subtasks gives its slot back while it waits for them.",
        int,
    ),
    Setting(
        "report_columns",
        True,
        "Report each database's column names and types (never values or counts) to the server, at start and whenever a source changes, so researchers can see what data exists (`client.columns()`); a database's `hide_columns` leaves columns out. `false`: nothing is reported and the server forgets an earlier report.",
        bool,
    ),
    Setting("proxy_port", 0, "Loopback port of the algorithm proxy (0: pick a free port).", int),
    Setting(
        "sync_interval_s",
        30.0,
        "Seconds between periodic re-syncs of open runs (a safety net besides socket events).",
        float,
    ),
    Setting(
        "encryption",
        False,
        "Whether this node decrypts inputs and encrypts results; must equal its collaboration's `encrypted` flag, else the node refuses to start.",
        bool,
    ),
    Setting(
        "private_key",
        "private.key",
        "The organization's private key file (`v6nb node create-private-key --config node.yaml` writes it, mode 0600); relative to the config file's folder. Used when `encryption` is on.",
        str,
    ),
    Setting(
        "private_key_passphrase_env",
        "",
        "Name of the environment variable holding the private key's passphrase (empty: the key is not passphrase-protected).",
        str,
    ),
    Setting("log_level", "INFO", "Logging level: DEBUG, INFO, WARNING, ERROR.", str),
    Setting(
        "disclosure",
        DisclosurePolicy().to_mapping(),
        "The disclosure policy: what this node releases (on by default; every key, its default and why in docs/privacy.md). Keys given here replace the defaults one by one; `V6NB_NODE_DISCLOSURE_<KEY>` (JSON or plain) overrides one key, `V6NB_NODE_DISCLOSURE` (JSON) the mapping. `v6nb node policy --config node.yaml` prints the effective policy.",
        dict,
    ),
    Setting(
        "binary_result_kb",
        64,
        "Outputs larger than this many KiB (as for inputs, `client.task.binary_input_kb`) go to the server as a binary stream (`PUT /api/run/<id>/result`; sealed with `seal_stream` when encrypted) instead of a JSON string, so a large result is never held whole in memory.",
        int,
    ),
    Setting(
        "podman_socket",
        "",
        "For `runtime: podman`: the API socket of the rootless `podman system service` that runs the containers. Empty: `$XDG_RUNTIME_DIR/podman/podman.sock`, where a node that is not root starts the service itself when none answers.",
        str,
    ),
    Setting(
        "podman_cgroup_parent",
        "v6nb-podman",
        "For `runtime: podman` on a cgroup v1 host (where rootless Podman ignores limits): the cgroup under `/sys/fs/cgroup/{memory,cpu,pids}/` delegated to the Podman user, in which the node applies `limits` (`scripts/setup-podman.sh` makes it).",
        str,
    ),
    Setting(
        "process_warm",
        True,
        "For `runtime: process` on Linux: start each run from a fork server per algorithm (a zygote that has imported pandas, numpy and the module), one fresh child process per run, instead of a fresh interpreter; a zygote is replaced when its interpreter, a file it imported from the algorithm's package or the limits change. `false`: a fresh interpreter per run (for a module that reads the run's environment when it is imported).",
        bool,
    ),
    Setting(
        "container_warm_spares",
        4,
        "For `runtime: docker` and `runtime: podman`: how many warm single-use sandboxes may wait at once (0: none). After a run of an image that runs `python -m vantage6nb.algorithm`, the next run of the same image id, data and limits gets a sandbox started ahead (relay, run volume and algorithm container with every isolation option of a cold run's), whose interpreter has imported pandas, numpy and the module and waits for the run's input; it serves that one run and is removed (docs/operations.md, \"Warm starts\"). Each waiting one holds an idle interpreter (about 100 MB). 0: every run starts its container then (for a module that reads the run's environment when it is imported).",
        int,
    ),
)

_RUNTIMES = ("process", "docker", "podman", "auto")
_DEFAULT_LIMITS: dict[str, Any] = next(s.default for s in SETTINGS if s.name == "limits")
_LIMIT_KEYS = {
    "memory_mb": int,
    "cpus": float,
    "pids": int,
    "timeout_s": float,
    "output_mb": int,
    "scratch_mb": int,
    "shm_mb": int,
}
_ALWAYS_SET = ("output_mb", "scratch_mb", "shm_mb")  # caps on what an algorithm writes: never off


@dataclass(frozen=True)
class DatabaseConfig:
    """One configured database: ``uri`` is an absolute path (files) or an SQLAlchemy URL (sql)."""

    label: str
    uri: str
    type: str
    query: str | None = None
    hide_columns: tuple[str, ...] = ()  # left out of the column report (names or fnmatch patterns)


@dataclass
class NodeConfig:
    """The resolved node configuration (see docs/configuration.md, "Node")."""

    server_url: str
    api_key: str
    name: str
    data_dir: Path
    databases: list[DatabaseConfig]
    runtime: str
    process_algorithms: dict[str, str | dict[str, str]]  # module, or {module, python}
    allowed_images: list[str]
    image_digests: dict[str, str]
    limits: Limits
    max_parallel_runs: int
    proxy_port: int
    sync_interval_s: float
    encryption: bool
    private_key: Path | None
    private_key_passphrase_env: str
    log_level: str
    image_registry: str = ""
    binary_result_kb: int = 64
    disclosure: DisclosurePolicy = field(default_factory=DisclosurePolicy)
    config_file: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    podman_socket: str = ""
    podman_cgroup_parent: str = "v6nb-podman"
    report_columns: bool = True


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Read ``path`` (YAML), then ``V6NB_NODE_*`` from ``environ``, then ``overrides``.

    Raises :class:`ConfigurationError` naming the key to fix.

    Examples
    --------
    >>> cfg = load_config(None, environ={}, overrides={"name": "leiden", "api_key": "k"})
    >>> cfg.name, cfg.runtime
    ('leiden', 'auto')
    """
    file_values: dict[str, Any] = {}
    base = Path.cwd()
    cfile: Path | None = None
    if path is not None:
        cfile = Path(path).expanduser().resolve()
        if not cfile.is_file():
            raise ConfigurationError(f"Node configuration file {cfile} does not exist.")
        import yaml  # only needed when there is a file

        try:
            loaded = yaml.safe_load(cfile.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{cfile} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigurationError(
                f"{cfile} must hold a mapping of settings, not {type(loaded).__name__}."
            )
        file_values = dict(loaded or {})
        base = cfile.parent
    env = os.environ if environ is None else environ
    values = resolve_settings(
        SETTINGS, prefix=PREFIX, file_values=file_values, environ=env, overrides=overrides
    )
    values["disclosure"] = _disclosure(values["disclosure"], env)
    return _build(values, base, cfile)


def _disclosure(given: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The policy's keys: defaults, replaced one by one by the given mapping, then by
    ``V6NB_NODE_DISCLOSURE_<KEY>`` variables (JSON, or plain text for a word)."""
    import json

    from vantage6nb.common.settings import env_name

    merged = {**DisclosurePolicy().to_mapping(), **given}
    prefix = env_name(PREFIX, "disclosure") + "_"
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :].lower()
        try:
            merged[key] = json.loads(raw)
        except ValueError:
            merged[key] = raw
    return merged


def _build(v: dict[str, Any], base: Path, cfile: Path | None) -> NodeConfig:
    if v["runtime"] not in _RUNTIMES:
        raise ConfigurationError(
            f"Setting 'runtime' must be one of {', '.join(_RUNTIMES)}, got {v['runtime']!r}.",
            errors={"runtime": "unknown runtime"},
        )
    if v["max_parallel_runs"] < 1:
        raise ConfigurationError(
            "Setting 'max_parallel_runs' must be at least 1.",
            errors={"max_parallel_runs": "too small"},
        )
    if not 0 <= v["proxy_port"] < 65536:
        raise ConfigurationError(
            "Setting 'proxy_port' must be 0..65535.", errors={"proxy_port": "out of range"}
        )
    if v["sync_interval_s"] <= 0:
        raise ConfigurationError(
            "Setting 'sync_interval_s' must be positive.",
            errors={"sync_interval_s": "not positive"},
        )
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in v["image_digests"].items()):
        raise ConfigurationError(
            "Setting 'image_digests' must map strings to strings.",
            errors={"image_digests": "expected str -> str"},
        )
    if not all(isinstance(x, str) for x in v["allowed_images"]):
        raise ConfigurationError(
            "Setting 'allowed_images' must be a list of strings.",
            errors={"allowed_images": "expected strings"},
        )
    return NodeConfig(
        server_url=v["server_url"].rstrip("/"),
        api_key=v["api_key"],
        name=v["name"],
        data_dir=_resolve(base, v["data_dir"]),
        databases=[_database(i, d, base) for i, d in enumerate(v["databases"])],
        runtime=v["runtime"],
        process_algorithms=_process_algorithms(v["process_algorithms"], base),
        allowed_images=list(v["allowed_images"]),
        image_digests=dict(v["image_digests"]),
        limits=_limits({**_DEFAULT_LIMITS, **v["limits"]}),
        max_parallel_runs=v["max_parallel_runs"],
        proxy_port=v["proxy_port"],
        sync_interval_s=v["sync_interval_s"],
        encryption=v["encryption"],
        private_key=_resolve(base, v["private_key"]) if v["private_key"] else None,
        private_key_passphrase_env=v["private_key_passphrase_env"],
        log_level=str(v["log_level"]).upper(),
        image_registry=str(v["image_registry"]).strip().rstrip("/"),
        binary_result_kb=max(0, int(v["binary_result_kb"])),
        disclosure=DisclosurePolicy.from_mapping(v["disclosure"]),
        config_file=cfile,
        raw=v,
        podman_socket=str(v["podman_socket"]),
        podman_cgroup_parent=str(v["podman_cgroup_parent"]),
        report_columns=bool(v["report_columns"]),
    )


def _process_algorithms(raw: Any, base: Path) -> dict[str, str | dict[str, str]]:
    """``process_algorithms``: image -> module, or -> ``{module, python}`` (python resolved)."""
    if not isinstance(raw, dict):
        raise ConfigurationError(
            "Setting 'process_algorithms' must map image names to modules.",
            errors={"process_algorithms": "expected a mapping"},
        )
    out: dict[str, str | dict[str, str]] = {}
    for image, entry in raw.items():
        where = f"process_algorithms[{image!r}]"
        if isinstance(image, str) and isinstance(entry, str):
            out[image] = entry
            continue
        if (
            not isinstance(image, str)
            or not isinstance(entry, dict)
            or not isinstance(entry.get("module"), str)
            or not entry["module"]
            or set(entry) - {"module", "python"}
            or not isinstance(entry.get("python", ""), str)
        ):
            raise ConfigurationError(
                f"Setting {where} must be a module name, or {{module, python}} with the module "
                "and the interpreter that runs it (e.g. a virtual environment's bin/python).",
                errors={"process_algorithms": "expected str or {module, python}"},
            )
        item = {"module": entry["module"]}
        if entry.get("python"):  # not resolved: a venv's bin/python is a link it must be run by
            python = Path(entry["python"]).expanduser()
            item["python"] = os.path.normpath(python if python.is_absolute() else base / python)
        out[image] = item
    return out


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _database(i: int, entry: Any, base: Path) -> DatabaseConfig:
    where = f"databases[{i}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(
            f"{where} must be a mapping with label, uri and type.",
            errors={where: "expected a mapping"},
        )
    missing = [k for k in ("label", "uri", "type") if not entry.get(k)]
    if missing:
        raise ConfigurationError(
            f"{where} lacks {', '.join(missing)}.", errors={where: f"missing {', '.join(missing)}"}
        )
    unknown = sorted(set(entry) - {"label", "uri", "type", "query", "hide_columns"})
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown key(s) {', '.join(unknown)}.", errors={where: "unknown keys"}
        )
    typ = str(entry["type"]).lower()
    if typ not in DATABASE_TYPES:
        raise ConfigurationError(
            f"{where} ('{entry['label']}') has type {entry['type']!r}; use one of {', '.join(DATABASE_TYPES)}.",
            errors={where: "unknown type"},
        )
    uri = str(entry["uri"])
    if typ != "sql":
        uri = str(_resolve(base, uri))
    elif (
        uri.startswith("sqlite:///")
        and not uri.startswith("sqlite:////")
        and uri != "sqlite:///:memory:"
    ):
        uri = "sqlite:///" + str(_resolve(base, uri[len("sqlite:///") :]))  # relative SQLite file
    query = entry.get("query")
    hide = entry.get("hide_columns") or []
    if not isinstance(hide, list) or not all(isinstance(h, str) for h in hide):
        raise ConfigurationError(
            f"{where}.hide_columns ('{entry['label']}') must be a list of column names or patterns.",
            errors={where: "hide_columns: expected a list of strings"},
        )
    return DatabaseConfig(
        label=str(entry["label"]),
        uri=uri,
        type=typ,
        query=str(query) if query else None,
        hide_columns=tuple(hide),
    )


def _limits(raw: dict[str, Any]) -> Limits:
    unknown = sorted(set(raw) - set(_LIMIT_KEYS))
    if unknown:
        raise ConfigurationError(
            f"Setting 'limits' has unknown key(s) {', '.join(unknown)}; use {', '.join(_LIMIT_KEYS)}.",
            errors={"limits": "unknown keys"},
        )
    out: dict[str, Any] = {}
    for key, typ in _LIMIT_KEYS.items():
        value = raw.get(key)
        if value is None and key not in _ALWAYS_SET:
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(
                f"limits.{key} must be a positive number"
                + ("" if key in _ALWAYS_SET else " or null")
                + f", got {value!r}.",
                errors={"limits": key},
            )
        out[key] = typ(value)
    return Limits(**out)


def settings_table() -> str:
    """The markdown table of node settings, as docs/configuration.md shows it.

    Examples
    --------
    >>> "V6NB_NODE_API_KEY" in settings_table()
    True
    """
    import json

    from vantage6nb.common.settings import env_name

    rows = ["| key | default | env var | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = (
            json.dumps(s.default)
            if not isinstance(s.default, str)
            else (f"`{s.default}`" if s.default else '`""`')
        )
        if not isinstance(s.default, str):
            default = f"`{default}`"
        rows.append(f"| `{s.name}` | {default} | `{env_name(PREFIX, s.name)}` | {s.help} |")
    return "\n".join(rows)
