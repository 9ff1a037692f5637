"""``v6nb demo``: start a local demo network, show how to reach it and a federated summary, run until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..common.errors import V6Error

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="v6nb demo", description=__doc__)
    p.add_argument("--nodes", type=int, default=3, help="number of organizations/nodes (default 3)")
    p.add_argument("--encrypted", action="store_true", help="end-to-end encrypted collaboration")
    p.add_argument(
        "--runtime",
        choices=["process", "docker", "podman"],
        default="process",
        help="how nodes run algorithms (default process)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="server port on 127.0.0.1 (default: a free one)"
    )
    p.add_argument(
        "--workdir", default=None, help="folder for configs, data and logs (default: temporary)"
    )
    p.add_argument("--no-summary", action="store_true", help="skip the federated summary at start")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``v6nb demo``; returns the exit code.

    Examples
    --------
    ``v6nb demo --nodes 3`` (stop it with Ctrl-C).
    """
    args = _parser().parse_args(argv)
    from . import start

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"Starting a demo network with {args.nodes} node(s) ({args.runtime} runtime)...", flush=True
    )
    try:
        net = start(
            nodes=args.nodes,
            encrypted=args.encrypted,
            runtime=args.runtime,
            port=args.port,
            workdir=args.workdir,
        )
    except V6Error as exc:
        print(f"v6nb demo: {exc}", file=sys.stderr)
        return 1
    try:
        print(_banner(net), flush=True)
        if not args.no_summary:
            print(_summary(net), flush=True)
        print("\nRunning. Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping the demo network...", flush=True)
        net.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _banner(net: Any) -> str:
    c = net.credentials
    lines = [
        "",
        f"Server:      {net.url}",
        f"Researcher:  username {c['username']!r}, password {c['password']!r}",
        f"Admin:       username {c['root_username']!r}, password {c['root_password']!r}",
        f"Workdir:     {net.workdir}",
        "Nodes:       " + ", ".join(f"{name} ({path})" for name, path in net.datasets.items()),
        "",
        "In a notebook:",
        "    import vantage6nb",
        f"    client = vantage6nb.Client({net.url!r}).login({c['username']!r}, {c['password']!r})",
    ]
    if getattr(net, "encrypted", False) and getattr(net, "researcher_key", None) is not None:
        lines.append(
            f"    client.setup_encryption({str(net.researcher_key)!r})  # end-to-end encrypted"
        )
    lines.append("    from vantage6nb import analysis; analysis.summary(client)")
    return "\n".join(lines)


def _summary(net: Any) -> str:
    try:
        from ..analysis import summary

        frame = summary(net.client())
    except Exception as exc:  # the network is up; a failing first analysis should not take it down
        return f"\n(federated summary failed: {exc})"
    import pandas as pd

    from ..widgets._result import text_table

    with pd.option_context("display.width", 120, "display.max_columns", 10):
        return (
            "\nFederated summary of the penguins data (no record left a node):\n"
            + text_table(frame)
            + "\n(min and max are suppressed: each is one record's value, which the nodes' "
            "default disclosure policy withholds; in Python they are NaN. See docs/privacy.md)"
        )
