"""The node's hash-chained audit log: intact after normal use and a restart, broken by any tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_app.audit import HEAD_NAME, LOG_NAME, AuditLog, verify_folder
from node_app.cli import main
from vantage6nb import audit as reader


def _filled(folder: Path, n: int = 5) -> AuditLog:
    log = AuditLog(folder)
    for i in range(n):
        log.record("run_started", run_id=i, image="v6nb/summary", arguments=f"sha256:{i}")
    return log


def _lines(folder: Path) -> list[str]:
    return (folder / LOG_NAME).read_text(encoding="utf-8").splitlines(keepends=True)


def _write(folder: Path, lines: list[str]) -> None:
    (folder / LOG_NAME).write_text("".join(lines), encoding="utf-8")


def test_intact_log_verifies_and_continues_after_a_restart(tmp_path) -> None:
    folder = tmp_path / "audit"
    _filled(folder, 3)
    again = AuditLog(folder)  # a new life of the node
    assert again.record("run_ended", run_id=2, status="completed")["seq"] == 4
    assert verify_folder(folder) == []
    assert reader.verify(folder) == []
    assert oct((folder / LOG_NAME).stat().st_mode & 0o777) == "0o600"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def _edit_value(lines: list[str]) -> list[str]:
    record = json.loads(lines[2])
    record["image"] = "evil/miner"
    return [
        *lines[:2],
        json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n",
        *lines[3:],
    ]


def _edit_spacing(lines: list[str]) -> list[str]:
    return [*lines[:1], lines[1].replace(",", ", ", 1), *lines[2:]]


@pytest.mark.parametrize(
    "tamper",
    [
        _edit_value,
        _edit_spacing,
        lambda lines: lines[:2] + lines[3:],  # a line removed
        lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],  # two lines swapped
        lambda lines: lines[:-1],  # the last line cut off (only the head sees it)
        lambda lines: [*lines, lines[-1]],  # a line repeated
    ],
    ids=["value-edited", "spacing-edited", "removed", "reordered", "last-cut", "duplicated"],
)
def test_any_tampering_fails_verification(tmp_path, tamper) -> None:
    folder = tmp_path / "audit"
    _filled(folder)
    _write(folder, tamper(_lines(folder)))
    problems = verify_folder(folder)
    assert problems, "tampering went unnoticed"
    assert reader.verify(folder) == problems
    assert not any("evil/miner" in p for p in problems)  # says where, not what


def test_a_head_that_lags_behind_the_log_is_accepted(tmp_path) -> None:
    """A crash between the line and the head leaves the head one behind: not tampering."""
    folder = tmp_path / "audit"
    log = _filled(folder, 2)
    old_head = (folder / HEAD_NAME).read_text()
    log.record("run_ended", run_id=1)
    (folder / HEAD_NAME).write_text(old_head)
    assert verify_folder(folder) == []


def test_cli_verify_exits_nonzero_on_tampering(tmp_path, capsys) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"name: n\napi_key: k\ndata_dir: {tmp_path / 'data'}\n")
    folder = tmp_path / "data" / "audit"
    _filled(folder, 3)
    assert main(["audit", "verify", "--config", str(cfg)]) == 0
    assert "intact: 3 event(s)" in capsys.readouterr().out
    _write(folder, _lines(folder)[1:])
    assert main(["audit", "verify", "--config", str(cfg)]) == 1
    assert "NOT intact" in capsys.readouterr().err


def test_read_gives_a_dataframe_oldest_first(tmp_path) -> None:
    folder = tmp_path / "audit"
    _filled(folder, 3)
    frame = reader.read(folder)
    assert list(frame["seq"]) == [1, 2, 3]
    assert list(frame.columns[:3]) == ["seq", "time", "event"]
    assert list(frame.columns[-2:]) == ["prev", "hash"]
    assert str(frame["time"].dtype).startswith("datetime64")
    assert list(frame["run_id"]) == [0, 1, 2]


def test_cli_verify_on_a_node_without_runs_or_never_started(tmp_path, capsys) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"name: n\napi_key: k\ndata_dir: {tmp_path / 'data'}\n")
    assert main(["audit", "verify", "--config", str(cfg)]) == 2
    assert "start the node once" in capsys.readouterr().err
    AuditLog(tmp_path / "data" / "audit")  # what a node's start creates
    assert main(["audit", "verify", "--config", str(cfg)]) == 0
    assert "no runs recorded yet" in capsys.readouterr().out
