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

Every error has a short, readable :attr:`V6Error.summary` and optional :attr:`V6Error.details`
(a node's log, say); a notebook shows the summary and folds the details (``_repr_html_``, and the
IPython display :mod:`vantage6nb.errors` installs). A :class:`TaskFailed` lists each run that did
not complete as a :class:`RunFailure`. A run whose algorithm refused its input (raised
:class:`ValidationError`) ends ``failed`` with a reason starting with :data:`REJECTED`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    "REJECTED",
    "RunFailure",
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
    "rejection",
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

    @property
    def summary(self) -> str:
        """What went wrong and what to do, without the :attr:`details`."""
        return str(self)

    @property
    def details(self) -> str:
        """What one reads only when the summary is not enough (node logs); "" when there is none.

        An error raised ``from`` another vantage6nb error has that error's details.
        """
        cause = self.__cause__
        return cause.details if isinstance(cause, V6Error) else ""

    def _repr_html_(self) -> str:
        return error_html(self)


def _with_details(msg: str, errors: dict[str, Any], hide: frozenset[str] = frozenset()) -> str:
    shown = {k: v for k, v in errors.items() if k not in hide}
    if not shown:
        return msg
    details = "; ".join(f"{k}: {v}" for k, v in shown.items())
    return f"{msg} ({details})"


def error_html(exc: V6Error, *, where: str = "") -> str:
    """The error as a notebook shows it: its class and summary, ``where`` (the researcher's line
    that raised it), and the details folded behind a toggle.

    Examples
    --------
    >>> print(error_html(NotFound("No task 12.")))  # doctest: +ELLIPSIS
    <div class="v6nb-error" ...><b>NotFound</b>: No task 12.</div>
    """
    body = f"<b>{type(exc).__name__}</b>: {html.escape(exc.summary)}"
    if where:
        body += f'\n<span style="opacity:0.7">{html.escape(where)}</span>'
    details = exc.details
    if details:
        what = getattr(exc, "details_title", "") or "Details"
        body += (
            f"\n<details><summary>{html.escape(what)}</summary>"
            f'<pre style="margin:0.3em 0 0 0">{html.escape(details)}</pre></details>'
        )
    return f'<div class="v6nb-error" style="{_HTML_STYLE}">{body}</div>'


_HTML_STYLE = (
    "white-space:pre-wrap;font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px);padding:6px 10px;"
    "background:var(--jp-rendermime-error-background,#fdecea);"
    "border-left:4px solid var(--jp-error-color1,#d32f2f)"
)

#: How the reason of a run starts when its algorithm refused the input (raised
#: :class:`ValidationError`): the run ended ``failed``, not ``crashed``, and the rest of the reason
#: is the algorithm's message. The algorithm wrapper ends its log with such a line.
REJECTED = "rejected: "


def rejection(log: str) -> str | None:
    r"""The ``rejected: ...`` line a log ends with (the algorithm refused its input), if any.

    Examples
    --------
    >>> rejection("Traceback ...\nValidationError: no\nrejected: no column 'agee'\n")
    "rejected: no column 'agee'"
    >>> rejection("RuntimeError: boom") is None
    True
    """
    last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
    return last if last.startswith(REJECTED) and len(last) > len(REJECTED) else None


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


@dataclass(frozen=True)
class RunFailure:
    """One organization's run that did not complete, as a researcher reads it.

    ``reason`` is the node's, ``hint`` what to do about it, ``log`` the tail of the run's log and
    ``parts`` the failed runs of the subtasks a central run waited for.

    Examples
    --------
    >>> RunFailure("Leiden", "crashed", "RuntimeError: boom", log="boom").organization
    'Leiden'
    """

    organization: str
    status: str
    reason: str
    hint: str = ""
    log: str = ""
    parts: tuple[RunFailure, ...] = ()


class TaskFailed(TaskError):
    """A task whose runs did not all complete; ``failures`` has each such run by organization.

    The message is the summary (one line per organization, what to do), followed by the runs' log
    tails, which :attr:`details` also holds.

    Examples
    --------
    >>> exc = TaskFailed("Task 3 failed at Leiden.",
    ...                  failures=[RunFailure("Leiden", "crashed", "boom", log="Traceback ...")])
    >>> print(exc.summary); print(exc.details)
    Task 3 failed at Leiden.
    Leiden:
        | Traceback ...
    """

    status, code = 400, "task_failed"
    #: the run and task ids in ``errors`` are for programs; the message names organizations
    _HIDDEN = frozenset({"failed_runs", "task_id"})

    def __init__(
        self,
        msg: str = "",
        *,
        errors: dict[str, Any] | None = None,
        failures: Sequence[RunFailure] = (),
    ) -> None:
        self.failures: tuple[RunFailure, ...] = tuple(failures)
        self._summary = msg
        logs = _logs_text(self.failures)
        super().__init__(f"{msg}\n\n{logs}" if logs else msg, errors=errors)

    def __str__(self) -> str:
        return _with_details(self.msg, self.errors, self._HIDDEN)

    @property
    def summary(self) -> str:
        return _with_details(self._summary, self.errors, self._HIDDEN)

    @property
    def details(self) -> str:
        return _logs_text(self.failures) or super().details

    @property
    def details_title(self) -> str:
        """What :attr:`details` holds, as the notebook's toggle names it."""
        names = [f.organization for f in self.failures if f.log.strip() or f.parts]
        return f"Node logs: {', '.join(names)}" if names else "Details"


def _logs_text(failures: Sequence[RunFailure], indent: str = "") -> str:
    """Each failure's log tail under its organization's name."""
    out: list[str] = []
    for f in failures:
        if f.log.strip():
            out.append(f"{indent}{f.organization}:")
            out += [f"{indent}    | {line}" for line in f.log.rstrip().splitlines()]
        sub = _logs_text(f.parts, indent + "  ")
        if sub:
            out.append(f"{indent}{f.organization}, the parts it waited for:")
            out.append(sub)
    return "\n".join(out)


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
        failures: Sequence[RunFailure] = (),
    ) -> None:
        given = {"organization": organization, "rule": rule, "threshold": threshold, "what": what}
        merged = dict(errors or {})
        merged.update({k: v for k, v in given.items() if v not in (None, "")})
        super().__init__(msg, errors=merged, failures=failures)
        # from the arguments, else from ``errors`` (a payload read back by error_from_payload)
        self.organization: str | None = merged.get("organization")
        self.rule: str = str(merged.get("rule") or "")
        self.threshold: float | int | None = merged.get("threshold")
        self.what: str = str(merged.get("what") or "")

    # the message already names the organization, rule and threshold: show the rest only
    _HIDDEN = TaskFailed._HIDDEN | {"organization", "rule", "threshold", "what"}


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
