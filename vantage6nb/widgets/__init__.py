"""Notebook widgets: Login, NetworkView, TaskBuilder, TaskMonitor, ResultView (ipywidgets, imported lazily).

``import vantage6nb.widgets`` does not import ipywidgets; the first widget you use does. The
algorithm declarations the TaskBuilder uses (:func:`register_algorithm`, :func:`algorithm_from_module`)
live in :mod:`vantage6nb.catalog`, re-exported here, and need no ipywidgets either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..catalog import (
    Algorithm,
    Method,
    Parameter,
    algorithm_from_module,
    get_algorithm,
    known_algorithms,
    register_algorithm,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._builder import TaskBuilder
    from ._login import Login
    from ._monitor import TaskMonitor, display_task
    from ._network import NetworkView
    from ._result import ResultView

__all__ = [
    "Algorithm",
    "Login",
    "Method",
    "NetworkView",
    "Parameter",
    "ResultView",
    "TaskBuilder",
    "TaskMonitor",
    "algorithm_from_module",
    "display_task",
    "get_algorithm",
    "known_algorithms",
    "register_algorithm",
]

_LAZY = {
    "Login": "._login",
    "NetworkView": "._network",
    "ResultView": "._result",
    "TaskBuilder": "._builder",
    "TaskMonitor": "._monitor",
    "display_task": "._monitor",
}


def __getattr__(name: str) -> Any:
    # ipywidgets (and pandas) load only when a widget is first used
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vantage6nb.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
