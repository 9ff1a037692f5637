"""Wire vocabulary: run statuses, limits and small validators shared by server, node and client."""

from __future__ import annotations

from enum import Enum
from typing import Any

from .errors import ValidationError

__all__ = [
    "FINAL_STATUSES",
    "MAX_PAYLOAD_BYTES",
    "OPEN_STATUSES",
    "RunStatus",
    "require_fields",
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

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


OPEN_STATUSES = frozenset({RunStatus.PENDING, RunStatus.INITIALIZING, RunStatus.ACTIVE})
FINAL_STATUSES = frozenset(set(RunStatus) - OPEN_STATUSES)


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
