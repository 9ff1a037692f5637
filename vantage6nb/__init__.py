"""vantage6nb: federated analysis from a notebook. ``Client`` talks to a server; results come back as pandas.

``import vantage6nb as v6`` is light: ``v6.Client``, ``v6.analysis``, ``v6.demo``, ``v6.widgets``,
``v6.catalog`` and ``v6.audit`` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from .common.errors import V6Error
from .common.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from . import analysis, audit, catalog, demo, widgets
    from .client import Client, Task

__all__ = [
    "Client",
    "Task",
    "V6Error",
    "__version__",
    "analysis",
    "audit",
    "catalog",
    "demo",
    "errors",
    "widgets",
]

# name -> module that holds it
_LAZY = {"Client": ".client", "Task": ".client"}
# submodules reached as attributes (v6.demo.start(), v6.analysis.summary(...))
_SUBMODULES = frozenset({"analysis", "audit", "catalog", "demo", "widgets"})


def __getattr__(name: str) -> Any:
    # The client pulls in pandas and requests; keep `import vantage6nb` light for the CLI and nodes.
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vantage6nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
