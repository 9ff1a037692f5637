"""``Client``: log in to a server and see its organizations, collaborations, nodes and users as pandas."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..common.errors import MissingKey, NotFound, ValidationError
from ..common.keys import KeyRing, OrgKey
from ..common.rest import Transport as HttpTransport
from . import _frames
from ._codec import SealedCodec, check_own_key, create_private_key, load_private_key
from ._events import EventStream
from ._http import Transport
from ._session import Session
from ._task_api import TaskAPI

__all__ = ["Client"]


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
    transport : optional
        What sends the HTTP requests instead of a ``requests.Session``: any object with its
        ``request(method, url, *, headers=, json=, params=, data=, timeout=, stream=)``
        (:class:`vantage6nb.common.rest.Transport`). ``vantage6nb.testing.FlaskTransport(app)``
        runs a client against a server app in this process.

    Examples
    --------
    >>> import vantage6nb as v6
    >>> client = v6.Client("http://127.0.0.1:7601")  # doctest: +SKIP
    >>> client.login("researcher", "password")  # doctest: +SKIP
    <Client http://127.0.0.1:7601 — 'researcher' of 'Leiden'>
    >>> client.nodes()[["name", "organization", "online"]]  # doctest: +SKIP

    In tests, against an app in this process:

    >>> from vantage6nb.testing import FlaskTransport
    >>> client = v6.Client("http://testserver", transport=FlaskTransport(app))  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        verify: bool | str = True,
        transport: HttpTransport | None = None,
    ) -> None:
        self._transport = Transport(url, timeout=timeout, verify=verify, transport=transport)
        self.url = self._transport.url
        self.events = EventStream(
            self.url,
            token=lambda: self._transport.access_token,
            refresh=self._transport.refresh,
            verify=verify,
        )
        # what tasks and client.task share with the client: transport, names, codec, events
        self._session = Session(self._transport, events=self.events)
        self._directory = self._session.directory
        self.task = TaskAPI(self._session)

    # -- session --------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> Client:
        """Log in; raises :class:`~vantage6nb.errors.AuthenticationError` on wrong credentials.

        Examples
        --------
        >>> client.login("researcher", "secret")  # doctest: +SKIP
        <Client http://127.0.0.1:7601 — 'researcher' of 'Leiden'>
        """
        self.events.close()
        self._directory.clear()
        self._transport.login(username, password)
        me = self._transport.request("GET", "/user/me")
        self._session.user = dict(me)
        return self

    @property
    def whoami(self) -> dict[str, Any]:
        """The logged-in user: id, username, organization_id, organization_name, is_admin, email."""
        if self._session.user is None:
            self._transport.request("GET", "/user/me")  # raises the 'not logged in' error
        return dict(self._session.user or {})

    @property
    def logged_in(self) -> bool:
        """True after a successful :meth:`login`."""
        return self._session.user is not None

    def close(self) -> None:
        """Disconnect the event stream and close HTTP connections."""
        self.events.close()
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        u = self._session.user
        if u is None:
            return f"<Client {self.url} — not logged in>"
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
            params["collaboration_id"] = self._directory.collaboration(collaboration)["id"]
        rows = self._transport.paginate("/organization", params)
        if collaboration is None:
            self._directory.remember_organizations(rows)
        return _frames.frame("organization", rows)

    def collaborations(self) -> pd.DataFrame:
        """Collaborations of your organization, with their member organizations' names.

        Examples
        --------
        >>> client.collaborations()[["name", "encrypted", "organizations"]]  # doctest: +SKIP
        """
        rows = self._directory.collaborations(fresh=True)
        return _frames.frame(
            "collaboration", rows, names={"organization": self._directory.organization_names()}
        )

    def nodes(self, *, collaboration: int | str | None = None) -> pd.DataFrame:
        """Nodes (data stations) with their organization, online status and last contact.

        Examples
        --------
        >>> client.nodes()[["name", "organization", "status", "last_seen"]]  # doctest: +SKIP
        """
        params = {}
        if collaboration is not None:
            params["collaboration_id"] = self._directory.collaboration(collaboration)["id"]
        rows = self._transport.paginate("/node", params)
        collabs = {int(c["id"]): c["name"] for c in self._transport.paginate("/collaboration")}
        return _frames.frame(
            "node",
            rows,
            names={"organization": self._directory.organization_names(), "collaboration": collabs},
        )

    def users(self) -> pd.DataFrame:
        """Users you can see (your organization's; every user for an administrator).

        Examples
        --------
        >>> client.users()[["username", "organization"]]  # doctest: +SKIP
        """
        rows = self._transport.paginate("/user")
        return _frames.frame(
            "user", rows, names={"organization": self._directory.organization_names()}
        )

    # -- single records and name resolution ------------------------------------------------------
    def collaboration(self, ref: int | str | None = None, *, fresh: bool = False) -> dict[str, Any]:
        """One collaboration by id or name (None: the only one of your organization), as a dict.

        Pass it on to ``client.task.create(collaboration=...)`` to skip a second look-up. A
        listing a few seconds old may answer; ``fresh=True`` always asks the server.

        Raises
        ------
        NotFound
            For a name none of your collaborations has (the message lists yours).
        ValidationError
            For None when your organization is in several collaborations.

        Examples
        --------
        >>> collab = client.collaboration("Demo")  # doctest: +SKIP
        >>> collab["id"], collab["encrypted"], collab["organization_ids"]  # doctest: +SKIP
        (1, False, [1, 2, 3])
        """
        return self._directory.collaboration(ref, fresh=fresh)

    def organization_ids(
        self,
        organizations: Sequence[int | str] | int | str | None = None,
        *,
        collaboration: int | str | Mapping[str, Any] | None = None,
    ) -> list[int]:
        """The ids of organizations (by id or name) of a collaboration; None: all its members.

        ``collaboration`` is a reference as for :meth:`collaboration`, or the dict it returned.

        Raises
        ------
        NotFound
            For an organization that is not in the collaboration (the message lists its members).

        Examples
        --------
        >>> client.organization_ids(["Leiden", "Utrecht"], collaboration="Demo")  # doctest: +SKIP
        [1, 2]
        """
        if isinstance(collaboration, Mapping):
            return self._directory.organizations_in(dict(collaboration), organizations)
        return self._directory.resolve(collaboration, organizations)[1]

    def organization_names(self, ids: Sequence[int] = ()) -> dict[int, str]:
        """``{organization id: name}`` of the organizations you can see (listed again when one of
        ``ids`` is not known yet; otherwise the names last listed).

        Examples
        --------
        >>> client.organization_names()  # doctest: +SKIP
        {1: 'Leiden', 2: 'Utrecht', 3: 'Amsterdam'}
        """
        return self._directory.organization_names(need=ids)

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

        def fetch(collaboration_id: int) -> list[Mapping[str, Any]]:
            return list(
                self._transport.paginate("/organization", {"collaboration_id": collaboration_id})
            )

        self._session.codec = SealedCodec(key, org_id, fetch, KeyRing(pins))
        return key.fingerprint

    @property
    def key_pins(self) -> dict[int, str]:
        """Pinned fingerprints of peer organizations' keys ``{org_id: fingerprint}`` (to persist)."""
        ring = getattr(self._session.codec, "ring", None)
        return ring.pins() if ring is not None else {}

    def trust_key(self, organization: int | str) -> str:
        """Accept the key the server now holds for an organization (after checking its fingerprint
        with that organization); returns the new fingerprint.

        Examples
        --------
        >>> client.trust_key("Utrecht")  # doctest: +SKIP
        'SHA256:...'
        """
        codec = self._session.codec
        if not isinstance(codec, SealedCodec):
            raise MissingKey("Load your key first with client.setup_encryption(...).")
        names = self._directory.organization_names()
        ids = [i for i, n in names.items() if n == organization or i == organization]
        if not ids:
            raise NotFound(f"No organization {organization!r}.")
        org = self._transport.request("GET", f"/organization/{ids[0]}")
        if not org.get("public_key"):
            raise MissingKey(f"Organization {org.get('name')!r} has no public key on the server.")
        codec.ring.repin(ids[0], org["public_key"], name=org.get("name"))
        return str(org.get("key_fingerprint"))
