"""The researcher-facing error hierarchy: the same classes as :mod:`vantage6nb.common.errors`.

A notebook can ``except vantage6nb.errors.NotFound`` (or ``vantage6nb.errors.TaskTimeout``) and get
exactly the class the server named in its JSON error body.
"""

from __future__ import annotations

from .common.errors import (
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    Conflict,
    CryptoError,
    DecryptionError,
    KeyMismatch,
    MissingKey,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServerUnavailable,
    TaskError,
    TaskFailed,
    TaskTimeout,
    TokenExpired,
    V6Error,
    ValidationError,
    error_from_payload,
)

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "CryptoError",
    "DecryptionError",
    "KeyMismatch",
    "MissingKey",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServerUnavailable",
    "TaskError",
    "TaskFailed",
    "TaskTimeout",
    "TokenExpired",
    "V6Error",
    "ValidationError",
    "error_from_payload",
]
