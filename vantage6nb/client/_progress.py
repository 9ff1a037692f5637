"""The one-line text progress a waiting task shows on a terminal (notebooks get a widget instead)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, Protocol

from ..common.schemas import OPEN_VALUES

__all__ = ["ProgressLine", "choose_progress", "in_notebook"]


class _Progressing(Protocol):
    """What a progress line reads of a task (a Task, without importing it)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def runs(self) -> list[dict[str, Any]]: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where the task renders itself as a live widget)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class ProgressLine:
    """Rewrites one line on a stream: ``task 12 summary: 2/3 done (completed 2, active 1) 4.1s``.

    Examples
    --------
    >>> import io
    >>> line = ProgressLine(io.StringIO())
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last = ""
        self._width = 0

    def __call__(self, task: _Progressing) -> None:
        runs = task.runs
        counts = Counter(str(r.get("status")) for r in runs)
        done = sum(n for s, n in counts.items() if s not in OPEN_VALUES)
        detail = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        text = f"task {task.id} {task.name or task.method}: {done}/{len(runs)} done ({detail})"
        if text == self._last:
            return
        self._last = text
        line = f"{text} {time.monotonic() - self.start:.1f}s"
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self._last:
            self.stream.write("\n")
            self.stream.flush()


def choose_progress(progress: bool | Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """The reporter for ``Task.wait(progress=...)``: None (auto), True/False, or a callable."""
    if callable(progress):
        return progress
    if progress is None:
        progress = not in_notebook() and bool(getattr(sys.stderr, "isatty", lambda: False)())
    return ProgressLine() if progress else None
