"""binder/start: in a fresh HOME it brings up a demo network that answers, then runs the given command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import pid_alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "binder" / "start"

pytestmark = pytest.mark.integration


def test_binder_files_exist():
    assert os.access(START, os.X_OK) and os.access(ROOT / "binder" / "postBuild", os.X_OK)
    reqs = (ROOT / "binder" / "requirements.txt").read_text()
    assert "jupyterlab" in reqs and "ipywidgets" in reqs
    post = (ROOT / "binder" / "postBuild").read_text()
    # the notebook extra (itables, plotly, ipylab, ...): what the notebooks import, kept in one place
    assert "pip install" in post and '-e ".[notebook]"' in post


def test_start_script_runs_command_and_demo_network(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("V6NB_DEMO")}
    env["HOME"] = str(home)
    marker = tmp_path / "ran"
    done = subprocess.run(
        [str(START), "touch", str(marker)],
        cwd=ROOT,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert marker.exists()  # the script exec'd the command it was given
    pid = int((home / ".v6nb" / "demo.pid").read_text())
    try:
        info_file = home / ".v6nb" / "demo.json"

        def demo_alive() -> None:
            assert pid_alive(pid), "the demo process exited before the network was up"

        # a generous bound so a broken start script fails instead of hanging
        wait_for(info_file.exists, 120, f"{info_file} to appear", interval=0.2, check=demo_alive)
        info = json.loads(info_file.read_text())
        assert (info_file.stat().st_mode & 0o777) == 0o600
        assert info["url"].startswith("http://127.0.0.1:")
        assert requests.get(f"{info['url']}/api/health", timeout=10).json()["status"] == "ok"
        import vantage6nb

        client = vantage6nb.Client(info["url"]).login(info["username"], info["password"])
        assert client.whoami["username"] == info["username"]
        assert len(client.nodes()) == 3
        assert set(info["datasets"]) == set(client.organizations()["name"])
        from vantage6nb import (
            demo,  # the quickstart attaches to this network instead of starting one
        )

        attached = demo.running(info_file)
        assert attached is not None and attached.url == info["url"]
        assert len(attached.client().organizations()) == 3
        attached.stop()
    finally:
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not pid_alive(pid), 60, "the demo process to stop", interval=0.2)
        except AssertionError:  # the checks below say what a clean stop left undone
            os.kill(pid, signal.SIGKILL)
    log = (home / ".v6nb" / "demo.log").read_text()
    assert "demo network up" in log
    assert not (home / ".v6nb" / "demo.json").exists()  # removed on a clean stop
