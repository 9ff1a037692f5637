"""``v6nb node ...``: start a node; the slot for key management."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
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
    # ---- slot for the encryption engineer: `v6nb node create-private-key` --------------------------
    keys = sub.add_parser(
        "create-private-key", help="create this organization's private key (encryption)"
    )
    keys.add_argument("--config", "-c", help="the node's YAML configuration")
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
    parser.print_help()
    return 0


def _create_private_key(args: argparse.Namespace) -> int:
    # Placeholder: the encryption work fills this in (key file mode 0600, optional passphrase).
    print(
        "v6nb node create-private-key: not available yet (end-to-end encryption is not wired in)",
        file=sys.stderr,
    )
    return 2


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
        daemon = NodeDaemon(config)
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
    announced = False
    while not daemon.stopping.wait(0.2):
        if not announced and daemon.link.ever_connected.is_set():
            print(f"vantage6nb node '{config.name}' connected to {config.server_url}", flush=True)
            announced = True
    daemon.stop()
    return 0
