"""Wire vocabulary: run statuses, limits and small validators shared by server, node and client."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from .errors import ValidationError

__all__ = [
    "FAILED_VALUES",
    "FINAL_STATUSES",
    "FINAL_VALUES",
    "MAX_PAYLOAD_BYTES",
    "OPEN_ORDER",
    "OPEN_STATUSES",
    "OPEN_VALUES",
    "RunStatus",
    "require_fields",
    "status_rank",
    "task_status",
]

# Largest JSON body the server accepts (inputs and results travel as strings inside JSON).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024


class RunStatus(str, Enum):
    """Life of one run (one organization's part of a task)."""

    PENDING = "pending"
    INITIALIZING = "initializing"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"
    KILLED = "killed"
    NOT_ALLOWED = "not allowed"
    #: the node's disclosure policy withheld the output (the reason names the rule)
    REFUSED = "refused"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


OPEN_STATUSES = frozenset({RunStatus.PENDING, RunStatus.INITIALIZING, RunStatus.ACTIVE})
FINAL_STATUSES = frozenset(set(RunStatus) - OPEN_STATUSES)
#: The same sets as plain strings, as they travel in JSON and sit in the database.
OPEN_VALUES = frozenset(s.value for s in OPEN_STATUSES)
FINAL_VALUES = frozenset(s.value for s in FINAL_STATUSES)
FAILED_VALUES = FINAL_VALUES - {RunStatus.COMPLETED.value}  # every way a run ends without result
#: The open statuses in the order a run passes through them.
OPEN_ORDER = (RunStatus.PENDING.value, RunStatus.INITIALIZING.value, RunStatus.ACTIVE.value)


def status_rank(status: object) -> int:
    """How far a run has come: 0 pending, 1 initializing, 2 active, 3 final; -1 unknown.

    A status may only move up this rank (a late event never moves a run back).

    Examples
    --------
    >>> status_rank("active"), status_rank(RunStatus.KILLED), status_rank("nonsense")
    (2, 3, -1)
    """
    text = str(status)
    if text in FINAL_VALUES:
        return 3
    return OPEN_ORDER.index(text) if text in OPEN_ORDER else -1


def task_status(statuses: Iterable[object]) -> str:
    """A task's status from its runs' (the one vocabulary of task lists, reprs and monitors).

    While a run is open: the least advanced open status. Then ``completed`` when every run
    completed; ``killed`` or ``refused`` when every run that did not complete was killed, or
    refused by its node's disclosure policy; ``failed`` otherwise.

    Examples
    --------
    >>> task_status(["completed", "active", "pending"])
    'pending'
    >>> task_status(["killed", "completed"]), task_status(["refused", "crashed"])
    ('killed', 'failed')
    """
    seen = [str(s) for s in statuses]
    for status in OPEN_ORDER:
        if status in seen:
            return status
    ended = set(seen) - {RunStatus.COMPLETED.value}
    if not ended:
        return RunStatus.COMPLETED.value
    if ended in ({RunStatus.KILLED.value}, {RunStatus.REFUSED.value}):
        return ended.pop()
    return RunStatus.FAILED.value


def require_fields(
    body: Any,
    spec: dict[str, type | tuple[type, ...]],
    *,
    optional: dict[str, type | tuple[type, ...]] | None = None,
) -> dict[str, Any]:
    """Check a JSON object against ``{field: type}``; raise ValidationError naming every bad field.

    Examples
    --------
    >>> require_fields({"name": "x"}, {"name": str})
    {'name': 'x'}
    """
    if not isinstance(body, dict):
        raise ValidationError(
            "Request body must be a JSON object.", errors={"body": "expected an object"}
        )
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name, typ in spec.items():
        if name not in body or body[name] is None:
            errors[name] = "required"
        elif not _is(body[name], typ):
            errors[name] = f"expected {_tname(typ)}"
        else:
            out[name] = body[name]
    for name, typ in (optional or {}).items():
        if name in body and body[name] is not None:
            if not _is(body[name], typ):
                errors[name] = f"expected {_tname(typ)}"
            else:
                out[name] = body[name]
    if errors:
        raise ValidationError("Invalid request: fix the fields listed in 'errors'.", errors=errors)
    return out


def _is(value: Any, typ: type | tuple[type, ...]) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int in Python, not in JSON
    return isinstance(value, types)


def _tname(typ: type | tuple[type, ...]) -> str:
    types = typ if isinstance(typ, tuple) else (typ,)
    return " or ".join(t.__name__ for t in types)
