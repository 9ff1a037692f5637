"""One error hierarchy for server, node and client, each class with an HTTP status and a stable code.

::

    V6Error (500, "error")
    ├── BadRequest (400, "bad_request")
    │   ├── ValidationError (400, "validation_error")
    │   └── PayloadTooLarge (413, "payload_too_large")
    ├── AuthenticationError (401, "unauthenticated")
    │   ├── TokenExpired (401, "token_expired")
    │   └── TotpRequired (401, "totp_required")
    ├── PermissionDenied (403, "forbidden")
    │   └── TotpEnrolmentRequired (403, "totp_enrolment_required")
    ├── NotFound (404, "not_found")
    ├── Conflict (409, "conflict")
    ├── TooManyAttempts (429, "too_many_attempts")
    ├── ServerUnavailable (503, "unavailable")
    ├── TaskError (400, "task_error")
    │   ├── TaskFailed (400, "task_failed")
    │   │   └── DisclosureRefused (403, "disclosure_refused")
    │   └── TaskTimeout (408, "task_timeout") also a builtin TimeoutError
    ├── ConfigurationError (400, "configuration_error")
    └── CryptoError (400, "crypto_error")
        ├── DecryptionError (400, "decryption_error") also a ValueError
        ├── KeyMismatch (409, "key_mismatch")
        └── MissingKey (400, "missing_key")

The server renders every error as ``{"msg": ..., "errors": {...}, "code": ...}``;
:func:`error_from_payload` turns that JSON back into the same class on the client.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "CryptoError",
    "DecryptionError",
    "DisclosureRefused",
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
    "TooManyAttempts",
    "TotpEnrolmentRequired",
    "TotpRequired",
    "V6Error",
    "ValidationError",
    "error_from_payload",
]


class V6Error(Exception):
    """Base of every vantage6nb error; ``status`` is the HTTP status, ``code`` a stable name."""

    status: int = 500
    code: str = "error"

    def __init__(self, msg: str = "", *, errors: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errors: dict[str, Any] = dict(errors or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every API error has."""
        return {"msg": self.msg, "errors": self.errors, "code": self.code}

    def __str__(self) -> str:
        return _with_details(self.msg, self.errors)


def _with_details(msg: str, errors: dict[str, Any]) -> str:
    if not errors:
        return msg
    details = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return f"{msg} ({details})"


class BadRequest(V6Error):
    status, code = 400, "bad_request"


class ValidationError(BadRequest):
    status, code = 400, "validation_error"


class PayloadTooLarge(BadRequest):
    status, code = 413, "payload_too_large"


class AuthenticationError(V6Error):
    status, code = 401, "unauthenticated"


class TokenExpired(AuthenticationError):
    status, code = 401, "token_expired"


class TotpRequired(AuthenticationError):
    """The password was right and the account logs in with a second factor: log in again with
    ``totp=<the 6-digit code>``."""

    status, code = 401, "totp_required"


class PermissionDenied(V6Error):
    status, code = 403, "forbidden"


class TotpEnrolmentRequired(PermissionDenied):
    """The user's organization requires two-factor login and the user has not enrolled yet."""

    status, code = 403, "totp_enrolment_required"


class TooManyAttempts(V6Error):
    """Too many failed logins; ``retry_after`` says how many seconds until one may work again."""

    status, code = 429, "too_many_attempts"

    def __init__(
        self,
        msg: str = "",
        *,
        errors: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        errors = dict(errors or {})
        if retry_after is None:  # rebuilt from the wire: the errors say it
            given = errors.get("retry_after")
            retry_after = float(given) if isinstance(given, int | float) else 1.0
        else:
            errors["retry_after"] = max(1, math.ceil(retry_after))
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(msg, errors=errors)


class NotFound(V6Error):
    status, code = 404, "not_found"


class Conflict(V6Error):
    status, code = 409, "conflict"


class ServerUnavailable(V6Error):
    status, code = 503, "unavailable"


class TaskError(V6Error):
    status, code = 400, "task_error"


class TaskFailed(TaskError):
    status, code = 400, "task_failed"


class DisclosureRefused(TaskFailed):
    """A node's disclosure policy withheld a run's output (the run ended ``refused``).

    ``organization`` is the refusing organization's name, ``rule`` the policy rule (for example
    ``min_count``), ``threshold`` its limit and ``what`` the node's sentence on what fell short.
    They travel in ``errors`` too, so :func:`error_from_payload` rebuilds them.

    Examples
    --------
    >>> exc = DisclosureRefused("refused by Leiden", organization="Leiden", rule="min_count",
    ...                         threshold=5, what="a cell of species x island is below 5 records")
    >>> back = error_from_payload(exc.status, exc.to_dict())
    >>> type(back).__name__, back.organization, back.rule, back.threshold
    ('DisclosureRefused', 'Leiden', 'min_count', 5)
    """

    status, code = 403, "disclosure_refused"

    def __init__(
        self,
        msg: str = "",
        *,
        errors: dict[str, Any] | None = None,
        organization: str | None = None,
        rule: str = "",
        threshold: float | int | None = None,
        what: str = "",
    ) -> None:
        given = {"organization": organization, "rule": rule, "threshold": threshold, "what": what}
        merged = dict(errors or {})
        merged.update({k: v for k, v in given.items() if v not in (None, "")})
        super().__init__(msg, errors=merged)
        # from the arguments, else from ``errors`` (a payload read back by error_from_payload)
        self.organization: str | None = merged.get("organization")
        self.rule: str = str(merged.get("rule") or "")
        self.threshold: float | int | None = merged.get("threshold")
        self.what: str = str(merged.get("what") or "")

    def __str__(self) -> str:
        # the message already names the organization, rule and threshold: show the rest only
        rest = {k: v for k, v in self.errors.items() if k not in _REFUSAL_FIELDS}
        return _with_details(self.msg, rest)


_REFUSAL_FIELDS = frozenset({"organization", "rule", "threshold", "what"})


class TaskTimeout(TaskError, TimeoutError):
    status, code = 408, "task_timeout"


class ConfigurationError(V6Error):
    status, code = 400, "configuration_error"


class CryptoError(V6Error):
    status, code = 400, "crypto_error"


class DecryptionError(CryptoError, ValueError):
    status, code = 400, "decryption_error"


class KeyMismatch(CryptoError):
    """A public key is not the expected one. ``problem`` says what differs and ``hint`` what to do
    next (joined with ". " into the message), so a caller can give its own hint (:meth:`with_hint`).

    Examples
    --------
    >>> exc = KeyMismatch("the key of org 1 changed", hint="re-pin it")
    >>> str(exc.with_hint("call client.trust_key(1)"))
    'the key of org 1 changed. call client.trust_key(1)'
    """

    status, code = 409, "key_mismatch"

    def __init__(
        self, msg: str = "", *, errors: dict[str, Any] | None = None, hint: str = ""
    ) -> None:
        super().__init__(f"{msg}. {hint}" if hint else msg, errors=errors)
        self.problem = msg
        self.hint = hint

    def with_hint(self, hint: str) -> KeyMismatch:
        """The same mismatch (message and ``errors``) with another hint."""
        return KeyMismatch(self.problem, errors=self.errors, hint=hint)


class MissingKey(CryptoError):
    status, code = 400, "missing_key"


def _all_subclasses(cls: type[V6Error]) -> list[type[V6Error]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[V6Error]] = {c.code: c for c in _all_subclasses(V6Error)}
_BY_STATUS: dict[int, type[V6Error]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    408: TaskTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyAttempts,
    503: ServerUnavailable,
}


def error_from_payload(status: int, payload: Any) -> V6Error:
    """Rebuild the typed error from an HTTP status and the server's JSON error body."""
    if isinstance(payload, dict):
        msg = str(payload.get("msg") or f"HTTP {status}")
        errors = payload.get("errors") if isinstance(payload.get("errors"), dict) else None
        cls = _BY_CODE.get(str(payload.get("code")), None)
    else:
        msg, errors, cls = f"HTTP {status}: {str(payload)[:200]}", None, None
    if cls is None:
        cls = _BY_STATUS.get(status, V6Error)
    return cls(msg, errors=errors)
