"""Login that resists guessing: per-account lockout, per-address limit, and the same for unknown names.

An account is locked for ``login_lockout_s`` seconds after ``login_max_failures`` failed logins
(counted in the database, so every instance sees it). A client address may fail
``login_rate_per_minute`` times a minute on each instance; past that every login from it is
answered 429. A username that names no account is locked the same way (in memory), so the
answers never tell whether an account exists.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from sqlalchemy import update

from vantage6nb.common.errors import TooManyAttempts

from .db import Database
from .models import User, utcnow

__all__ = [
    "LoginGuard",
    "TooManyAttempts",
    "account_failed",
    "account_succeeded",
    "account_wait",
    "address_error",
    "locked_error",
]

_MAX_GHOSTS = 10_000


def _in_words(seconds: float) -> str:
    s = max(1, math.ceil(seconds))
    if s < 120:
        return f"{s} seconds"
    return f"{math.ceil(s / 60)} minutes"


def locked_error(seconds: float) -> TooManyAttempts:
    """The answer while an account (or an unknown name) is locked."""
    until = (utcnow() + dt.timedelta(seconds=math.ceil(seconds))).strftime("%H:%M:%S")
    return TooManyAttempts(
        f"Too many failed logins for this account: try again in {_in_words(seconds)} "
        f"(after {until} UTC), or ask an administrator.",
        retry_after=seconds,
    )


def address_error(seconds: float) -> TooManyAttempts:
    """The answer while the client address is over its limit."""
    return TooManyAttempts(
        f"Too many failed logins from your address: try again in {_in_words(seconds)}.",
        retry_after=seconds,
    )


class LoginGuard:
    """The in-memory half: failures per client address, and lockouts of unknown usernames.

    Examples
    --------
    >>> g = LoginGuard(max_failures=2, lockout_s=60, rate_per_minute=3)
    >>> g.address_wait("10.0.0.1") is None
    True
    >>> for _ in range(3):
    ...     g.address_failed("10.0.0.1")
    >>> g.address_wait("10.0.0.1") > 0
    True
    """

    def __init__(
        self,
        *,
        max_failures: int,
        lockout_s: float,
        rate_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.lockout_s, self.rate = max_failures, lockout_s, rate_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses: dict[str, deque[float]] = {}
        # unknown username key -> (failures, locked until); oldest first, bounded
        self._ghosts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def address_wait(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        now = self._clock()
        with self._lock:
            times = self._addresses.get(address)
            if not times:
                return None
            while times and times[0] <= now - 60:
                times.popleft()
            if not times:
                del self._addresses[address]
                return None
            return times[0] + 60 - now if len(times) >= self.rate else None

    def address_failed(self, address: str) -> None:
        """Count a failed login from ``address``."""
        now = self._clock()
        with self._lock:
            if len(self._addresses) > _MAX_GHOSTS:  # drop addresses quiet for a minute
                for a in [a for a, t in self._addresses.items() if not t or t[-1] <= now - 60]:
                    del self._addresses[a]
            times = self._addresses.setdefault(address, deque())
            times.append(now)
            while len(times) > self.rate:
                times.popleft()

    def ghost_wait(self, key: str) -> float | None:
        """Seconds an unknown username stays locked, or None (as :func:`account_wait`)."""
        hit = self._ghosts.get(key)
        if hit is None:
            return None
        left = hit[1] - self._clock()
        return left if left > 0 else None

    def ghost_failed(self, key: str) -> None:
        """Count a failed login for an unknown username (as :func:`account_failed`)."""
        now = self._clock()
        with self._lock:
            failures, until = self._ghosts.pop(key, (0, 0.0))
            if until and until <= now:
                failures, until = 0, 0.0
            failures += 1
            if failures >= self.max_failures:
                failures, until = 0, now + self.lockout_s
            self._ghosts[key] = (failures, until)
            while len(self._ghosts) > _MAX_GHOSTS:
                self._ghosts.popitem(last=False)


def account_wait(user: User) -> float | None:
    """Seconds ``user`` stays locked, or None."""
    if user.locked_until is None:
        return None
    left = (user.locked_until - utcnow()).total_seconds()
    return left if left > 0 else None


def account_failed(db: Database, user_id: int, *, max_failures: int, lockout_s: float) -> bool:
    """Count a failed login in its own transaction (the request's rolls back); True: now locked."""
    with db.new_session() as s:
        s.execute(
            update(User)
            .where(User.id == user_id)
            .values(failed_logins=User.failed_logins + 1)
            .execution_options(synchronize_session=False)
        )
        user = s.get(User, user_id)
        if user is None:
            return False
        locked = user.failed_logins >= max_failures
        if locked:
            user.failed_logins = 0
            user.locked_until = utcnow() + dt.timedelta(seconds=lockout_s)
        s.commit()
        return locked


def account_succeeded(user: User) -> None:
    """Clear the failure count of ``user`` after a good login (committed with the request)."""
    if user.failed_logins or user.locked_until is not None:
        user.failed_logins, user.locked_until = 0, None
