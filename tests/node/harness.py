"""Real server and node processes on loopback for the node's end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
FINAL = {"completed", "failed", "crashed", "killed", "not allowed"}
_DEADLINE_S = 120  # a hang guard, not a speed assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("V6NB_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A child process whose output is collected line by line."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.lines: list[str] = []
        self.log_path = log_path
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as fh:
            for line in self.proc.stdout:
                self.lines.append(line)
                fh.write(line)
                fh.flush()

    def wait_for_line(self, needle: str) -> str:
        deadline = time.monotonic() + _DEADLINE_S
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r}; output:\n{''.join(self.lines[-60:])}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


class Server:
    """``python -m server_app start`` on a free loopback port, with a known root password."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "server.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "data_dir": str(tmp / "server-data"),
                    "root_password": "root-pass-123",
                    "threads": 16,
                    "log_level": "WARNING",
                }
            )
        )
        self.log = tmp / "server.log"
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc(
            [sys.executable, "-m", "server_app", "start", "--config", str(self.config)], self.log
        )
        deadline = time.monotonic() + _DEADLINE_S
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{''.join(self.proc.lines[-60:])}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


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
        deadline = time.monotonic() + _DEADLINE_S
        while time.monotonic() < deadline:
            runs = self.runs(task_id)
            if runs and all(r["status"] in statuses for r in runs):
                return runs
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} runs did not reach {statuses}: {self.runs(task_id)}")


class Node:
    """``python -m node_app start`` with a written node.yaml."""

    def __init__(
        self, tmp: Path, name: str, server_url: str, api_key: str, **settings: Any
    ) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "node.yaml"
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
        }
        cfg.update(settings)
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = self.dir / "node.log"
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc(
            [sys.executable, "-m", "node_app", "start", "--config", str(self.config)], self.log
        )
        self.proc.wait_for_line("connected to")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.proc.stop(sig) if self.proc else 0
