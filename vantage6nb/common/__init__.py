"""The IO-free shared core: errors, wire vocabulary, socket events, algorithm contract, settings, crypto."""

from . import contract, errors, events, schemas, settings
from .errors import V6Error
from .schemas import RunStatus

__all__ = ["RunStatus", "V6Error", "contract", "errors", "events", "schemas", "settings"]
