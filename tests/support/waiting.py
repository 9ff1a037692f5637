"""Waiting for a state another process or thread reaches: poll it, with a deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vantage6nb.demo._processes import wait_until

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    what: str = "condition",
    *,
    interval: float = 0.1,
    check: Callable[[], None] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout`` s.

    For every state reached asynchronously (a run's status, a node online, a file written by a
    child process). ``timeout`` is a hang guard, not a speed assertion: make it generous.
    ``check`` runs before every poll and may raise, e.g. when the process that should get there
    has died. Raises ``AssertionError`` naming ``what`` and the last value seen (the library's
    ``wait_until``, polling at a fixed ``interval``).
    """
    return wait_until(
        predicate,
        timeout=timeout,
        what=what,
        check=check,
        interval=interval,
        max_interval=interval,
        error=AssertionError,
    )
