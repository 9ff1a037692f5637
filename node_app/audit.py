"""The node's append-only, hash-chained audit log: every run and every decision, on the node's disk.

The format (and its verification) is :mod:`vantage6nb.common.audit`. Lines go to
``data_dir/audit/audit.log`` (each fsynced before the call returns), the head to
``data_dir/audit/audit.head``. A node restart continues the chain where it ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vantage6nb.common.audit import GENESIS, chain_line, verify_lines

__all__ = ["AuditLog", "digest_bytes", "digest_file", "verify_folder"]

LOG_NAME = "audit.log"
HEAD_NAME = "audit.head"
_TAIL = 64 * 1024  # enough to hold the last line


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data`` (what the log records instead of arguments and results)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class AuditLog:
    """Appends events to the chain in ``folder`` (created 0700); thread-safe.

    Examples
    --------
    >>> import tempfile
    >>> log = AuditLog(Path(tempfile.mkdtemp()) / "audit")
    >>> log.record("run_started", run_id=1)["seq"]
    1
    >>> AuditLog(log.folder).record("run_ended", run_id=1)["seq"]  # a new life continues
    2
    >>> verify_folder(log.folder)
    []
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.path = self.folder / LOG_NAME
        self.head_path = self.folder / HEAD_NAME
        self._lock = threading.Lock()
        self._seq, self._prev = self._last()

    def _last(self) -> tuple[int, str]:
        """The last line's seq and hash (0 and the genesis hash for a new log)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with self.path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL))
            tail = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        record = json.loads(tail)
        return int(record["seq"]), str(record["hash"])

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (``fields`` must be JSON); returns its seq and hash."""
        with self._lock:
            seq = self._seq + 1
            entry = {
                "event": event,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                **fields,
            }
            line, digest = chain_line(self._prev, seq, entry)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq, self._prev = seq, digest
            # the head may lag (no fsync): verification accepts a head behind, never one ahead
            tmp = self.head_path.with_suffix(".partial")
            tmp.write_text(json.dumps({"seq": seq, "hash": digest}), encoding="utf-8")
            os.replace(tmp, self.head_path)
            return {"seq": seq, "hash": digest}


def verify_folder(folder: Path) -> list[str]:
    """What is wrong with the audit log in ``folder`` ([] when the chain is intact)."""
    folder = Path(folder)
    path = folder / LOG_NAME
    if not path.exists():
        return [f"no audit log at {path}"]
    head = None
    head_path = folder / HEAD_NAME
    if head_path.exists():
        try:
            head = json.loads(head_path.read_text(encoding="utf-8"))
        except ValueError:
            return [f"{head_path} is not JSON"]
    with path.open(encoding="utf-8", errors="replace") as fh:
        return verify_lines(fh, head)
