"""``Session``: what a task needs from its client (transport, names, codec, events), in one object."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..common.errors import CryptoError, MissingKey
from ._codec import Codec, PlainCodec
from ._directory import Directory
from ._events import EventStream
from ._http import Transport
from ._state import ResearcherState

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
    state : ResearcherState, optional
        What this researcher remembers about the server (key pins, collaborations seen
        encrypted, tasks created); in memory only when not given.

    Examples
    --------
    >>> session = Session(Transport("http://127.0.0.1:7601"), events=events)  # doctest: +SKIP
    >>> session.directory.collaboration(None)["name"]  # doctest: +SKIP
    'Demo'
    """

    def __init__(
        self,
        transport: Transport,
        *,
        events: EventStream,
        state: ResearcherState | None = None,
    ) -> None:
        self.transport = transport
        self.events = events
        self.state = (
            state if state is not None else ResearcherState(getattr(transport, "url", ""), False)
        )
        #: task ids whose results were shown unverified (warned about once each)
        self.unverified_warned: set[int] = set()
        #: the logged-in user (``GET /user/me``), None before a login
        self.user: dict[str, Any] | None = None
        #: encodes inputs and decodes results; replaced by ``client.setup_encryption(...)``
        self.codec: Codec = PlainCodec()
        self.directory = Directory(
            transport, logged_in=lambda: self.user is not None, observe=self.observe_collaborations
        )

    @property
    def organization_id(self) -> int | None:
        """The logged-in user's organization (None before a login)."""
        org = (self.user or {}).get("organization_id")
        return None if org is None else int(org)

    def observe_collaborations(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Remember every collaboration the server lists as encrypted (it stays so for this client)."""
        for c in rows:
            if c.get("encrypted") is True and c.get("id") is not None:
                self.state.saw_encrypted(int(c["id"]), c.get("name"))

    def codec_for(self, collaboration: dict[str, Any]) -> Codec:
        """The codec for a collaboration; refuses an encrypted one before a key is loaded, and one
        this client saw encrypted that the server now calls plaintext."""
        self.observe_collaborations([collaboration])
        if not collaboration.get("encrypted") and collaboration.get("id") is not None:
            seen = self.state.seen_encrypted(int(collaboration["id"]))
            if seen is not None:
                name = collaboration.get("name") or seen.get("name")
                raise CryptoError(
                    f"Collaboration {name!r} (id {collaboration['id']}) was encrypted when this "
                    f"client saw it (since {seen.get('seen')}, recorded in {self.state.where}), "
                    "but the server now says it is not. Encryption cannot be switched off, so it "
                    "is the server's word against what this client saw: nothing is sent. Ask the "
                    "server's operator what changed (the server's audit log records an "
                    "encryption_changed event). Only if the collaboration was deliberately "
                    "re-created without encryption, clear the record with "
                    f"client.forget_encryption({name!r}) and try again.",
                    errors={
                        "collaboration_id": int(collaboration["id"]),
                        "encrypted": "was true, the server now says false",
                    },
                )
        if collaboration.get("encrypted") and not getattr(self.codec, "encrypted", False):
            raise MissingKey(
                f"Collaboration '{collaboration.get('name')}' is encrypted: load your organization's "
                "private key first with client.setup_encryption(...)."
            )
        return self.codec
