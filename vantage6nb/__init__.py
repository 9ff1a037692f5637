"""vantage6nb: federated analysis from a notebook. ``Client`` talks to a server; results come back as pandas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .common.errors import V6Error

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, Task

__all__ = ["Client", "Task", "V6Error", "__version__", "errors"]

_LAZY = {"Client": ".client", "Task": ".client"}


def __getattr__(name: str) -> Any:
    # The client pulls in pandas and requests; keep `import vantage6nb` light for the CLI and nodes.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vantage6nb' has no attribute {name!r}")
