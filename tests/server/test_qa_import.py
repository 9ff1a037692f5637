"""``v6nb server import`` creates what a YAML file describes, once, and says so when re-run."""

from __future__ import annotations

import subprocess
import sys


def test_import_twice(tmp_path):
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
