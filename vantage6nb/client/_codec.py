"""The client's side of the envelope: its codecs, its peer-key lookup, and its key files.

The client keeps one codec in ``client._codec``. ``client.setup_encryption(...)`` replaces it with
a :class:`SealedCodec` that seals each input for its receiving organization (bound to the task
uid, this organization and the receiver) and opens and verifies each result (bound to the task
uid, the run id, the run's organization and this one); nothing else in the client changes. The
codecs are :mod:`vantage6nb.common.envelope`'s, shared with the node.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..common import envelope
from ..common.envelope import Codec
from ..common.errors import KeyMismatch, MissingKey
from ..common.keys import KeyRing, OrgKey, decode_public_key, fingerprint
from ..common.keys import load_private_key as read_private_key
from ._state import ResearcherState

__all__ = [
    "Codec",
    "CollaborationKeys",
    "PinnedKeyRing",
    "PlainCodec",
    "SealedCodec",
    "check_own_key",
    "create_private_key",
    "load_private_key",
]


class PlainCodec(envelope.PlainCodec):
    """JSON text in and out, for collaborations without encryption; its errors name the fix.

    Examples
    --------
    >>> try:
    ...     PlainCodec().decode_result(2, "v6nb1:AQE=", {})
    ... except ValueError as exc:  # a DecryptionError
    ...     print(str(exc).split("); ")[1])
    if the collaboration is encrypted, set up your key with client.setup_encryption(...).
    """

    hint = "if the collaboration is encrypted, set up your key with client.setup_encryption(...)."


class PinnedKeyRing(KeyRing):
    """A :class:`~vantage6nb.common.keys.KeyRing` whose pins live in the researcher's state folder
    (:class:`ResearcherState`), so a new client notices a replaced key as this one would.

    ``pins`` (fingerprints the researcher passed explicitly) win over the folder's and are written
    to it. A key seen first is pinned in the folder, unless another client sharing the folder
    pinned another key for the organization meanwhile: that pin counts.

    Examples
    --------
    >>> import tempfile
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> folder = tempfile.mkdtemp()
    >>> PinnedKeyRing(ResearcherState("http://s", folder)).add(2, a.public_key) == a.fingerprint
    True
    >>> try:  # a new client, same folder, no pins=
    ...     PinnedKeyRing(ResearcherState("http://s", folder)).add(2, b.public_key)
    ... except KeyMismatch as exc:
    ...     print("changed" in str(exc))
    True
    """

    def __init__(self, state: ResearcherState, pins: Mapping[int, str] | None = None) -> None:
        explicit = {int(k): str(v) for k, v in (pins or {}).items()}
        super().__init__({**state.pins(), **explicit}, names=state.pin_names())
        self.state = state
        self._explicit = set(explicit)
        self._replacing: set[int] = set()

    def add(self, org_id: int, public_key: bytes | str, *, name: str | None = None) -> str:
        org_id = int(org_id)
        replacing = org_id in self._replacing or org_id in self._explicit
        if org_id not in self._pins and not replacing:  # first sight here: the folder decides
            fp = fingerprint(decode_public_key(public_key))
            stored = self.state.pin(org_id, fp, name=name)
            if stored != fp:  # pinned by another client sharing the folder since this one began
                self._pins[org_id] = stored
        fp = super().add(org_id, public_key, name=name)  # KeyMismatch for a changed key
        if replacing:
            self.state.pin(org_id, fp, name=name, replace=True)
        return fp

    def repin(self, org_id: int, public_key: bytes | str, *, name: str | None = None) -> str | None:
        org_id = int(org_id)
        self._replacing.add(org_id)
        try:
            return super().repin(org_id, public_key, name=name)
        finally:
            self._replacing.discard(org_id)


def trust_hint(name: Any, presented: Any, where: str) -> str:
    """What to do about a changed key: check it, then ``client.trust_key(name, fingerprint)``.

    Examples
    --------
    >>> print(trust_hint("Utrecht", "SHA256:new", "/home/r/.local/state/vantage6nb/x.json"))
    Nothing is encrypted for or accepted from it (pins are kept in /home/r/.local/state/vantage6nb/x.json). Confirm the new fingerprint with that organization, not through this server; to accept exactly that key, call client.trust_key('Utrecht', 'SHA256:new'), or to accept whatever key the server holds, call client.trust_key('Utrecht').
    """
    return (
        f"Nothing is encrypted for or accepted from it (pins are kept in {where}). Confirm the "
        "new fingerprint with that organization, not through this server; to accept exactly "
        f"that key, call client.trust_key({name!r}, {presented!r}), or to accept whatever key "
        f"the server holds, call client.trust_key({name!r})."
    )


class CollaborationKeys:
    """The client's :class:`~vantage6nb.common.envelope.KeyLookup`: the public keys of a
    collaboration's organizations, as ``fetch(collaboration_id)`` lists them (``id, name,
    public_key``), pinned in ``ring`` on first sight.

    A key that changes on the server raises :class:`KeyMismatch` naming the organization and
    ``client.trust_key(...)``. Sealing inputs fetches the listing once per task uid; opening a
    result fetches it when the sender's key is unknown or not the one the payload names.
    """

    def __init__(
        self,
        key: OrgKey,
        org_id: int,
        fetch: Callable[[int], list[Mapping[str, Any]]],
        ring: KeyRing | None = None,
    ) -> None:
        self.key, self.org_id, self._fetch = key, int(org_id), fetch
        self.ring = ring if ring is not None else KeyRing()
        self._lock = threading.Lock()
        self._fresh_for: str | None = None  # the task uid the keys were last fetched for
        self._names: dict[int, str] = {}

    def refresh(self, collaboration_id: int) -> None:
        """Fetch the collaboration's public keys; raises KeyMismatch for a changed pinned key."""
        rows = self._fetch(int(collaboration_id))
        with self._lock:
            self._names.update({int(o["id"]): str(o.get("name")) for o in rows})
            for org in rows:
                if int(org["id"]) == self.org_id:
                    self.ring.repin(self.org_id, self.key.public_key, name=org.get("name"))
                elif org.get("public_key"):
                    try:
                        self.ring.add(int(org["id"]), org["public_key"], name=org.get("name"))
                    except KeyMismatch as exc:
                        state = getattr(self.ring, "state", None)
                        where = state.where if state is not None else "this session's memory"
                        presented = exc.errors.get("presented")
                        raise exc.with_hint(trust_hint(org.get("name"), presented, where)) from None

    def peer_key(
        self,
        org_id: int,
        binding: Mapping[str, Any],
        *,
        fresh: bool = False,
        key_id: bytes | None = None,
    ) -> bytes:
        """The public key of ``org_id`` in ``binding["collaboration_id"]`` (this organization's own
        without asking); :class:`MissingKey` names an organization without one."""
        if fresh:
            uid = str(binding.get("task_uid"))
            if self._fresh_for != uid:  # once per task: one request, and key changes show up
                self.refresh(int(binding["collaboration_id"]))
                self._fresh_for = uid
        elif org_id != self.org_id and not self.ring.has(org_id, key_id=key_id):
            self.refresh(int(binding["collaboration_id"]))
        with self._lock:
            if org_id == self.org_id:
                return self.key.public_key
            if org_id in self.ring:
                return self.ring.public_key(org_id)
        name = self._names.get(org_id)
        raise MissingKey(
            f"Organization {name!r} (id {org_id}) has no public key on the server, so nothing "
            "can be encrypted for it: its node creates one with `v6nb node create-private-key`."
        )


class SealedCodec(envelope.SealedCodec):
    """The envelope's sealed codec with the client's key lookup (:class:`CollaborationKeys`).

    ``fetch(collaboration_id)`` lists the collaboration's organizations (``id, name,
    public_key``); their keys are pinned in ``ring`` (``client.key_pins``) on first sight.
    """

    def __init__(
        self,
        key: OrgKey,
        org_id: int,
        fetch: Callable[[int], list[Mapping[str, Any]]],
        ring: KeyRing | None = None,
    ) -> None:
        self._keys = CollaborationKeys(key, org_id, fetch, ring)
        super().__init__(key, org_id, self._keys)

    @property
    def ring(self) -> KeyRing:
        """The pinned peer keys (``client.trust_key`` re-pins one here)."""
        return self._keys.ring

    def refresh(self, collaboration_id: int) -> None:
        """Fetch the collaboration's public keys; raises KeyMismatch for a changed pinned key."""
        self._keys.refresh(collaboration_id)


def load_private_key(path: str | os.PathLike[str], passphrase: str | None = None) -> OrgKey:
    """Read a private key file written by :func:`create_private_key` or ``v6nb node create-private-key``.

    Examples
    --------
    >>> key = load_private_key("leiden.key", passphrase="s3cret")  # doctest: +SKIP
    """
    return read_private_key(path, passphrase, passphrase_hint="pass passphrase=...")


def create_private_key(
    path: str | os.PathLike[str], passphrase: str | None = None, *, force: bool = False
) -> OrgKey:
    """Create an organization key pair and write the private key to ``path`` (mode 0600).

    An existing file is reused (loaded, not overwritten) unless ``force``. With a
    ``passphrase`` the file is encrypted (Argon2id + XSalsa20-Poly1305).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "org.key")
    >>> key = create_private_key(path)
    >>> oct(os.stat(path).st_mode & 0o777), create_private_key(path).fingerprint == key.fingerprint
    ('0o600', True)
    """
    p = Path(path).expanduser()
    if p.exists() and not force:
        return load_private_key(p, passphrase)
    key = OrgKey.generate()
    data = key.to_bytes(passphrase=passphrase)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".key-", dir=p.parent)  # created with mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if force:
            os.replace(tmp, p)
        else:
            os.link(tmp, p)  # fails if the file appeared meanwhile: never overwrite silently
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key


def check_own_key(key: OrgKey, org: Mapping[str, Any]) -> bool:
    """True when ``org`` (as the server lists it) has no public key yet; KeyMismatch when another."""
    try:
        key.check_public_key(org.get("public_key"), organization=f"'{org.get('name')}'")
    except MissingKey:
        return True
    except KeyMismatch as exc:
        raise KeyMismatch(
            f"The server holds public key {org.get('key_fingerprint')} for your organization "
            f"'{org.get('name')}', but this private key is {key.fingerprint}. Use the key file of "
            "your organization's node, or ask an administrator to replace the key (logged).",
            errors=exc.errors,
        ) from None
    return False
