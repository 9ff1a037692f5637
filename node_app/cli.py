"""``v6nb node ...``: start a node; create the organization's private key; verify its audit log; show its policy."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from vantage6nb.common.errors import (
    AuthenticationError,
    ConfigurationError,
    ServerUnavailable,
    V6Error,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``v6nb node`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="v6nb node", description="Run and manage a data-station node."
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    start = sub.add_parser(
        "start", help="start the node: log in, connect, execute runs until stopped"
    )
    start.add_argument(
        "--config",
        "-c",
        required=True,
        help="the node's YAML configuration (see docs/configuration.md)",
    )
    start.add_argument("--log-level", help="override `log_level` (DEBUG, INFO, WARNING, ERROR)")
    start.add_argument(
        "--replace-key",
        action="store_true",
        help="replace the organization's public key on the server with this node's (logged)",
    )
    keys = sub.add_parser(
        "create-private-key",
        help="create this organization's private key (mode 0600) and upload its public key",
    )
    where = keys.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        "-c",
        help="the node's YAML configuration: writes `private_key` and uploads the public key",
    )
    where.add_argument("--out", help="write the key to this file (no upload)")
    keys.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="protect the key with the passphrase in environment variable VAR "
        "(default: `private_key_passphrase_env` of the configuration)",
    )
    keys.add_argument(
        "--force", action="store_true", help="replace an existing key file (the old key is lost)"
    )
    audit = sub.add_parser("audit", help="the node's hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="command")
    verify = audit_sub.add_parser(
        "verify", help="check the chain; exit 1 on any edited, removed or reordered line"
    )
    verify.add_argument("--config", "-c", required=True, help="the node's YAML configuration")
    policy = sub.add_parser(
        "policy", help="print the effective disclosure policy (defaults, node.yaml, environment)"
    )
    policy.add_argument("--config", "-c", required=True, help="the node's YAML configuration")
    policy.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``v6nb node``; returns the exit code.

    Examples
    --------
    >>> main(["--help"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "start":
        return _start(args)
    if args.command == "create-private-key":
        return _create_private_key(args)
    if args.command == "audit" and args.audit_command == "verify":
        return _verify_audit(args)
    if args.command == "policy":
        return _print_policy(args)
    parser.print_help()
    return 0


def _config(args: argparse.Namespace) -> Any:
    """The node configuration ``--config`` names; None (the error printed) when it is wrong."""
    from .config import load_config

    try:
        return load_config(args.config)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _print_policy(args: argparse.Namespace) -> int:
    """``v6nb node policy``: the effective disclosure policy, as node.yaml would spell it."""
    import json

    import yaml

    config = _config(args)
    if config is None:
        return 2
    effective = {"disclosure": config.disclosure.to_mapping()}
    if args.json:
        print(json.dumps(effective, indent=2))
    else:
        print(f"# effective disclosure policy of {config.name} (see docs/privacy.md)")
        print(yaml.safe_dump(effective, sort_keys=False), end="")
    if not config.disclosure.enabled:
        print("warning: disclosure.enabled is false: outputs leave unchecked", file=sys.stderr)
    return 0


def _verify_audit(args: argparse.Namespace) -> int:
    """``v6nb node audit verify``: 0 when the chain is intact, 1 (listing what broke) otherwise."""
    from .audit import LOG_NAME, verify_folder

    config = _config(args)
    if config is None:
        return 2
    folder = config.data_dir / "audit"
    if not (folder / LOG_NAME).exists():
        if folder.is_dir():  # started, no run yet: an empty log is an intact one
            print(f"audit log intact: no runs recorded yet in {folder}")
            return 0
        print(
            f"error: no audit log in {folder}: start the node once with this configuration "
            "(`v6nb node start`), or check `data_dir`",
            file=sys.stderr,
        )
        return 2
    problems = verify_folder(folder)
    if problems:
        for problem in problems:
            print(f"{folder / LOG_NAME}: {problem}", file=sys.stderr)
        print(f"audit log NOT intact: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    with (folder / LOG_NAME).open(encoding="utf-8") as fh:
        count = sum(1 for line in fh if line.strip())
    print(f"audit log intact: {count} event(s) in {folder / LOG_NAME}")
    return 0


def write_key_file(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write key bytes to ``path`` with mode 0600 from the first byte on (never world-readable).

    Raises FileExistsError when the file exists and ``force`` is false.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "org.key"
    >>> write_key_file(p, b"v6nb-private-key-1 plain ...\\n"); oct(p.stat().st_mode & 0o777)
    '0o600'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return
    fd, tmp = tempfile.mkstemp(prefix=".key-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_private_key(args: argparse.Namespace) -> int:
    from vantage6nb.common.keys import OrgKey

    config = None
    if args.config:
        from .config import load_config

        try:
            config = load_config(args.config)
        except ConfigurationError as exc:
            print(f"v6nb node: {exc}", file=sys.stderr)
            return 2
        path = config.private_key
    elif args.out:
        path = Path(args.out).expanduser().resolve()
    else:
        print(
            "v6nb node create-private-key: give --config node.yaml or --out PATH", file=sys.stderr
        )
        return 2
    if path is None:
        print("v6nb node: set `private_key` in the configuration", file=sys.stderr)
        return 2
    var = args.passphrase_env or (config.private_key_passphrase_env if config else "")
    passphrase = os.environ.get(var) if var else None
    if var and not passphrase:
        print(f"v6nb node: environment variable {var} (the passphrase) is not set", file=sys.stderr)
        return 2
    try:
        if path.exists() and not args.force:
            key = OrgKey.from_bytes(path.read_bytes(), passphrase=passphrase)
            print(f"Reusing the existing key {path} ({key.fingerprint}); --force replaces it.")
        else:
            key = OrgKey.generate()
            write_key_file(path, key.to_bytes(passphrase=passphrase), force=args.force)
            protected = "passphrase-protected, " if passphrase else ""
            print(f"Wrote a new private key to {path} ({protected}mode 0600): {key.fingerprint}")
    except V6Error as exc:
        print(f"v6nb node: {path}: {exc}", file=sys.stderr)
        return 2
    if config is None or not config.api_key:
        print(f"Public key (upload it for your organization): {key.public_key_b64}")
        return 0
    return _upload_public_key(config, key)


def _upload_public_key(config: Any, key: Any) -> int:
    from vantage6nb.common.errors import KeyMismatch, MissingKey

    from .server_client import ServerClient

    client = ServerClient(config.server_url, config.api_key, timeout=10.0)
    try:
        node = client.login()
        org_id = int(node["organization_id"])
        org = client.request("GET", f"/organization/{org_id}")
        try:
            key.check_public_key(org.get("public_key"))
            print(f"The server already holds this public key for '{org.get('name')}'.")
        except MissingKey:
            body = {"public_key": key.public_key_b64}
            client.request("PATCH", f"/organization/{org_id}", json=body)
            print(f"Uploaded the public key of '{org.get('name')}' ({key.fingerprint}).")
        except KeyMismatch:
            print(
                f"Warning: the server holds another public key for '{org.get('name')}' "
                f"({org.get('key_fingerprint')}); this key is {key.fingerprint}. The node will "
                "refuse to start until you run `v6nb node start --replace-key` (logged).",
                file=sys.stderr,
            )
    except ServerUnavailable as exc:
        print(f"Not uploaded ({exc}); `v6nb node start` uploads it.", file=sys.stderr)
    except V6Error as exc:
        print(f"v6nb node: the public key was not uploaded: {exc}", file=sys.stderr)
        return 1
    return 0


def _start(args: argparse.Namespace) -> int:
    from .config import load_config

    overrides: dict[str, Any] = {"log_level": args.log_level} if args.log_level else {}
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigurationError as exc:
        print(f"v6nb node: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        format=f"%(asctime)s %(levelname)s [{config.name}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not config.api_key:
        print(
            "v6nb node: no `api_key` configured (set it in node.yaml or V6NB_NODE_API_KEY)",
            file=sys.stderr,
        )
        return 2
    from .daemon import NodeDaemon

    try:
        daemon = NodeDaemon(config, replace_key=args.replace_key)
    except V6Error as exc:
        print(f"v6nb node: {exc}", file=sys.stderr)
        return 2

    def _on_signal(signum: int, frame: Any) -> None:
        daemon.stopping.set()  # cheap and signal-safe; the main thread does the rest

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    try:
        daemon.start()
    except ServerUnavailable:
        daemon.stop()
        return 0 if daemon.stopping.is_set() else 1
    except AuthenticationError as exc:
        print(f"v6nb node: {exc}", file=sys.stderr)
        daemon.stop()
        return 1
    except V6Error as exc:  # refused at start, e.g. a key or encryption setting mismatch
        print(f"v6nb node: {exc}", file=sys.stderr)
        daemon.stop()
        return 2
    announced = False
    while not daemon.stopping.wait(0.2):
        if not announced and daemon.link.ever_connected.is_set():
            print(f"vantage6nb node '{config.name}' connected to {config.server_url}", flush=True)
            announced = True
    daemon.stop()
    return 0
