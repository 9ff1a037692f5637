"""The ``v6nb server`` command line: ``import`` of a YAML file, and a start that cannot listen."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

from server_app import cli


def test_import_twice(tmp_path):
    # creates what the file describes, once, and says so when re-run
    (tmp_path / "server.yaml").write_text("data_dir: data\nroot_password: import-root-pw\n")
    (tmp_path / "entities.yaml").write_text(
        "organizations: [{name: Leiden}, {name: Utrecht}]\n"
        "collaborations: [{name: P, organizations: [Leiden, Utrecht]}]\n"
        "users: [{username: alice, password: alice-secret, organization: Leiden}]\n"
    )
    cmd = [sys.executable, "-m", "server_app", "import", "--config", "server.yaml", "entities.yaml"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "organization" in first.stdout and first.stdout.count("api_key") == 2
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "nothing to create" in again.stdout and "api_key" not in again.stdout


def test_server_start_on_a_port_in_use_says_so(tmp_path: Any, capsys: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["start", "--port", str(port), "--data-dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "in use" in err and "--port" in err
