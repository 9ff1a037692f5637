"""Diagnostics algorithm (image ``v6nb/diagnostics``): checks a station end to end without touching data values.

Methods: ``echo`` (returns its arguments), ``sleep`` (waits), ``crash`` (raises), ``shape`` (row and
column counts of the first database), ``runtime_info`` (what the algorithm can see of its sandbox),
``blob`` (a large result, to exercise the binary result path).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point

from ._common import run_partials, store_databases, store_organizations

__all__ = ["blob", "blob_central", "crash", "echo", "runtime_info", "shape", "sleep"]


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return the arguments unchanged.

    Examples
    --------
    >>> echo(1, a=2)
    {'args': [1], 'kwargs': {'a': 2}}
    """
    return {"args": list(args), "kwargs": kwargs}


def sleep(seconds: float = 1.0, *, chatter: bool = True) -> dict[str, float]:
    """Sleep ``seconds`` (printing a heartbeat so the log shows progress), then return how long it slept."""
    start = time.monotonic()
    deadline = start + float(seconds)
    while (now := time.monotonic()) < deadline:
        if chatter:
            print(f"sleeping: {deadline - now:.1f} s left", flush=True)
        time.sleep(min(0.5, max(0.0, deadline - now)))
    return {"slept": round(time.monotonic() - start, 3)}


def blob(megabytes: float = 1.0, *, tag: str = "", seconds: float = 0.0) -> dict[str, Any]:
    """A JSON value of about ``megabytes`` MiB (lines of 1 KiB, numbered), for large-payload tests;
    it first waits ``seconds`` (so a test can act while the run is active).

    Examples
    --------
    >>> out = blob(0.002, tag="t")
    >>> out["lines"], len(out["data"][0]), out["data"][1][:8]
    (2, 1000, '00000001')
    """
    time.sleep(max(0.0, float(seconds)))
    n = max(1, int(float(megabytes) * 1024 * 1024 / 1024))
    pad = ("-" + tag if tag else "") + "x" * 1000
    return {"lines": n, "tag": tag, "data": [f"{i:08d}{pad}"[:1000] for i in range(n)]}


@entry_point
@algorithm_client
def blob_central(
    client: AlgorithmClient, megabytes: float = 1.0, organizations: list[int] | None = None
) -> dict[str, Any]:
    """Central: run :func:`blob` at ``organizations`` through the proxy and check what came back.

    Returns the line count of each organization's result and whether every line is intact.
    Plain JSON, like every method here: a node releases it only when its policy trusts the image
    (``disclosure.untyped_images``).
    """
    parts = [
        p.value
        for p in run_partials(
            client, "blob", {"megabytes": megabytes}, organizations, name="blob (partial)"
        )
    ]
    return {
        "lines": [int(p["lines"]) for p in parts],
        "intact": [
            all(line.startswith(f"{i:08d}") for i, line in enumerate(p["data"])) for p in parts
        ],
    }


def crash(message: str = "deliberate crash from the diagnostics algorithm") -> None:
    """Print a line, then raise: the run must end ``crashed`` with this in its log tail."""
    print("about to crash", flush=True)
    raise RuntimeError(message)


@data(1)
def shape(df: Any) -> dict[str, Any]:
    """Rows and column names of the first requested database (no values leave the station)."""
    return {"rows": int(len(df)), "columns": [str(c) for c in df.columns]}


def runtime_info() -> dict[str, Any]:
    """What the sandbox looks like from inside: user, interfaces, writable root, Python version."""
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = []
    try:
        with open("/.v6nb-write-probe", "w") as fh:
            fh.write("x")
        os.unlink("/.v6nb-write-probe")
        root_writable = True
    except OSError:
        root_writable = False
    return {
        "uid": os.getuid(),
        "interfaces": interfaces,
        "root_writable": root_writable,
        "python": sys.version.split()[0],
    }


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "diagnostics",
    "image": "v6nb/diagnostics",
    "description": "Methods that test a network: echo, sleep, large payloads, a deliberate crash, the sandbox.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/diagnostics.py",
    "functions": [
        {
            "name": "echo",
            "display_name": "Echo",
            "type": "federated",
            "standalone": True,
            "description": "Return the arguments unchanged (any keyword arguments).",
            "any_arguments": True,
        },
        {
            "name": "sleep",
            "display_name": "Sleep",
            "type": "federated",
            "standalone": True,
            "description": "Sleep ``seconds``, printing a heartbeat, then return how long it slept.",
            "arguments": [
                {
                    "name": "seconds",
                    "display_name": "Seconds",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": "1.0",
                },
                {
                    "name": "chatter",
                    "display_name": "Heartbeat",
                    "type": "boolean",
                    "has_default_value": True,
                    "default_value": "true",
                },
            ],
        },
        {
            "name": "blob",
            "display_name": "Large result",
            "type": "federated",
            "standalone": True,
            "description": "A JSON value of about ``megabytes`` MiB, after waiting ``seconds``.",
            "arguments": [
                {
                    "name": "megabytes",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": "1.0",
                },
                {"name": "tag", "type": "string", "has_default_value": True, "default_value": ""},
                {
                    "name": "seconds",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": "0.0",
                },
            ],
        },
        {
            "name": "blob_central",
            "type": "central",
            "description": "Central: run blob at the organizations through the proxy and check what came back.",
            "arguments": [
                {
                    "name": "megabytes",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": "1.0",
                },
                store_organizations(),
            ],
        },
        {
            "name": "crash",
            "display_name": "Crash",
            "type": "federated",
            "standalone": True,
            "description": "Print a line, then raise: the run ends crashed with the message in its log tail.",
            "arguments": [
                {
                    "name": "message",
                    "type": "string",
                    "has_default_value": True,
                    "default_value": "deliberate crash from the diagnostics algorithm",
                },
            ],
        },
        {
            "name": "shape",
            "display_name": "Data shape",
            "type": "federated",
            "standalone": True,
            "description": "Rows and column names of the first requested database (no values).",
            "databases": store_databases(),
        },
        {
            "name": "runtime_info",
            "display_name": "Sandbox",
            "type": "federated",
            "standalone": True,
            "description": "What the sandbox looks like from inside: user, interfaces, writable root, Python version.",
        },
    ],
}
