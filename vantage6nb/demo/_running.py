"""Attach to a demo network started elsewhere (``binder/start``, or ``v6nb demo`` with an info file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RunningDemo", "running"]

DEFAULT_INFO = Path("~/.v6nb/demo.json")


class RunningDemo:
    """A handle on a demo network this process did not start: ``.stop()`` leaves it running."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.url: str = info["url"]
        self.credentials: dict[str, str] = {
            "username": info["username"],
            "password": info["password"],
        }
        self.datasets: dict[str, str] = dict(info.get("datasets") or {})
        self._clients: list[Any] = []

    def client(self) -> Any:
        """A researcher ``Client``, logged in."""
        from vantage6nb.client import Client

        c = Client(self.url).login(self.credentials["username"], self.credentials["password"])
        self._clients.append(c)
        return c

    def stop(self) -> None:
        """Close the clients made here; the network itself belongs to whoever started it."""
        for c in self._clients:
            c.close()
        self._clients.clear()

    def __enter__(self) -> RunningDemo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningDemo(url={self.url!r}, organizations={list(self.datasets)})"


def running(info_path: str | os.PathLike[str] | None = None) -> RunningDemo | None:
    """The demo network described by ``info_path`` if one is up and answering, else None.

    ``info_path`` defaults to ``$V6NB_DEMO_INFO`` or ``~/.v6nb/demo.json`` (written by ``binder/start``).

    Examples
    --------
    >>> from vantage6nb import demo
    >>> net = demo.running() or demo.start(nodes=3)  # doctest: +SKIP
    """
    import requests

    path = Path(info_path or os.environ.get("V6NB_DEMO_INFO") or DEFAULT_INFO).expanduser()
    try:
        info = json.loads(path.read_text())
        requests.get(f"{info['url']}/api/health", timeout=2).raise_for_status()
    except (OSError, ValueError, KeyError, TypeError, requests.RequestException):
        return None
    return RunningDemo(info)
