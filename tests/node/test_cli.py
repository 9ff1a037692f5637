"""The node CLI: clear exits on bad configuration; the node process stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from node_app.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["start", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_setting(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("runtime: vm\napi_key: k\n")
    assert main(["start", "--config", str(cfg)]) == 2
    assert "runtime" in capsys.readouterr().err


def test_no_api_key(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("name: x\n")
    assert main(["start", "--config", str(cfg)]) == 2
    assert "api_key" in capsys.readouterr().err


def test_create_private_key_needs_config_or_out(capsys) -> None:
    assert main(["create-private-key"]) == 2
    assert "--config node.yaml or --out PATH" in capsys.readouterr().err


def test_daemon_does_not_import_pandas() -> None:
    code = (
        "import sys, node_app.cli, node_app.daemon, node_app.proxy;"
        "bad = [m for m in ('pandas', 'numpy', 'flask', 'ipywidgets') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
