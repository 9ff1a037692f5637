"""Health and version: unauthenticated probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from vantage6nb.common.version import __version__

from ..db import session

__all__ = ["bp"]

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Any:
    try:
        session().execute(text("SELECT 1"))
        db = "ok"
    except SQLAlchemyError:
        return {"status": "degraded", "db": "unavailable"}, 503
    return {"status": "ok", "db": db}


@bp.get("/version")
def version() -> Any:
    return {"version": __version__}
