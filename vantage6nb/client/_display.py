"""The notebook display hook of a ``Task``: the widgets plug in here, the client never imports them."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_HOOK",
    "WAIT_HOOK",
    "live_display",
    "set_display_hook",
    "show",
    "show_live",
    "show_result",
]

#: Where the live display lives, as ``module:function``, loaded on the first display only: the
#: client names it and never imports it, so ``vantage6nb.widgets`` stays an optional layer above.
DEFAULT_HOOK = "vantage6nb.widgets:display_task"
#: What a wait shows: the same monitor, as its widget view only (a cell's text output unchanged)
WAIT_HOOK = "vantage6nb.widgets._monitor:display_wait"

_hook: Callable[[Any], object] | None = None
# the display shown last for each task (by session and task id): a wait shows none while it is live
# (what it showed, the IPython execution count it was shown in)
_shown: dict[tuple[int, int], tuple[object, int | None]] = {}
_lock = threading.Lock()


def set_display_hook(hook: Callable[[Any], object] | None) -> None:
    """Show tasks in a notebook with ``hook(task)``; None restores :data:`DEFAULT_HOOK`.

    Examples
    --------
    >>> set_display_hook(lambda task: print("task", task))
    >>> show("t1")
    task t1
    >>> set_display_hook(None)
    """
    global _hook
    _hook = hook


def _key(task: Any) -> tuple[int, int] | None:
    try:
        return id(getattr(task, "_session", None)), int(task.id)
    except (AttributeError, TypeError, ValueError):
        return None


def _live(shown: object) -> bool:
    # a TaskMonitor is live until its task is done; a hook's other answers count as not live
    return shown is not None and hasattr(shown, "done") and not shown.done


def live_display(task: Any) -> object | None:
    """The live display (a TaskMonitor) of ``task`` on screen, if any.

    Examples
    --------
    >>> live_display("t1") is None
    True
    """
    key = _key(task)
    with _lock:
        shown, _ = _shown.get(key, (None, None)) if key is not None else (None, None)
    return shown if _live(shown) else None


def _execution_count() -> int | None:
    import sys

    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no shell: no cell to tell apart
        return None
    return None if shell is None else getattr(shell, "execution_count", None)


def show_result(task: Any) -> object | None:
    """Display ``task`` as a cell's result: not again when this cell showed it already (a
    ``task.wait()`` whose live monitor is right above, now final).

    Examples
    --------
    >>> set_display_hook(lambda task: print("task", task))
    >>> show_result("t1")
    task t1
    >>> set_display_hook(None)
    """
    key = _key(task)
    count = _execution_count()
    with _lock:
        shown, when = _shown.get(key, (None, None)) if key is not None else (None, None)
    if shown is not None and count is not None and when == count:
        return shown
    return show(task)


def show(task: Any, *, waiting: bool = False) -> object | None:
    """Display ``task`` with the hook and return what it shows (a live TaskMonitor); its text
    repr when the hook cannot load (no ipywidgets). ``waiting``: for a wait (:data:`WAIT_HOOK`),
    which shows nothing without ipywidgets."""
    try:
        hook = _hook or _load(WAIT_HOOK if waiting else DEFAULT_HOOK)
        shown = hook(task)
    except ImportError:
        if not waiting:
            print(repr(task))
        return None
    key = _key(task)
    if key is not None:
        count = _execution_count()
        with _lock:
            _shown[key] = (shown, count)
            # finished displays of earlier cells: forget them
            stale = [k for k, (v, c) in _shown.items() if k != key and not _live(v) and c != count]
            for old in stale:
                del _shown[old]
    return shown


def show_live(task: Any) -> object | None:
    """Display ``task`` unless a live display of it is on screen already (a wait shows one
    monitor, however often it is waited for); returns the live display.

    Examples
    --------
    >>> set_display_hook(lambda task: print("task", task))
    >>> show_live("t1")
    task t1
    >>> set_display_hook(None)
    """
    return live_display(task) or show(task, waiting=True)


def _load(spec: str) -> Callable[[Any], object]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
