"""What a blocking wait shows: the live monitor in a notebook, one updating line on a terminal."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, Protocol

from ..common.schemas import OPEN_VALUES

__all__ = [
    "MODES",
    "PROGRESS_ENV",
    "MonitorReport",
    "ProgressLine",
    "choose_progress",
    "in_notebook",
    "in_terminal_ipython",
]

#: The environment variable that sets the default of ``progress`` for every wait of the process.
PROGRESS_ENV = "V6NB_PROGRESS"
#: What ``progress=`` takes (besides True, False and a callable).
MODES = ("auto", "monitor", "line", "off")

Progress = bool | str | Callable[[Any], None] | None


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


def _shell() -> Any:
    module = sys.modules.get("IPython")
    if module is None:
        return None
    try:
        return module.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure means: no IPython shell
        return None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a wait shows the live TaskMonitor).

    Examples
    --------
    >>> in_notebook()
    False
    """
    ip = _shell()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def in_terminal_ipython() -> bool:
    """True in terminal IPython (where a wait shows the progress line).

    Examples
    --------
    >>> in_terminal_ipython()
    False
    """
    ip = _shell()
    return ip is not None and type(ip).__name__ == "TerminalInteractiveShell"


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressLine:
    """Rewrites one line on a stream: ``task 12 summary: 2/3 done (completed 2, active 1) 4.1s``.

    Runs of the task's subtasks (a central algorithm's parts) are counted as ``parts``.

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
        parts = getattr(task, "part_runs", None)
        sub = parts() if callable(parts) else []
        if sub:
            sub_done = sum(1 for r in sub if str(r.get("status")) not in OPEN_VALUES)
            text += f", parts {sub_done}/{len(sub)} done"
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


class MonitorReport:
    """Shows the live TaskMonitor of the task waited for, once, at the first report.

    The monitor follows the task's events itself (and its subtasks'), so later reports do
    nothing; a task with a live monitor on screen already (displayed, or waited for before)
    gets no second one.

    Examples
    --------
    >>> report = MonitorReport()
    >>> report.shown is None
    True
    """

    def __init__(self) -> None:
        self.shown: Any = None
        self._tried = False

    def __call__(self, task: Any) -> None:
        if self._tried:
            return
        self._tried = True
        from . import _display

        live = _display.live_display(task)
        book = getattr(task, "run_book", None)
        if live is None and book is not None and book.all_final():
            return  # finished before the wait: nothing to watch (the task shows itself)
        self.shown = live or _display.show(task, waiting=True)

    def close(self) -> None:
        """Nothing to end: the monitor stops by itself when the task is done."""


def _mode(progress: Progress, default: Progress) -> Progress:
    if progress is None:
        progress = default
    if progress is None:
        progress = os.environ.get(PROGRESS_ENV) or "auto"
    if isinstance(progress, str):
        value = progress.strip().lower()
        if value in ("1", "true", "on", "yes"):
            return True
        if value in ("0", "false", "no", "none", ""):
            return False
        if value not in MODES:
            raise ValueError(
                f"progress={progress!r} is not one of {', '.join(MODES)}, True, False or a "
                f"callable (check the argument, Client(progress=...) or ${PROGRESS_ENV})."
            )
        return False if value == "off" else value
    return progress


def choose_progress(
    progress: Progress, *, default: Progress = None, stream: IO[str] | None = None
) -> Callable[[Any], None] | None:
    """The reporter for ``Task.wait(progress=...)``.

    ``progress`` (else ``default``, the client's setting, else ``$V6NB_PROGRESS``, else
    ``"auto"``): ``"auto"`` shows the live monitor in a Jupyter kernel with ipywidgets, the
    progress line when stderr is a terminal or in terminal IPython, nothing otherwise (a plain
    script, a pipe); ``"monitor"`` the monitor (the line outside a kernel); ``"line"`` the line;
    ``True`` what suits where it runs, even when ``"auto"`` would show nothing; ``False`` or
    ``"off"`` nothing; a callable is called with the task on every change.

    Examples
    --------
    >>> choose_progress(False) is None, choose_progress("off") is None
    (True, True)
    >>> type(choose_progress("line")).__name__
    'ProgressLine'
    """
    mode = _mode(progress, default)
    if callable(mode):
        return mode
    if mode is False:
        return None
    kernel = in_notebook() and _widgets_available()
    if mode in (True, "monitor"):
        return MonitorReport() if kernel else ProgressLine(stream)
    if mode == "line":
        return ProgressLine(stream)
    # auto
    if kernel:
        return MonitorReport()
    out = stream or sys.stderr
    if in_terminal_ipython() or bool(getattr(out, "isatty", lambda: False)()):
        return ProgressLine(stream)
    return None
