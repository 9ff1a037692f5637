"""Final run updates persisted to disk before upload, so neither a server nor a node restart loses one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Outbox"]


class Outbox:
    """One JSON file per run under ``folder``: the PATCH body still to send.

    Examples
    --------
    >>> import tempfile
    >>> box = Outbox(Path(tempfile.mkdtemp()))
    >>> box.put(3, {"status": "completed"})
    >>> box.pending()
    {3: {'status': 'completed'}}
    >>> box.done(3); box.pending()
    {}
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: int) -> Path:
        return self.folder / f"run-{run_id}.json"

    def put(self, run_id: int, update: dict[str, Any]) -> None:
        """Write atomically (temp file + rename + fsync): a crash leaves the old or the new file."""
        path = self._path(run_id)
        tmp = path.with_suffix(".partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(update, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def has(self, run_id: int) -> bool:
        return self._path(run_id).exists()

    def result_path(self, run_id: int) -> Path:
        """Where a large result waits for its binary upload (named by the update's ``result_file``)."""
        return self.folder / f"run-{run_id}.result"

    def done(self, run_id: int) -> None:
        self._path(run_id).unlink(missing_ok=True)
        self.result_path(run_id).unlink(missing_ok=True)

    def pending(self) -> dict[int, dict[str, Any]]:
        """Every update not yet acknowledged by the server; unreadable files are skipped."""
        out: dict[int, dict[str, Any]] = {}
        for path in sorted(self.folder.glob("run-*.json")):
            try:
                out[int(path.stem[4:])] = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue
        return out
