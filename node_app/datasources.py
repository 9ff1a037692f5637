"""Data sources by label: resolve a task's requested databases to the node's configured ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .config import DatabaseConfig
from .runtimes.base import DatabaseMount

__all__ = ["DataSourceError", "requested_labels", "resolve_databases"]


class DataSourceError(Exception):
    """A requested database cannot be handed to the algorithm; the message is the run's reason."""


def requested_labels(databases: Iterable[Any] | None) -> list[str]:
    """Labels from a task's ``databases`` field (``[{"label": ...}]`` or plain strings), in order.

    Examples
    --------
    >>> requested_labels([{"label": "default"}, "extra"])
    ['default', 'extra']
    >>> requested_labels(None)
    []
    """
    out: list[str] = []
    for item in databases or []:
        label = item.get("label") if isinstance(item, dict) else item
        if isinstance(label, str) and label and label not in out:
            out.append(label)
    return out


def resolve_databases(
    labels: Sequence[str], configured: Sequence[DatabaseConfig]
) -> list[DatabaseMount]:
    """Map labels to :class:`DatabaseMount`; raise :class:`DataSourceError` with a clear reason.

    Files must exist; SQL URLs are passed through (the algorithm connects). No labels requested:
    nothing is mounted (a central part often needs no data).

    Examples
    --------
    >>> resolve_databases([], [])
    []
    """
    by_label = {d.label: d for d in configured}
    mounts: list[DatabaseMount] = []
    for label in labels:
        db = by_label.get(label)
        if db is None:
            known = ", ".join(f"'{k}'" for k in by_label) or "none"
            raise DataSourceError(
                f"database '{label}' not found: this node has no database with that label "
                f"(configured: {known}; check `databases` in node.yaml)"
            )
        if db.type != "sql":
            path = Path(db.uri)
            if not path.exists():
                raise DataSourceError(
                    f"database '{label}' not found: {path} does not exist (check `databases` in node.yaml)"
                )
            if not path.is_file():
                raise DataSourceError(
                    f"database '{label}' not usable: {path} is not a file (check `databases` in node.yaml)"
                )
        elif db.uri.startswith("sqlite:///") and db.uri != "sqlite:///:memory:":
            path = Path(db.uri[len("sqlite:///") :])
            if not path.is_file():
                raise DataSourceError(
                    f"database '{label}' not found: {path} does not exist (check `databases` in node.yaml)"
                )
        mounts.append(DatabaseMount(label=label, uri=db.uri, type=db.type, query=db.query))
    return mounts
