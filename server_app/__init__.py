"""The vantage6nb server: REST API, socket.io events and the database, built by ``create_app``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import SETTINGS, load_config

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app

__all__ = ["SETTINGS", "create_app", "load_config"]


def __getattr__(name: str) -> Any:
    # Flask and SQLAlchemy load only when an app is built: the gunicorn master and the CLI stay light.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'server_app' has no attribute {name!r}")
