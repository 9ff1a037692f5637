"""The notebook display hook of a ``Task``: the widgets plug in here, the client never imports them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_HOOK", "set_display_hook", "show"]

#: Where the live display lives, as ``module:function``, loaded on the first display only: the
#: client names it and never imports it, so ``vantage6nb.widgets`` stays an optional layer above.
DEFAULT_HOOK = "vantage6nb.widgets:display_task"

_hook: Callable[[Any], object] | None = None


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


def show(task: Any) -> None:
    """Display ``task`` with the hook; its text repr when the hook cannot load (no ipywidgets)."""
    try:
        hook = _hook or _load(DEFAULT_HOOK)
        hook(task)
    except ImportError:
        print(repr(task))


def _load(spec: str) -> Callable[[Any], object]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
