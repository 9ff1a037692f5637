"""How task inputs and results travel as text: plain JSON, or sealed per organization (encryption).

The client keeps one codec in ``client._codec``. ``client.setup_encryption(...)`` replaces it with
a :class:`SealedCodec` that encrypts each input for its receiving organization and decrypts and
verifies each result; nothing else in the client changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..common import crypto
from ..common.errors import DecryptionError, KeyMismatch, MissingKey
from ..common.keys import KeyRing, OrgKey

__all__ = [
    "Codec",
    "PlainCodec",
    "SealedCodec",
    "check_own_key",
    "create_private_key",
    "load_private_key",
]


class Codec(Protocol):
    """Turns an input object into the text one organization receives, and a result text back.

    ``binding`` names what a ciphertext must be bound to. For inputs: ``collaboration_id``,
    ``task_uid``, ``image``, ``method``, ``sender_org_id``, ``receiver_org_id``. For results:
    ``collaboration_id``, ``task_id``, ``task_uid``, ``run_id``, ``sender_org_id`` (the run's
    organization) and ``receiver_org_id`` (the task's initiating organization).
    """

    encrypted: bool

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str: ...

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any: ...

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        """A result in its binary wire form (a file fetched from ``result_ref``)."""
        ...


class PlainCodec:
    """JSON text in and out, for collaborations without encryption.

    Examples
    --------
    >>> codec = PlainCodec()
    >>> codec.encode_input(1, {"method": "m", "args": [], "kwargs": {}}, {})
    '{"method": "m", "args": [], "kwargs": {}}'
    >>> codec.decode_result(1, '{"n": 3}', {})
    {'n': 3}
    """

    encrypted = False

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        return json.dumps(obj, allow_nan=True)

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DecryptionError(
                f"The result of organization {org_id} is not JSON ({exc}); if the collaboration is "
                "encrypted, set up your key with client.setup_encryption(...)."
            ) from None

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        try:
            with open(path, "rb") as fh:
                return json.load(fh)
        except ValueError as exc:
            raise DecryptionError(
                f"The result of organization {org_id} is not JSON ({exc}); if the collaboration is "
                "encrypted, set up your key with client.setup_encryption(...)."
            ) from None


class SealedCodec:
    """Seals each input for its receiving organization; opens and verifies results sent to us.

    ``fetch(collaboration_id)`` lists the collaboration's organizations (``id, name,
    public_key``); their keys are pinned in ``ring`` on first sight, so a key that changes on the
    server raises :class:`KeyMismatch` naming the organization.
    """

    encrypted = True

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
                        raise KeyMismatch(
                            exc.msg.split(". Confirm")[0] + ". Nothing is encrypted for or "
                            "accepted from it. Confirm the new fingerprint with that "
                            f"organization, then call client.trust_key({org.get('name')!r}).",
                            errors=exc.errors,
                        ) from None

    def _public_key(self, org_id: int) -> bytes:
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

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        uid = str(binding["task_uid"])
        if self._fresh_for != uid:  # once per task: one request, and key changes show up
            self.refresh(int(binding["collaboration_id"]))
            self._fresh_for = uid
        bind = crypto.Binding("input", uid, self.org_id, int(org_id))
        data = json.dumps(obj, allow_nan=True).encode("utf-8")
        return crypto.seal_text(data, bind, self.key, self._public_key(int(org_id)))

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        receiver = binding.get("receiver_org_id")
        if receiver is not None and int(receiver) != self.org_id:
            raise DecryptionError(
                f"This task was created by organization {receiver}: its results are encrypted "
                "for that organization, and only its members can read them."
            )
        bind = self._result_binding(org_id, crypto.read_header(text), binding)
        data = crypto.open_text(text, bind, self.key, self._public_key(bind.sender_org_id))
        try:
            return json.loads(data)
        except ValueError as exc:
            raise DecryptionError(
                f"The result of organization {org_id} is not JSON ({exc})."
            ) from None

    def _result_binding(
        self, org_id: int, header: crypto.Header, binding: Mapping[str, Any]
    ) -> crypto.Binding:
        receiver = binding.get("receiver_org_id")
        if receiver is not None and int(receiver) != self.org_id:
            raise DecryptionError(
                f"This task was created by organization {receiver}: its results are encrypted "
                "for that organization, and only its members can read them."
            )
        org_id = int(org_id)
        if org_id != self.org_id and (
            org_id not in self.ring
            or hashlib.sha256(self._public_key(org_id)).digest()[:8] != header.sender_key_id
        ):
            self.refresh(int(binding["collaboration_id"]))
        return crypto.Binding(
            "result", str(binding["task_uid"]), org_id, self.org_id, int(binding["run_id"])
        )

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        """Decrypt a sealed result file chunk by chunk into a temporary file, then parse it.

        Every chunk is authenticated before it is written; on failure the partial plaintext is
        removed. Memory: the parsed value (one copy), not the ciphertext or its base64.
        """
        with open(path, "rb") as fh:
            header = crypto.read_header(fh.read(2048))
        bind = self._result_binding(org_id, header, binding)
        plain = Path(str(path) + ".plain")
        try:
            with open(path, "rb") as src, open(plain, "wb") as dst:
                crypto.open_stream(src, dst, bind, self.key, self._public_key(bind.sender_org_id))
            with open(plain, "rb") as fh:
                return json.load(fh)
        except DecryptionError:
            raise
        except ValueError as exc:
            raise DecryptionError(
                f"The result of organization {bind.sender_org_id} is not JSON ({exc})."
            ) from None
        finally:
            plain.unlink(missing_ok=True)


def load_private_key(path: str | os.PathLike[str], passphrase: str | None = None) -> OrgKey:
    """Read a private key file written by :func:`create_private_key` or ``v6nb node create-private-key``.

    Examples
    --------
    >>> key = load_private_key("leiden.key", passphrase="s3cret")  # doctest: +SKIP
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingKey(
            f"No private key file at {p}. Create one with "
            "vantage6nb.Client.create_private_key(path) or `v6nb node create-private-key`."
        )
    try:
        return OrgKey.from_bytes(p.read_bytes(), passphrase=passphrase)
    except MissingKey:
        raise MissingKey(
            f"The private key {p} is protected by a passphrase: pass passphrase=..."
        ) from None


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
