"""``Client``: log in to a server and see its organizations, collaborations, nodes and users as pandas."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..common.errors import MissingKey, NotFound, ValidationError
from ..common.keys import KeyRing, OrgKey
from . import _frames
from ._codec import (
    Codec,
    PlainCodec,
    SealedCodec,
    check_own_key,
    create_private_key,
    load_private_key,
)
from ._events import EventStream
from ._http import Transport
from ._task_api import TaskAPI

__all__ = ["Client"]

# How long a task creation trusts the last collaboration listing (saves a request per task in a
# loop; a name or organization it does not know triggers a fresh listing at once).
_COLLABORATIONS_TTL_S = 5.0


class Client:
    """A researcher's connection to a vantage6nb server.

    Parameters
    ----------
    url : str
        The server, e.g. ``"http://127.0.0.1:7601"`` (the API lives under ``/api``).
    timeout : float
        Seconds to wait for one HTTP answer.
    verify : bool or str
        TLS verification: True, False, or the path of a CA bundle.

    Examples
    --------
    >>> import vantage6nb as v6
    >>> client = v6.Client("http://127.0.0.1:7601")  # doctest: +SKIP
    >>> client.login("researcher", "password")  # doctest: +SKIP
    <Client http://127.0.0.1:7601 — 'researcher' of 'Leiden'>
    >>> client.nodes()[["name", "organization", "online"]]  # doctest: +SKIP
    """

    def __init__(self, url: str, *, timeout: float = 30.0, verify: bool | str = True) -> None:
        self._transport = Transport(url, timeout=timeout, verify=verify)
        self.url = self._transport.url
        self._user: dict[str, Any] | None = None
        self._codec: Codec = PlainCodec()  # replaced by client.setup_encryption(...)
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()
        self.events = EventStream(
            self.url,
            token=lambda: self._transport.access_token,
            refresh=self._transport.refresh,
            verify=verify,
        )
        self.task = TaskAPI(self)

    # -- session --------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> Client:
        """Log in; raises :class:`~vantage6nb.errors.AuthenticationError` on wrong credentials.

        Examples
        --------
        >>> client.login("researcher", "secret")  # doctest: +SKIP
        <Client http://127.0.0.1:7601 — 'researcher' of 'Leiden'>
        """
        self.events.close()
        self._clear_cache()
        self._transport.login(username, password)
        me = self._transport.request("GET", "/user/me")
        self._user = dict(me)
        return self

    @property
    def whoami(self) -> dict[str, Any]:
        """The logged-in user: id, username, organization_id, organization_name, is_admin, email."""
        if self._user is None:
            self._transport.request("GET", "/user/me")  # raises the 'not logged in' error
        return dict(self._user or {})

    @property
    def logged_in(self) -> bool:
        """True after a successful :meth:`login`."""
        return self._user is not None

    def close(self) -> None:
        """Disconnect the event stream and close HTTP connections."""
        self.events.close()
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._user is None:
            return f"<Client {self.url} — not logged in>"
        u = self._user
        admin = ", admin" if u.get("is_admin") else ""
        return (
            f"<Client {self.url} — '{u.get('username')}' of '{u.get('organization_name')}'{admin}>"
        )

    # -- lists as DataFrames ---------------------------------------------------------------------
    def organizations(self, *, collaboration: int | str | None = None) -> pd.DataFrame:
        """Organizations you can see (optionally of one collaboration), one row each.

        Examples
        --------
        >>> client.organizations()[["id", "name"]]  # doctest: +SKIP
        """
        params = {}
        if collaboration is not None:
            params["collaboration_id"] = self._collaboration(collaboration)["id"]
        rows = self._transport.paginate("/organization", params)
        if collaboration is None:
            self._store("organization_names", {int(r["id"]): r["name"] for r in rows})
        return _frames.frame("organization", rows)

    def collaborations(self) -> pd.DataFrame:
        """Collaborations of your organization, with their member organizations' names.

        Examples
        --------
        >>> client.collaborations()[["name", "encrypted", "organizations"]]  # doctest: +SKIP
        """
        rows = self._my_collaborations(fresh=True)
        return _frames.frame(
            "collaboration", rows, names={"organization": self._organization_names()}
        )

    def nodes(self, *, collaboration: int | str | None = None) -> pd.DataFrame:
        """Nodes (data stations) with their organization, online status and last contact.

        Examples
        --------
        >>> client.nodes()[["name", "organization", "status", "last_seen"]]  # doctest: +SKIP
        """
        params = {}
        if collaboration is not None:
            params["collaboration_id"] = self._collaboration(collaboration)["id"]
        rows = self._transport.paginate("/node", params)
        collabs = {int(c["id"]): c["name"] for c in self._transport.paginate("/collaboration")}
        return _frames.frame(
            "node",
            rows,
            names={"organization": self._organization_names(), "collaboration": collabs},
        )

    def users(self) -> pd.DataFrame:
        """Users you can see (your organization's; every user for an administrator).

        Examples
        --------
        >>> client.users()[["username", "organization"]]  # doctest: +SKIP
        """
        rows = self._transport.paginate("/user")
        return _frames.frame("user", rows, names={"organization": self._organization_names()})

    # -- encryption -----------------------------------------------------------------------------
    @staticmethod
    def create_private_key(
        path: str | os.PathLike[str], passphrase: str | None = None, *, force: bool = False
    ) -> OrgKey:
        """Create your organization's key pair; the private key goes to ``path`` (mode 0600).

        An existing file is reused unless ``force``. One key per organization: if your
        organization runs a node, use that node's key file instead.

        Examples
        --------
        >>> key = Client.create_private_key("leiden.key", passphrase="s3cret")  # doctest: +SKIP
        >>> key.fingerprint  # doctest: +SKIP
        'SHA256:...'
        """
        return create_private_key(path, passphrase, force=force)

    def setup_encryption(
        self,
        path_or_key: str | os.PathLike[str] | OrgKey,
        *,
        passphrase: str | None = None,
        pins: dict[int, str] | None = None,
    ) -> str:
        """Load your organization's private key for encrypted collaborations; returns its fingerprint.

        Uploads the public key when your organization has none on the server, and refuses
        (:class:`~vantage6nb.errors.KeyMismatch`) when the server holds another one. Peer
        organizations' keys are pinned on first use (``pins``: fingerprints from before).

        Examples
        --------
        >>> client.setup_encryption("leiden.key")  # doctest: +SKIP
        'SHA256:...'
        """
        if not isinstance(path_or_key, (OrgKey, str, os.PathLike)):
            raise ValidationError(
                f"setup_encryption takes the path of a key file or an OrgKey, not "
                f"{type(path_or_key).__name__}: for key bytes use "
                "OrgKey.from_bytes(data, passphrase=...).",
                errors={"path_or_key": "expected a path or an OrgKey"},
            )
        key = (
            path_or_key
            if isinstance(path_or_key, OrgKey)
            else load_private_key(path_or_key, passphrase)
        )
        org_id = int(self.whoami["organization_id"])
        org = self._transport.request("GET", f"/organization/{org_id}")
        if check_own_key(key, org):
            body = {"public_key": key.public_key_b64}
            self._transport.request("PATCH", f"/organization/{org_id}", json=body)

        def fetch(collaboration_id: int) -> list[dict[str, Any]]:
            return self._transport.paginate("/organization", {"collaboration_id": collaboration_id})

        self._codec = SealedCodec(key, org_id, fetch, KeyRing(pins))
        return key.fingerprint

    @property
    def key_pins(self) -> dict[int, str]:
        """Pinned fingerprints of peer organizations' keys ``{org_id: fingerprint}`` (to persist)."""
        ring = getattr(self._codec, "ring", None)
        return ring.pins() if ring is not None else {}

    def trust_key(self, organization: int | str) -> str:
        """Accept the key the server now holds for an organization (after checking its fingerprint
        with that organization); returns the new fingerprint.

        Examples
        --------
        >>> client.trust_key("Utrecht")  # doctest: +SKIP
        'SHA256:...'
        """
        if not isinstance(self._codec, SealedCodec):
            raise MissingKey("Load your key first with client.setup_encryption(...).")
        names = self._organization_names()
        ids = [i for i, n in names.items() if n == organization or i == organization]
        if not ids:
            raise NotFound(f"No organization {organization!r}.")
        org = self._transport.request("GET", f"/organization/{ids[0]}")
        if not org.get("public_key"):
            raise MissingKey(f"Organization {org.get('name')!r} has no public key on the server.")
        self._codec.ring.repin(ids[0], org["public_key"], name=org.get("name"))
        return str(org.get("key_fingerprint"))

    def _codec_for(self, collaboration: dict[str, Any]) -> Codec:
        if collaboration.get("encrypted") and not getattr(self._codec, "encrypted", False):
            raise MissingKey(
                f"Collaboration '{collaboration.get('name')}' is encrypted: load your organization's "
                "private key first with client.setup_encryption(...)."
            )
        return self._codec

    # -- name resolution (used by tasks and analysis) --------------------------------------------
    def _my_collaborations(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The collaborations listing, reused for ``_COLLABORATIONS_TTL_S`` unless ``fresh``."""
        now = time.monotonic()
        hit = self._cache.get("collaborations")
        if not fresh and hit is not None and now - hit[0] < _COLLABORATIONS_TTL_S:
            return [dict(c) for c in hit[1]]
        rows = list(self._transport.paginate("/collaboration"))
        self._store("collaborations", (now, rows))
        return [dict(c) for c in rows]

    def _collaboration(self, ref: int | str | None, *, fresh: bool = False) -> dict[str, Any]:
        """The collaboration by id or name; None means the only one of your organization.

        A listing a few seconds old may answer (``fresh=True``: never); an unknown name or id is
        always looked up again.
        """
        if isinstance(ref, bool):
            raise ValidationError("collaboration must be an id or a name.")
        if isinstance(ref, int):
            for c in [] if fresh else self._my_collaborations():
                if c["id"] == ref:
                    return c
            return dict(self._transport.request("GET", f"/collaboration/{ref}"))
        mine = self._my_collaborations(fresh=fresh)
        if isinstance(ref, str) and not fresh and all(c["name"] != ref for c in mine):
            mine = self._my_collaborations(fresh=True)
        names = ", ".join(repr(c["name"]) for c in mine) or "none"
        if ref is None:
            if len(mine) == 1:
                return dict(mine[0])
            if not mine:
                raise NotFound(
                    "Your organization is in no collaboration: ask an administrator to add it to one."
                )
            raise ValidationError(
                f"Your organization is in {len(mine)} collaborations ({names}): pass collaboration=<name or id>.",
                errors={"collaboration": "required when there is more than one"},
            )
        for c in mine:
            if c["name"] == ref:
                return dict(c)
        raise NotFound(
            f"No collaboration named '{ref}'. Yours are: {names}.",
            errors={"collaboration": "unknown name"},
        )

    def _organizations_in(
        self, collaboration: dict[str, Any], refs: Sequence[int | str] | int | str | None
    ) -> list[int]:
        """Organization ids (by id or name) that must belong to ``collaboration``; None: all."""
        members = [int(i) for i in collaboration.get("organization_ids") or []]
        if refs is None:
            return members
        if isinstance(refs, (int, str)):
            refs = [refs]
        names = self._organization_names(need=members)
        by_name = {names.get(i): i for i in members}
        out: list[int] = []
        for ref in refs:
            org_id = by_name.get(ref) if isinstance(ref, str) else ref
            if org_id is None or org_id not in members:
                listing = ", ".join(f"'{names.get(i, i)}' ({i})" for i in members)
                raise NotFound(
                    f"Organization {ref!r} is not in collaboration '{collaboration.get('name')}'. "
                    f"Its organizations are: {listing}.",
                    errors={"organizations": f"unknown organization {ref!r}"},
                )
            if org_id not in out:
                out.append(int(org_id))
        if not out:
            raise ValidationError("organizations is empty: name at least one organization.")
        return out

    def _organization_names(
        self, *, refresh: bool = True, need: Sequence[int] = ()
    ) -> dict[int, str]:
        names = self._cache.get("organization_names")
        stale = names is None or any(i not in names for i in need)
        if stale and refresh and self._user is not None:
            rows = self._transport.paginate("/organization")
            names = self._store("organization_names", {int(r["id"]): r["name"] for r in rows})
        return dict(names or {})

    def _nodes_by_organization(self, collaboration_id: int) -> dict[int, dict[str, Any]]:
        rows = self._transport.paginate("/node", {"collaboration_id": collaboration_id})
        return {
            int(r["organization_id"]): r
            for r in rows
            if r.get("collaboration_id") == collaboration_id
        }

    def _node_names(self, collaboration_id: int) -> dict[int, str]:
        return {
            int(n["id"]): n.get("name") or ""
            for n in self._nodes_by_organization(collaboration_id).values()
        }

    def _store(self, key: str, value: Any) -> Any:
        with self._cache_lock:
            self._cache[key] = value
        return value

    def _clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()
