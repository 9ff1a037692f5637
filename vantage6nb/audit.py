"""A data station's audit log in a notebook: read it as a DataFrame, verify its hash chain.

The node writes the log (``data_dir/audit/audit.log``, format in :mod:`vantage6nb.common.audit`);
an administrator of the station reads it here, on the node's machine.

Examples
--------
>>> from vantage6nb import audit  # doctest: +SKIP
>>> audit.verify("node-data/audit")  # doctest: +SKIP
[]
>>> audit.read("node-data/audit")[["seq", "time", "event", "run_id", "status"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .common.audit import verify_lines

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["read", "verify"]

_LOG = "audit.log"
_HEAD = "audit.head"


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The log file and its head, from the log file or the folder holding it."""
    p = Path(path)
    log = p / _LOG if p.is_dir() else p
    return log, log.with_name(_HEAD)


def verify(path: str | os.PathLike[str]) -> list[str]:
    """What is wrong with the audit log at ``path`` (file or folder): [] when the chain is intact.

    Raises
    ------
    FileNotFoundError
        When there is no log at ``path``.
    """
    log, head_path = _paths(path)
    head = json.loads(head_path.read_text(encoding="utf-8")) if head_path.exists() else None
    with log.open(encoding="utf-8", errors="replace") as fh:
        return verify_lines(fh, head)


def read(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The audit log at ``path`` (file or folder) as a DataFrame, one row per event, oldest first.

    Columns: ``seq``, ``time`` (UTC timestamps), ``event`` and every field the events carry
    (``run_id``, ``task_id``, ``image``, ``digest``, ``method``, ``arguments``, ``status``,
    ``released`` ...), then ``prev`` and ``hash``. Use :func:`verify` to check the chain.
    """
    import pandas as pd

    log, _ = _paths(path)
    with log.open(encoding="utf-8", errors="replace") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    first = [c for c in ("seq", "time", "event") if c in frame]
    last = [c for c in ("prev", "hash") if c in frame]
    middle = [c for c in frame.columns if c not in first and c not in last]
    frame = frame[first + middle + last]
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame
