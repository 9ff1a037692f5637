"""The per-app server state (config, database, tokens, socket.io hub) that resources reach."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app

from .db import Database
from .sockets import SocketHub
from .tokens import TokenService

__all__ = ["ServerState", "audit", "state"]

_audit = logging.getLogger("server_app.audit")


@dataclass
class ServerState:
    """What ``create_app`` builds once and every request shares."""

    config: dict[str, Any]
    db: Database
    tokens: TokenService
    hub: SocketHub


def state() -> ServerState:
    """The current app's ServerState."""
    return current_app.extensions["v6nb"]


def audit(msg: str, *args: Any) -> None:
    """Log a security-relevant act (key changes, deletions) on the audit logger."""
    _audit.warning(msg, *args)
