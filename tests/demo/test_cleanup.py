"""A demo network left running is cleaned up when its interpreter or notebook kernel exits: its
processes stop, and the temporary folder it made (database, secret key, data) is removed; a folder
the user gave is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import pid_alive, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START = (
    "import json\n"
    "from vantage6nb import demo\n"
    "net = demo.start(nodes=1{extra})\n"
    "print(json.dumps({{'workdir': str(net.workdir), 'pids': list(net.pids().values())}}),"
    " flush=True)\n"
)


def _inside(folder: str) -> list[int]:
    """Processes whose working directory is in ``folder`` (or was, before it was removed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or not ours to read
            continue
        if cwd == folder or cwd.startswith(folder + "/"):
            if pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _python(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_exiting_without_stop_removes_the_folder_and_stops_every_process() -> None:
    info = _python(START.format(extra=""))  # the script ends without net.stop()
    assert info["pids"] and all(info["pids"])
    assert not Path(info["workdir"]).exists()
    assert not [p for p in info["pids"] if pid_alive(p)]
    assert not _inside(info["workdir"])


def test_a_folder_the_user_gave_is_kept(tmp_path: Path) -> None:
    workdir = tmp_path / "my-demo"
    info = _python(START.format(extra=f", workdir={str(workdir)!r}"))
    assert Path(info["workdir"]) == workdir and (workdir / "server" / "server.yaml").is_file()
    assert not [p for p in info["pids"] if pid_alive(p)]
    assert not _inside(str(workdir))


def test_a_kernel_shut_down_without_stop_leaves_nothing_behind() -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        printed: list[str] = []

        def output(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])

        reply = kc.execute_interactive(START.format(extra=""), timeout=180, output_hook=output)
        assert reply["content"]["status"] == "ok", reply["content"]
        info = json.loads("".join(printed).strip().splitlines()[-1])
        assert Path(info["workdir"]).is_dir()
    finally:
        kc.stop_channels()
        # as JupyterLab shuts a kernel down: ask it to, and kill it if it takes too long
        km.shutdown_kernel(now=False)
    wait_for(lambda: not Path(info["workdir"]).exists(), 30, "the demo folder removed")
    wait_for(lambda: not [p for p in info["pids"] if pid_alive(p)], 30, "the demo processes gone")
    assert not _inside(info["workdir"])
