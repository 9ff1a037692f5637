"""The vantage6nb data-station node: daemon, runtimes, data sources, algorithm proxy, image policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .config import NodeConfig, load_config
    from .daemon import NodeDaemon

__all__ = ["NodeConfig", "NodeDaemon", "load_config"]

_LAZY = {"NodeConfig": ".config", "load_config": ".config", "NodeDaemon": ".daemon"}


def __getattr__(name: str) -> Any:
    # `import node_app` stays cheap: the daemon pulls in socketio and requests only when used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'node_app' has no attribute {name!r}")
