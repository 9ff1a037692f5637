"""Organization key pairs (X25519): creation, passphrase-protected files, key ids, fingerprints, pins."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.utils

from .errors import DecryptionError, KeyMismatch, MissingKey, ValidationError

__all__ = [
    "KeyRing",
    "OrgKey",
    "decode_public_key",
    "encode_public_key",
    "fingerprint",
    "key_id",
    "load_private_key",
]

PUBLIC_KEY_BYTES = 32
_MAGIC = "v6nb-private-key-1"
# Argon2id cost limits accepted from a key file, so a crafted file cannot make us allocate gigabytes.
_MAX_MEMLIMIT = 1 << 30
_MAX_OPSLIMIT = 16


def fingerprint(public_key: bytes) -> str:
    """A short, stable fingerprint of a public key, shown to people: ``SHA256:<base64, no padding>``.

    Examples
    --------
    >>> fingerprint(bytes(32))
    'SHA256:Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU'
    """
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id a sealed payload's header names a key by: the start of its SHA-256.

    Examples
    --------
    >>> key_id(bytes(32)).hex()
    '66687aadf862bd77'
    """
    return hashlib.sha256(public_key).digest()[:8]


def encode_public_key(public_key: bytes) -> str:
    """Encode a raw 32-byte public key as standard base64 (the form the server stores).

    Examples
    --------
    >>> encode_public_key(bytes(32))
    'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValidationError(f"a public key has {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return base64.b64encode(bytes(public_key)).decode("ascii")


def decode_public_key(text: str | bytes) -> bytes:
    """Decode a base64 public key (as stored on the server) to its raw 32 bytes.

    Raises :class:`~vantage6nb.common.errors.ValidationError` naming the problem when the
    text is not base64 of exactly 32 bytes.

    Examples
    --------
    >>> decode_public_key('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=') == bytes(32)
    True
    """
    if isinstance(text, (bytes, bytearray)) and len(text) == PUBLIC_KEY_BYTES:
        return bytes(text)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValidationError(f"public key is not valid base64: {exc}") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValidationError(
            f"public key must be base64 of {PUBLIC_KEY_BYTES} bytes (X25519), got {len(raw)} bytes"
        )
    return raw


class OrgKey:
    """An organization's X25519 key pair; the private half never leaves this object unencrypted
    except through :meth:`to_bytes`.

    Examples
    --------
    >>> key = OrgKey.generate()
    >>> OrgKey.from_bytes(key.to_bytes()).public_key == key.public_key
    True
    >>> key.fingerprint.startswith("SHA256:")
    True
    """

    __slots__ = ("_private",)

    def __init__(self, private_key: nacl.public.PrivateKey | bytes) -> None:
        if isinstance(private_key, (bytes, bytearray)):
            if len(private_key) != nacl.public.PrivateKey.SIZE:
                raise ValidationError(
                    f"a raw private key has {nacl.public.PrivateKey.SIZE} bytes, "
                    f"got {len(private_key)}"
                )
            private_key = nacl.public.PrivateKey(bytes(private_key))
        self._private = private_key

    @classmethod
    def generate(cls) -> OrgKey:
        """Create a fresh random key pair."""
        return cls(nacl.public.PrivateKey.generate())

    @property
    def private_key(self) -> nacl.public.PrivateKey:
        """The PyNaCl private key (used by :mod:`vantage6nb.common.crypto`)."""
        return self._private

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return bytes(self._private.public_key)

    @property
    def public_key_b64(self) -> str:
        """The public key as base64, the form uploaded to the server."""
        return encode_public_key(self.public_key)

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` fingerprint of the public key, for people to compare."""
        return fingerprint(self.public_key)

    def __repr__(self) -> str:
        return f"OrgKey({self.fingerprint})"

    def to_bytes(
        self,
        *,
        passphrase: str | bytes | None = None,
        opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
    ) -> bytes:
        """Export the private key as one ASCII line, encrypted when a passphrase is given.

        With a passphrase, a key is derived with Argon2id (``opslimit``/``memlimit``, a random
        16-byte salt) and the private key sealed with XSalsa20-Poly1305 (``SecretBox``). The
        caller writes the bytes to a file with mode 0600.

        Examples
        --------
        >>> key = OrgKey.generate()
        >>> key.to_bytes().startswith(b"v6nb-private-key-1 plain ")
        True
        """
        raw = bytes(self._private)
        if passphrase is None:
            return f"{_MAGIC} plain {_b64(raw)}\n".encode("ascii")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
        sealed = bytes(box.encrypt(raw))  # nonce || ciphertext
        line = f"{_MAGIC} argon2id {opslimit} {memlimit} {_b64(salt)} {_b64(sealed)}\n"
        return line.encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes | str, *, passphrase: str | bytes | None = None) -> OrgKey:
        """Import a private key written by :meth:`to_bytes`.

        Raises
        ------
        MissingKey
            The key is passphrase-protected and no passphrase was given.
        DecryptionError
            The passphrase is wrong (or the file was modified).
        ValidationError
            The data is not a vantage6nb private key.

        Examples
        --------
        >>> key = OrgKey.generate()
        >>> blob = key.to_bytes(passphrase="s3cret", opslimit=1, memlimit=8192)
        >>> OrgKey.from_bytes(blob, passphrase="s3cret").fingerprint == key.fingerprint
        True
        """
        text = data.decode("ascii", "replace") if isinstance(data, (bytes, bytearray)) else data
        parts = text.strip().split(" ")
        if not parts or parts[0] != _MAGIC:
            raise ValidationError(
                f"not a vantage6nb private key (expected a line starting with '{_MAGIC}'); "
                "create one with `v6nb node create-private-key`"
            )
        try:
            if parts[1] == "plain" and len(parts) == 3:
                return cls(_unb64(parts[2]))
            if parts[1] == "argon2id" and len(parts) == 6:
                opslimit, memlimit = int(parts[2]), int(parts[3])
                salt, sealed = _unb64(parts[4]), _unb64(parts[5])
            else:
                raise ValueError("unknown layout")
        except (ValueError, IndexError, binascii.Error) as exc:
            raise ValidationError(f"private key data is malformed ({exc})") from None
        if passphrase is None:
            raise MissingKey(
                "this private key is protected by a passphrase; pass the passphrase to load it"
            )
        if not (0 < opslimit <= _MAX_OPSLIMIT and 0 < memlimit <= _MAX_MEMLIMIT):
            raise ValidationError("private key file asks for out-of-range Argon2id limits")
        if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
            raise ValidationError("private key file has a salt of the wrong length")
        box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
        try:
            raw = box.decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise DecryptionError(
                "wrong passphrase for this private key (or the key file was modified)"
            ) from None
        return cls(raw)

    def check_public_key(self, public_key: bytes | str | None, *, organization: str = "") -> None:
        """Check that a public key (e.g. the one the server holds) belongs to this private key.

        Raises :class:`KeyMismatch` with both fingerprints when it does not, and
        :class:`MissingKey` when there is none.

        Examples
        --------
        >>> key = OrgKey.generate()
        >>> key.check_public_key(key.public_key_b64)
        """
        who = f" of organization {organization}" if organization else ""
        if public_key is None or public_key == "":
            raise MissingKey(f"no public key is registered{who}; upload {self.fingerprint}")
        raw = decode_public_key(public_key)
        if raw != self.public_key:
            raise KeyMismatch(
                f"the public key{who} ({fingerprint(raw)}) does not match the local private key "
                f"({self.fingerprint}); replacing it is an explicit act (e.g. `--replace-key`)",
                errors={"registered": fingerprint(raw), "local": self.fingerprint},
            )


class KeyRing:
    """Peer public keys by organization id, with fingerprint pinning (trust on first use).

    A key seen for the first time is pinned; a different key for a pinned organization raises
    :class:`KeyMismatch` naming that organization until it is re-pinned explicitly.

    Examples
    --------
    >>> ring = KeyRing()
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> ring.add(1, a.public_key, name="Leiden") == a.fingerprint
    True
    >>> try:
    ...     ring.add(1, b.public_key)
    ... except KeyMismatch as exc:
    ...     print("changed" in str(exc))
    True
    >>> ring.repin(1, b.public_key) == a.fingerprint
    True
    """

    def __init__(
        self, pins: Mapping[int, str] | None = None, *, names: Mapping[int, str] | None = None
    ) -> None:
        self._pins: dict[int, str] = {int(k): v for k, v in (pins or {}).items()}
        self._keys: dict[int, bytes] = {}
        self._ids: dict[int, bytes] = {}  # org id -> key id of its key in _keys
        self._names: dict[int, str] = {int(k): v for k, v in (names or {}).items()}

    def _label(self, org_id: int) -> str:
        name = self._names.get(org_id)
        return f"organization '{name}' (id {org_id})" if name else f"organization {org_id}"

    def add(self, org_id: int, public_key: bytes | str, *, name: str | None = None) -> str:
        """Add (and pin on first sight) an organization's public key; return its fingerprint."""
        if name:
            self._names[org_id] = name
        raw = decode_public_key(public_key)
        fp = fingerprint(raw)
        pinned = self._pins.get(org_id)
        if pinned is not None and pinned != fp:
            raise KeyMismatch(
                f"the public key of {self._label(org_id)} changed: pinned {pinned}, now {fp}",
                errors={"organization_id": org_id, "pinned": pinned, "presented": fp},
                hint="Confirm the new fingerprint with that organization, then re-pin it "
                "explicitly (KeyRing.repin); until then nothing is encrypted for or accepted from it",
            )
        self._pins[org_id] = fp
        self._keys[org_id] = raw
        self._ids[org_id] = key_id(raw)
        return fp

    def repin(self, org_id: int, public_key: bytes | str, *, name: str | None = None) -> str | None:
        """Replace a pinned key on purpose; return the previous fingerprint (None if unpinned)."""
        previous = self._pins.pop(org_id, None)
        self._keys.pop(org_id, None)
        self._ids.pop(org_id, None)
        self.add(org_id, public_key, name=name)
        return previous

    def public_key(self, org_id: int) -> bytes:
        """The raw public key of an organization; :class:`MissingKey` names it when unknown."""
        try:
            return self._keys[org_id]
        except KeyError:
            hint = " (its fingerprint is pinned but the key was not loaded)" * (
                org_id in self._pins
            )
            raise MissingKey(
                f"no public key known for {self._label(org_id)}{hint}; the organization must "
                "upload one (e.g. `v6nb node create-private-key`) before encrypted tasks can "
                "involve it"
            ) from None

    def has(self, org_id: int, *, key_id: bytes | None = None) -> bool:
        """Whether the ring holds a key of ``org_id`` (the one ``key_id`` names, when given)."""
        known = self._ids.get(org_id)
        return known is not None and (key_id is None or known == key_id)

    def fingerprint(self, org_id: int) -> str:
        """The pinned fingerprint of an organization."""
        if org_id not in self._pins:
            self.public_key(org_id)  # raises MissingKey
        return self._pins[org_id]

    def pins(self) -> dict[int, str]:
        """All pins ``{org_id: fingerprint}``, JSON-friendly, to persist and reload."""
        return dict(self._pins)

    def __contains__(self, org_id: object) -> bool:
        return org_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def load_private_key(
    path: str | os.PathLike[str],
    passphrase: str | bytes | None = None,
    *,
    passphrase_hint: str = "pass its passphrase",
) -> OrgKey:
    """Read a private key file written from :meth:`OrgKey.to_bytes` (by ``Client.create_private_key``
    or ``v6nb node create-private-key``).

    Raises
    ------
    MissingKey
        There is no such file, or the key is passphrase-protected and no passphrase was given
        (the message ends with ``passphrase_hint``, how the caller's user passes one).
    DecryptionError
        The passphrase is wrong (or the file was modified).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "org.key")
    >>> key = OrgKey.generate()
    >>> _ = open(path, "wb").write(key.to_bytes())
    >>> load_private_key(path).fingerprint == key.fingerprint
    True
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
            f"The private key {p} is protected by a passphrase: {passphrase_hint}"
        ) from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _derive(passphrase: str | bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, secret, salt, opslimit=opslimit, memlimit=memlimit
    )
