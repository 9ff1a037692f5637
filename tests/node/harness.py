"""A server process and probe-running node processes on loopback for the node's end-to-end tests,
and a researcher's REST helper. The processes themselves are ``tests.support``'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.support import NodeProcess, ServerProcess, wait_for
from vantage6nb.common.schemas import FINAL_VALUES

FINAL = set(FINAL_VALUES)
ROOT_PASSWORD = "root-pass-123"
RUNS_S = 120  # a hang guard, not a speed assertion


def server_process(tmp: Path) -> ServerProcess:
    """A server (not started yet: use it as a context manager) with root's password known."""
    return ServerProcess(tmp, {"root_password": ROOT_PASSWORD})


def probe_node(tmp: Path, name: str, server_url: str, api_key: str, **settings: Any) -> NodeProcess:
    """A process-runtime node in ``tmp/name`` that runs ``test/probe`` (and refuses other images)."""
    cfg = {
        "server_url": server_url,
        "api_key": api_key,
        "name": name,
        "data_dir": "state",
        "runtime": "process",
        "process_algorithms": {"test/probe": "tests.node.algorithms.probe"},
        "allowed_images": ["test/*"],
        "sync_interval_s": 30,
        "log_level": "INFO",
        **settings,
    }
    return NodeProcess(tmp / name, cfg)


class Api:
    """A tiny REST helper for a logged-in user."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self.s = requests.Session()
        self.s.trust_env = False
        body = self.call("POST", "/token/user", json={"username": username, "password": password})
        self.s.headers["Authorization"] = f"Bearer {body['access_token']}"
        self.user = body["user"]

    def call(
        self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201), **kw: Any
    ) -> Any:
        resp = self.s.request(method, f"{self.url}/api{path}", timeout=30, **kw)
        ok = (expect,) if isinstance(expect, int) else expect
        assert resp.status_code in ok, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json() if resp.content else None

    def create_task(
        self,
        collab: int,
        orgs: list[int],
        image: str,
        method: str,
        *,
        databases=None,
        **kwargs: Any,
    ) -> dict:
        payload = json.dumps({"method": method, "args": [], "kwargs": kwargs})
        body = {
            "collaboration_id": collab,
            "organizations": [{"id": o, "input": payload} for o in orgs],
            "image": image,
            "method": method,
            "name": f"test {method}",
            "databases": [
                {"label": d} for d in (databases if databases is not None else ["default"])
            ],
        }
        return self.call("POST", "/task", json=body)

    def runs(self, task_id: int) -> list[dict]:
        return self.call("GET", "/run", params={"task_id": task_id, "include": "result,log"})[
            "data"
        ]

    def wait_runs(self, task_id: int, statuses: set[str] = FINAL) -> list[dict]:
        """The task's runs once every one of them has a status in ``statuses``."""

        seen: list[dict] = []

        def reached() -> list[dict] | None:
            seen[:] = self.runs(task_id)
            return list(seen) if seen and all(r["status"] in statuses for r in seen) else None

        try:
            return wait_for(reached, RUNS_S, f"task {task_id}'s runs to reach {sorted(statuses)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the runs: {seen}") from None
