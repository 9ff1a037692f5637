"""``Session``: what a task needs from its client (transport, names, codec, events), in one object."""

from __future__ import annotations

from typing import Any

from ..common.errors import MissingKey
from ._codec import Codec, PlainCodec
from ._directory import Directory
from ._events import EventStream
from ._http import Transport

__all__ = ["Session"]


class Session:
    """One researcher's connection state, shared by the ``Client``, its ``client.task`` and every ``Task``.

    A ``Task`` holds this, not the ``Client``, so tasks and the task API need no private attribute
    of the client and the modules depend one way (client -> task API -> task -> session).

    Parameters
    ----------
    transport : Transport
        HTTP to the server (tokens, retries, pagination).
    events : EventStream
        The socket.io events of the same login.

    Examples
    --------
    >>> session = Session(Transport("http://127.0.0.1:7601"), events=events)  # doctest: +SKIP
    >>> session.directory.collaboration(None)["name"]  # doctest: +SKIP
    'Demo'
    """

    def __init__(self, transport: Transport, *, events: EventStream) -> None:
        self.transport = transport
        self.events = events
        #: the logged-in user (``GET /user/me``), None before a login
        self.user: dict[str, Any] | None = None
        #: encodes inputs and decodes results; replaced by ``client.setup_encryption(...)``
        self.codec: Codec = PlainCodec()
        self.directory = Directory(transport, logged_in=lambda: self.user is not None)

    @property
    def organization_id(self) -> int | None:
        """The logged-in user's organization (None before a login)."""
        org = (self.user or {}).get("organization_id")
        return None if org is None else int(org)

    def codec_for(self, collaboration: dict[str, Any]) -> Codec:
        """The codec for a collaboration; refuses an encrypted one before a key is loaded."""
        if collaboration.get("encrypted") and not getattr(self.codec, "encrypted", False):
            raise MissingKey(
                f"Collaboration '{collaboration.get('name')}' is encrypted: load your organization's "
                "private key first with client.setup_encryption(...)."
            )
        return self.codec
