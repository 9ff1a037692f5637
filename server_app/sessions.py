"""Revocable tokens: what each instance knows about users' sessions and open runs, cached briefly.

A user's tokens carry ``sv`` (the user's ``session_version``) and ``fam`` (the login they come
from). Every request checks both against :class:`SessionCache`: user id -> (session version,
revoked families, whether the user must enrol in two-factor login first), read from the database
at most once per ``session_cache_s`` seconds per user and forgotten locally as soon as a change
commits. A container token's run is checked the same way: once the run is final, the token fails.
Node tokens are not checked here (a node's API key is what an administrator takes back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from vantage6nb.common.errors import AuthenticationError, TotpEnrolmentRequired
from vantage6nb.common.schemas import OPEN_VALUES

from .db import Database
from .models import Organization, RefreshToken, Run, User

__all__ = [
    "ENROLMENT_ENDPOINTS",
    "SESSION_ENDED",
    "SessionCache",
    "TotpEnrolmentRequired",
    "UserSessions",
    "end_sessions",
    "forget_all_after_commit",
    "forget_after_commit",
    "totp_active",
]

SESSION_ENDED = (
    "Your session has ended (logged out, password or rights changed, or revoked by an "
    "administrator): log in again."
)
_FORGET_USERS, _FORGET_ALL = "v6nb_forget_users", "v6nb_forget_all"
_MAX_ENTRIES = 50_000  # past this, expired entries are dropped (users are few; runs are many)


class UserSessions(NamedTuple):
    """What a request needs to know about a user's tokens."""

    version: int
    revoked_families: frozenset[str]
    must_enrol: bool  # the organization requires TOTP and the user has none


def totp_active(secret: str | None) -> bool:
    """Whether a stored ``User.totp_secret`` is a confirmed second factor (not a pending one)."""
    return bool(secret) and not str(secret).startswith("pending:")


_USER = (
    select(User.session_version, User.totp_secret, Organization.require_totp)
    .join(Organization, User.organization_id == Organization.id)
    .where(User.id == bindparam("uid"))
)
_REVOKED = (
    select(RefreshToken.family)
    .where(RefreshToken.user_id == bindparam("uid"), RefreshToken.revoked.is_(True))
    .distinct()
)
_RUN = select(Run.status).where(Run.id == bindparam("rid"))


class SessionCache:
    """Per-instance cache of users' session state and of runs' openness.

    Examples
    --------
    >>> cache = SessionCache(db, ttl=1.0)  # doctest: +SKIP
    >>> cache.check({"type": "user", "sub": 3, "sv": 0, "fam": "f"})  # doctest: +SKIP
    """

    def __init__(
        self, db: Database, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self.ttl = ttl
        self._clock = clock
        self._users: dict[int, tuple[UserSessions | None, float]] = {}
        self._runs: dict[int, tuple[bool, float]] = {}
        self._lock = threading.Lock()
        from sqlalchemy import event

        assert db.sessions is not None, "Database.init_app must run first"
        event.listen(db.sessions, "after_commit", self._after_commit)

    # lookups -----------------------------------------------------------------------------------
    def user(self, user_id: int) -> UserSessions | None:
        """The user's session state (None: the user no longer exists)."""
        now = self._clock()
        hit = self._users.get(user_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        assert self._db.engine is not None
        with self._db.engine.connect() as conn:
            row = conn.execute(_USER, {"uid": user_id}).first()
            revoked = (
                frozenset(r[0] for r in conn.execute(_REVOKED, {"uid": user_id}))
                if row is not None
                else frozenset()
            )
        value = (
            None
            if row is None
            else UserSessions(int(row[0]), revoked, bool(row[2]) and not totp_active(row[1]))
        )
        self._store(self._users, user_id, (value, now + self.ttl))
        return value

    def run_open(self, run_id: int) -> bool:
        """Whether the run exists and is not final (a final run is remembered for good)."""
        now = self._clock()
        hit = self._runs.get(run_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        assert self._db.engine is not None
        with self._db.engine.connect() as conn:
            status = conn.execute(_RUN, {"rid": run_id}).scalar()
        is_open = status is not None and status in OPEN_VALUES
        self._store(self._runs, run_id, (is_open, now + self.ttl if is_open else float("inf")))
        return is_open

    def check(self, claims: dict[str, Any], *, endpoint: str | None = None) -> None:
        """Raise unless the (signature-checked) ``claims`` still stand.

        ``endpoint``: the Flask endpoint asked for; a user who must enrol in two-factor login
        first may reach only :data:`ENROLMENT_ENDPOINTS` (None: the socket, which they may not).
        """
        typ = claims.get("type")
        if typ == "user":
            state = self.user(int(claims["sub"]))
            if state is None:
                raise AuthenticationError(
                    "This account no longer exists: log in again with an account that does."
                )
            if claims.get("sv") != state.version or claims.get("fam") in state.revoked_families:
                raise AuthenticationError(SESSION_ENDED)
            if state.must_enrol and endpoint not in ENROLMENT_ENDPOINTS:
                uid = claims["sub"]
                raise TotpEnrolmentRequired(
                    "Your organization requires two-factor login: enrol first with "
                    f"POST /api/user/{uid}/totp and confirm the 6-digit code from your "
                    f"authenticator app with POST /api/user/{uid}/totp/confirm."
                )
        elif typ == "container":
            run_id = claims.get("run_id")
            if not isinstance(run_id, int) or not self.run_open(run_id):
                raise AuthenticationError(
                    f"Run {run_id} has finished: its container token no longer works (an "
                    "algorithm's token lives only while its run is open)."
                )

    # invalidation ------------------------------------------------------------------------------
    def forget(self, user_id: int) -> None:
        """Drop what this instance knows about ``user_id`` (read again on the next request)."""
        self._users.pop(user_id, None)

    def forget_all(self) -> None:
        """Drop every user's entry (an organization's policy changed)."""
        self._users.clear()

    def _after_commit(self, s: Session) -> None:
        for uid in s.info.pop(_FORGET_USERS, ()):
            self.forget(uid)
        if s.info.pop(_FORGET_ALL, False):
            self.forget_all()

    def _store(self, table: dict[int, Any], key: int, value: Any) -> None:
        if len(table) >= _MAX_ENTRIES:
            with self._lock:
                now = self._clock()
                for k in [k for k, (_, exp) in list(table.items()) if exp <= now]:
                    table.pop(k, None)
                if len(table) >= _MAX_ENTRIES:
                    table.clear()
        table[key] = value


# Endpoints a user who must enrol in two-factor login may still call.
ENROLMENT_ENDPOINTS = frozenset(
    {"auth.totp_start", "auth.totp_confirm", "auth.revoke_token", "users.me"}
)


def forget_after_commit(s: Session, user_id: int) -> None:
    """Have every cache forget ``user_id`` once ``s`` commits (this instance at once, others
    within ``session_cache_s``)."""
    s.info.setdefault(_FORGET_USERS, set()).add(user_id)


def forget_all_after_commit(s: Session) -> None:
    """Have the caches forget every user once ``s`` commits."""
    s.info[_FORGET_ALL] = True


def end_sessions(s: Session, user: User) -> None:
    """End every session of ``user``: each token carrying the old session version fails."""
    user.session_version = (user.session_version or 0) + 1
    forget_after_commit(s, user.id)
