"""What one life of the node knows about its runs: which it holds, which were killed, which ended."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["NodeState"]

_FINISHED_KEPT = 100_000


def _never(rid: int) -> bool:
    return False


class NodeState:
    """The runs this node holds in hand, those killed on request, and those ended in this life.

    A run is held while it is queued, running or being reported; a run that ended in this life is
    remembered (a bounded number, oldest forgotten first) so it is never started twice in one life:
    a listing taken before its final update went out still shows it open (docs/security.md).
    All of it sits under one lock, which the methods take themselves.

    Examples
    --------
    >>> state = NodeState()
    >>> state.claim(7), state.claim(7)
    (True, False)
    >>> state.cancel(7), state.killed_on_request(7)
    (True, True)
    >>> state.end(7); state.claim(7), state.killed_on_request(7)
    (False, False)
    """

    def __init__(self, *, kept: int = _FINISHED_KEPT) -> None:
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._cancelled: set[int] = set()
        self._finished: dict[int, None] = {}  # runs this life ended, oldest first
        self._kept = kept

    def claim(self, rid: int, *, unless: Callable[[int], bool] = _never) -> bool:
        """Take ``rid`` in hand to run it; False when it is held already, ended in this life, or
        ``unless(rid)`` (asked under the same lock) says it must not start."""
        with self._lock:
            if rid in self._active or rid in self._finished or unless(rid):
                return False
            self._active.add(rid)
            return True

    def hold(self, rid: int) -> bool:
        """Take ``rid`` in hand to upload what it left; False when it is held already."""
        with self._lock:
            if rid in self._active:
                return False
            self._active.add(rid)
            return True

    def release(self, rid: int) -> None:
        """Let go of a run held by :meth:`hold`."""
        with self._lock:
            self._active.discard(rid)

    def end(self, rid: int) -> None:
        """Let go of a run claimed by :meth:`claim`, remembering that this life ran it to its end."""
        with self._lock:
            self._finished[rid] = None
            if len(self._finished) > self._kept:
                del self._finished[next(iter(self._finished))]
            self._active.discard(rid)
            self._cancelled.discard(rid)

    def cancel(self, rid: int) -> bool:
        """Mark a held run as killed on request; False when this node does not hold it."""
        with self._lock:
            if rid not in self._active:
                return False
            self._cancelled.add(rid)
            return True

    def mark_cancelled(self, rid: int) -> None:
        """Mark ``rid`` as killed (the server said it is final already), held or not."""
        with self._lock:
            self._cancelled.add(rid)

    def killed_on_request(self, rid: int) -> bool:
        """Whether ``rid`` was killed on request while this node held it."""
        with self._lock:
            return rid in self._cancelled

    def holds(self, rid: int) -> bool:
        """Whether this node holds ``rid`` now."""
        with self._lock:
            return rid in self._active
