"""Organization keys: export/import with and without passphrase, public key checks, pinning."""

from __future__ import annotations

import base64

import pytest

from vantage6nb.common import crypto
from vantage6nb.common.errors import DecryptionError, KeyMismatch, MissingKey, ValidationError
from vantage6nb.common.keys import KeyRing, OrgKey, decode_public_key, encode_public_key

FAST = {"opslimit": 1, "memlimit": 8192}  # Argon2id minimums keep tests quick


def test_generate_gives_distinct_keys_and_fingerprints() -> None:
    a, b = OrgKey.generate(), OrgKey.generate()
    assert a.public_key != b.public_key and a.fingerprint != b.fingerprint
    assert a.fingerprint == crypto.fingerprint(a.public_key)
    assert "OrgKey(SHA256:" in repr(a) and bytes(a.private_key).hex() not in repr(a)


def test_plain_export_round_trip() -> None:
    key = OrgKey.generate()
    blob = key.to_bytes()
    assert blob.startswith(b"v6nb-private-key-1 plain ") and blob.endswith(b"\n")
    assert OrgKey.from_bytes(blob).public_key == key.public_key
    assert OrgKey.from_bytes(blob.decode()).public_key == key.public_key


def test_passphrase_round_trip_and_secret_not_in_file() -> None:
    key = OrgKey.generate()
    blob = key.to_bytes(passphrase="hunter2", **FAST)
    assert blob.startswith(b"v6nb-private-key-1 argon2id 1 8192 ")
    assert base64.b64encode(bytes(key.private_key)) not in blob
    assert OrgKey.from_bytes(blob, passphrase="hunter2").public_key == key.public_key
    assert OrgKey.from_bytes(blob, passphrase=b"hunter2").public_key == key.public_key


def test_two_exports_with_same_passphrase_differ() -> None:
    key = OrgKey.generate()
    assert key.to_bytes(passphrase="p", **FAST) != key.to_bytes(passphrase="p", **FAST)


def test_wrong_passphrase_is_a_clear_error() -> None:
    blob = OrgKey.generate().to_bytes(passphrase="right", **FAST)
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        OrgKey.from_bytes(blob, passphrase="wrong")


def test_missing_passphrase_is_a_missing_key() -> None:
    blob = OrgKey.generate().to_bytes(passphrase="right", **FAST)
    with pytest.raises(MissingKey, match="protected by a passphrase"):
        OrgKey.from_bytes(blob)


def test_modified_protected_file_fails() -> None:
    blob = bytearray(OrgKey.generate().to_bytes(passphrase="right", **FAST))
    blob[-10] = ord("A") if blob[-10] != ord("A") else ord("B")
    with pytest.raises((DecryptionError, ValidationError)):
        OrgKey.from_bytes(bytes(blob), passphrase="right")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"-----BEGIN RSA PRIVATE KEY-----\n",
        b"v6nb-private-key-1 plain",
        b"v6nb-private-key-1 plain !!!",
        b"v6nb-private-key-1 plain AAAA",
        b"v6nb-private-key-1 argon2id x y z w",
        b"v6nb-private-key-1 argon2id 99 8192 AAAAAAAAAAAAAAAAAAAAAA== AAAA",
        b"v6nb-private-key-1 argon2id 1 99999999999 AAAAAAAAAAAAAAAAAAAAAA== AAAA",
    ],
)
def test_malformed_key_data_is_a_validation_error(blob: bytes) -> None:
    with pytest.raises(ValidationError):
        OrgKey.from_bytes(blob, passphrase="p")


def test_raw_private_key_length_is_checked() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        OrgKey(b"short")


def test_public_key_codec() -> None:
    key = OrgKey.generate()
    assert encode_public_key(key.public_key) == key.public_key_b64
    assert decode_public_key(key.public_key_b64) == key.public_key
    assert decode_public_key(key.public_key) == key.public_key
    for bad in ("not base64!", base64.b64encode(b"x" * 31).decode(), ""):
        with pytest.raises(ValidationError, match="public key"):
            decode_public_key(bad)
    with pytest.raises(ValidationError):
        encode_public_key(b"x" * 31)


def test_check_public_key_at_node_start() -> None:
    key, other = OrgKey.generate(), OrgKey.generate()
    key.check_public_key(key.public_key_b64)
    with pytest.raises(KeyMismatch, match="Leiden") as info:
        key.check_public_key(other.public_key_b64, organization="'Leiden'")
    assert key.fingerprint in str(info.value) and other.fingerprint in str(info.value)
    assert info.value.errors == {"registered": other.fingerprint, "local": key.fingerprint}
    with pytest.raises(MissingKey, match="no public key"):
        key.check_public_key(None)


def test_keyring_pins_on_first_sight_and_refuses_a_changed_key() -> None:
    ring = KeyRing()
    old, new = OrgKey.generate(), OrgKey.generate()
    assert ring.add(5, old.public_key_b64, name="Maastricht") == old.fingerprint
    assert ring.add(5, old.public_key) == old.fingerprint  # same key again: fine
    with pytest.raises(KeyMismatch, match="'Maastricht' \\(id 5\\) changed") as info:
        ring.add(5, new.public_key_b64)
    assert info.value.errors["pinned"] == old.fingerprint
    assert info.value.errors["presented"] == new.fingerprint
    assert ring.public_key(5) == old.public_key  # the refused key was not taken


def test_keyring_explicit_repin() -> None:
    ring = KeyRing()
    old, new = OrgKey.generate(), OrgKey.generate()
    ring.add(5, old.public_key)
    assert ring.repin(5, new.public_key) == old.fingerprint
    assert ring.public_key(5) == new.public_key and ring.fingerprint(5) == new.fingerprint
    assert ring.repin(6, old.public_key) is None


def test_keyring_pins_persist_across_instances() -> None:
    key, rogue = OrgKey.generate(), OrgKey.generate()
    first = KeyRing()
    first.add(1, key.public_key)
    pins = first.pins()
    assert pins == {1: key.fingerprint}
    later = KeyRing({str(k): v for k, v in pins.items()}, names={1: "Leiden"})  # type: ignore[misc]
    with pytest.raises(MissingKey, match="pinned but the key was not loaded"):
        later.public_key(1)
    with pytest.raises(KeyMismatch, match="'Leiden'"):
        later.add(1, rogue.public_key)
    later.add(1, key.public_key)
    assert 1 in later and len(later) == 1


def test_keyring_unknown_org_is_named() -> None:
    with pytest.raises(MissingKey, match="organization 'Erasmus' \\(id 9\\)"):
        KeyRing(names={9: "Erasmus"}).public_key(9)
    with pytest.raises(MissingKey):
        KeyRing().fingerprint(9)
