"""``Client``: log in to a server and see its organizations, collaborations, nodes and users as pandas."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..common.errors import KeyMismatch, MissingKey, NotFound, ValidationError
from ..common.keys import OrgKey, decode_public_key, fingerprint
from ..common.rest import Transport as HttpTransport
from . import _frames
from ._codec import (
    PinnedKeyRing,
    SealedCodec,
    check_own_key,
    create_private_key,
    load_private_key,
)
from ._events import EventStream
from ._http import Transport
from ._session import Session
from ._state import ResearcherState
from ._task_api import TaskAPI

__all__ = ["Client", "TotpEnrolmentWarning"]


class TotpEnrolmentWarning(UserWarning):
    """Logged in, but the organization requires two-factor login: enrol before anything else."""


class Client:
    """A researcher's connection to a vantage6nb server.

    Parameters
    ----------
    url : str
        The server, e.g. ``"http://127.0.0.1:7601"`` (the API lives under ``/api``, which the
        client adds: ``"http://127.0.0.1:7601/api"`` means the same server).
    timeout : float
        Seconds to wait for one HTTP answer.
    verify : bool or str
        TLS verification: True, False, or the path of a CA bundle.
    transport : optional
        What sends the HTTP requests instead of a ``requests.Session``: any object with its
        ``request(method, url, *, headers=, json=, params=, data=, timeout=, stream=)``
        (:class:`vantage6nb.common.rest.Transport`). ``vantage6nb.testing.FlaskTransport(app)``
        runs a client against a server app in this process.
    state_dir : path or False, optional
        Where this client keeps what it must remember about the server, one file per server URL
        (like SSH's ``known_hosts``): the pinned fingerprints of organizations' keys, the
        collaborations seen encrypted, and the tasks it created. Default
        ``$XDG_STATE_HOME/vantage6nb`` (``~/.local/state/vantage6nb``); False keeps them in
        memory for this client only.
    progress : bool or str, optional
        What a blocking wait (``task.wait()``, every ``analysis.*`` helper) shows: ``"auto"``
        (the default, also from ``$V6NB_PROGRESS``) the live TaskMonitor in a notebook and one
        updating line on a terminal's stderr, nothing in a script; ``"monitor"``, ``"line"``,
        ``"off"``/False; True: the monitor or the line even off a terminal. ``task.wait(progress=...)``
        overrides it for one wait.

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
        state_dir: str | os.PathLike[str] | bool | None = None,
        progress: bool | str | None = None,
    ) -> None:
        self._transport = Transport(url, timeout=timeout, verify=verify, transport=transport)
        self.url = self._transport.url
        self._state = ResearcherState(self.url, state_dir)
        self.events = EventStream(
            self.url,
            token=lambda: self._transport.access_token,
            refresh=self._transport.refresh,
            verify=verify,
        )
        # what tasks and client.task share with the client: transport, names, codec, events
        self._session = Session(self._transport, events=self.events, state=self._state)
        self._session.progress = progress  # what waits show (Task.wait's progress=None)
        self._directory = self._session.directory
        self.task = TaskAPI(self._session)
        self._must_enrol = False

    # -- session --------------------------------------------------------------------------------
    def login(self, username: str, password: str, *, totp: str | None = None) -> Client:
        """Log in; raises :class:`~vantage6nb.errors.AuthenticationError` on wrong credentials.

        Parameters
        ----------
        username, password : str
            The account (the username in any case).
        totp : str, optional
            The 6-digit code of your authenticator app, for an account with two-factor login.
            Without it such an account raises an ``AuthenticationError`` whose ``code`` is
            ``"totp_required"`` (the ``Login`` widget then asks for the code).

        Examples
        --------
        >>> client.login("researcher", "secret")  # doctest: +SKIP
        <Client http://127.0.0.1:7601 — 'researcher' of 'Leiden'>
        >>> client.login("researcher", "secret", totp="492039")  # doctest: +SKIP
        """
        self.events.close()
        self._directory.clear()
        self._session.user = None
        answer = self._transport.login(username, password, totp=totp)
        me = self._transport.request("GET", "/user/me")
        self._session.user = dict(me)
        self._must_enrol = bool(answer.get("totp_enrolment_required"))
        if self._must_enrol:
            warnings.warn(
                f"Your organization requires two-factor login and '{username}' has none yet: "
                "nothing else works until you enrol. Run enrolment = client.enable_totp(), add "
                "enrolment['uri'] (or its secret) to an authenticator app, then "
                "client.confirm_totp('<the 6-digit code>').",
                TotpEnrolmentWarning,
                stacklevel=2,
            )
        return self

    @property
    def totp_enrolment_required(self) -> bool:
        """True after a login whose organization requires two-factor login while this account
        has none yet: :meth:`enable_totp` and :meth:`confirm_totp` come before anything else."""
        return self._must_enrol

    def logout(self, *, everywhere: bool = False) -> None:
        """End this session on the server and forget its tokens; later calls raise
        :class:`~vantage6nb.errors.AuthenticationError` until you log in again.

        ``everywhere=True`` ends every session of your account (other notebooks, other
        machines). A server that cannot be reached raises ``ServerUnavailable`` and keeps the
        session, so you can call ``logout()`` again.

        Examples
        --------
        >>> client.logout()  # doctest: +SKIP
        >>> client.logged_in  # doctest: +SKIP
        False
        """
        self._transport.revoke(everywhere=everywhere)
        self.events.close()
        self._directory.clear()
        self._session.user = None

    # -- two-factor login ---------------------------------------------------------------------------
    def enable_totp(self) -> dict[str, Any]:
        """Start two-factor login for your account: returns the ``secret`` and an otpauth ``uri``.

        Add the URI (or the secret) to an authenticator app, then turn the second factor on with
        :meth:`confirm_totp` and a code the app shows. Until then logins need no code.

        Examples
        --------
        >>> enrolment = client.enable_totp()  # doctest: +SKIP
        >>> enrolment["uri"]  # doctest: +SKIP
        'otpauth://totp/vantage6nb:researcher?secret=...&issuer=vantage6nb'
        """
        me = int(self.whoami["id"])
        return dict(self._transport.request("POST", f"/user/{me}/totp"))

    def confirm_totp(self, code: str) -> dict[str, Any]:
        """Turn two-factor login on with a code from the authenticator app (after
        :meth:`enable_totp`); from then on :meth:`login` needs ``totp=``.

        Examples
        --------
        >>> client.confirm_totp("492039")  # doctest: +SKIP
        """
        me = int(self.whoami["id"])
        body = {"code": str(code).strip().replace(" ", "")}
        out = dict(self._transport.request("POST", f"/user/{me}/totp/confirm", json=body) or {})
        self._must_enrol = False
        return out

    def require_totp(self, organization: int | str | None = None, required: bool = True) -> bool:
        """Require two-factor login for an organization's users (yours by default; an
        administrator's act): those without it must enrol before anything else. Returns the
        setting now in force.

        Examples
        --------
        >>> admin.require_totp("Leiden")  # doctest: +SKIP
        True
        """
        org_id = (
            int(self.whoami["organization_id"])
            if organization is None
            else self._organization_id(organization)
        )
        body = {"require_totp": bool(required)}
        out = self._transport.request("POST", f"/organization/{org_id}/require-totp", json=body)
        return bool(out.get("require_totp", required))

    def disable_totp(self, code: str) -> dict[str, Any]:
        """Turn two-factor login off for your account, with a current code from the app.

        Examples
        --------
        >>> client.disable_totp("492039")  # doctest: +SKIP
        """
        me = int(self.whoami["id"])
        body = {"totp": str(code).strip().replace(" ", "")}
        return dict(self._transport.request("DELETE", f"/user/{me}/totp", json=body) or {})

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

    def _repr_html_(self) -> str:
        """A card for notebooks: server, user, organization, collaborations with node status
        counts, organizations with their full key fingerprints (``vantage6nb.client._html``)."""
        from ._html import client_html

        return client_html(self)

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

    def columns(
        self, collaboration: int | str | None = None, *, database: str | None = None
    ) -> pd.DataFrame:
        """The columns each node reports for its databases: names and types, never values.

        One row per column per organization and database label, with columns
        ``organization_id, organization, database, column, type``; sorted by organization, then
        database, then the source's column order. ``type`` is one of ``integer``, ``float``,
        ``boolean``, ``string``, ``datetime``, ``category``, ``unknown`` (docs/api.md, "Columns").
        A node whose operator turned reporting off, or hid a column, does not show it. No
        reports: an empty frame with those columns.

        Parameters
        ----------
        collaboration
            Id or name; None: your organization's only collaboration.
        database
            Only this database label.

        Examples
        --------
        >>> client.columns()  # doctest: +SKIP
           organization_id organization database   column     type
        0                1       Leiden  default  species   string
        1                1       Leiden  default     mass    float
        >>> client.columns(database="default").query("type == 'float'")  # doctest: +SKIP
        """
        from ._columns import columns

        return columns(self._transport, self._directory, collaboration, database=database)

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

    def audit(
        self,
        *,
        action: str | None = None,
        since: str | pd.Timestamp | None = None,
        **filters: Any,
    ) -> pd.DataFrame:
        """The server's audit log (root only), oldest first, one row per event.

        Parameters
        ----------
        action : str, optional
            One kind of event, e.g. ``"login_failed"``, ``"key_replaced"``,
            ``"encryption_changed"`` (docs/api.md lists them).
        since : str or Timestamp, optional
            Only events from this time on (ISO 8601; naive times are UTC).
        **filters
            Further query parameters the server's ``GET /api/audit`` takes.

        Examples
        --------
        >>> client.audit(action="login_failed")[["time", "address", "target"]]  # doctest: +SKIP
        """
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if action is not None:
            params["action"] = action
        if since is not None:
            ts = pd.Timestamp(since)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            params["since"] = ts.isoformat()
        return _frames.frame("audit", self._transport.paginate("/audit", params))

    def roles(self, **filters: Any) -> pd.DataFrame:
        """The roles you may see (the default ones and your organization's), one row per role.

        ``rule_names`` lists each role's rules as ``resource:operation:scope``.

        Examples
        --------
        >>> client.roles()[["name", "is_default"]]  # doctest: +SKIP
        """
        params = {k: v for k, v in filters.items() if v is not None}
        return _frames.frame("role", self._transport.paginate("/role", params))

    def rules(self, **filters: Any) -> pd.DataFrame:
        """The server's rule table (``resource``, ``operation``, ``scope``), one row per rule.

        Examples
        --------
        >>> client.rules(resource="task")[["name"]]  # doctest: +SKIP
        """
        params = {k: v for k, v in filters.items() if v is not None}
        return _frames.frame("rule", self._transport.paginate("/rule", params))

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
        organizations' keys are pinned on first use in the state folder (see ``state_dir``), so
        a later client refuses a replaced key too; ``pins`` (``{org id: fingerprint}``) win over
        the folder's.

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

        ring = PinnedKeyRing(self._state, pins)
        self._session.codec = SealedCodec(key, org_id, fetch, ring)
        return key.fingerprint

    @property
    def key_pins(self) -> dict[int, str]:
        """Pinned fingerprints of organizations' keys ``{org_id: fingerprint}`` (kept in the
        state folder; pass them as ``pins=`` elsewhere)."""
        ring = getattr(self._session.codec, "ring", None)
        return ring.pins() if ring is not None else self._state.pins()

    @property
    def state_file(self) -> str:
        """The file that holds this server's pins and encrypted collaborations (or ``"this
        session's memory"``)."""
        return self._state.where

    def trust_key(self, organization: int | str, fingerprint: str | None = None) -> str:
        """Accept the key the server now holds for an organization; returns its fingerprint.

        Check the fingerprint with that organization first (not through this server) and pass
        it: a server that presents another key than the one you confirmed is refused. The pin
        is kept in the state folder, so later clients accept the key too.

        Examples
        --------
        >>> client.trust_key("Utrecht", "SHA256:Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU")  # doctest: +SKIP
        'SHA256:Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU'
        """
        org_id = self._organization_id(organization)
        org = self._transport.request("GET", f"/organization/{org_id}")
        if not org.get("public_key"):
            raise MissingKey(f"Organization {org.get('name')!r} has no public key on the server.")
        presented = _fingerprint_of(org["public_key"])
        if fingerprint is not None and fingerprint.strip() != presented:
            raise KeyMismatch(
                f"The server presents key {presented} for organization {org.get('name')!r}, not "
                f"the {fingerprint.strip()} you confirmed: nothing was trusted. Check the "
                "fingerprint with that organization again.",
                errors={"organization_id": org_id, "presented": presented},
            )
        codec = self._session.codec
        if isinstance(codec, SealedCodec):
            codec.ring.repin(org_id, org["public_key"], name=org.get("name"))
        else:
            self._state.pin(org_id, presented, name=org.get("name"), replace=True)
        return presented

    def forget_encryption(self, collaboration: int | str) -> bool:
        """Forget that this client saw a collaboration encrypted, so tasks without encryption
        may go to it again; True when it was remembered.

        Only for a collaboration that was deliberately re-created without encryption (after
        checking with its members): until then the client refuses plaintext to it, whatever the
        server says.

        Examples
        --------
        >>> client.forget_encryption("study")  # doctest: +SKIP
        True
        """
        if isinstance(collaboration, int) and not isinstance(collaboration, bool):
            return self._state.forget_encrypted(collaboration)
        return self._state.forget_encrypted(int(self._directory.collaboration(collaboration)["id"]))

    def _organization_id(self, organization: int | str) -> int:
        need = [organization] if isinstance(organization, int) else []
        names = self._directory.organization_names(need=need)
        ids = [i for i, n in names.items() if n == organization or i == organization]
        if not ids:
            raise NotFound(
                f"No organization {organization!r}. Yours to see are: "
                f"{', '.join(repr(n) for n in names.values()) or 'none'}."
            )
        return int(ids[0])


def _fingerprint_of(public_key: str | bytes) -> str:
    return fingerprint(decode_public_key(public_key))
