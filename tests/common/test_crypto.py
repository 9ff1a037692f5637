"""Sealed payloads: round trips, every tampered byte, wrong keys, moved ciphertexts and forgeries."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from vantage6nb.common import crypto
from vantage6nb.common.crypto import Binding
from vantage6nb.common.errors import CryptoError, DecryptionError, MissingKey, ValidationError
from vantage6nb.common.keys import KeyRing, OrgKey

CS = 1024  # small chunks so tests cross many chunk boundaries cheaply


@pytest.fixture(scope="module")
def alice() -> OrgKey:
    return OrgKey(bytes(range(32)))


@pytest.fixture(scope="module")
def bob() -> OrgKey:
    return OrgKey(bytes(range(32, 64)))


@pytest.fixture(scope="module")
def carol() -> OrgKey:
    return OrgKey(bytes(range(64, 96)))


BIND = Binding("result", "uid-42", sender_org_id=1, recipient_org_id=2, run_id=10)


def _payload(n: int) -> bytes:
    return os.urandom(n)


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * CS + 5])
def test_round_trip_around_chunk_boundaries(alice: OrgKey, bob: OrgKey, size: int) -> None:
    data = _payload(size)
    sealed = crypto.seal(data, BIND, alice, bob.public_key, chunk_size=CS)
    assert data == crypto.open(sealed, BIND, bob, alice.public_key)
    if size >= 16:
        assert data not in sealed


def test_round_trip_5mb_default_chunks(alice: OrgKey, bob: OrgKey) -> None:
    data = _payload(5 * 1024 * 1024 + 3)
    sealed = crypto.seal(data, BIND, alice, bob.public_key)
    assert crypto.open(sealed, BIND, bob, alice.public_key) == data


def test_text_form_round_trip_and_is_sealed(alice: OrgKey, bob: OrgKey) -> None:
    text = crypto.seal_text(b'{"method": "avg"}', BIND, alice, bob.public_key)
    assert crypto.is_sealed(text) and text.startswith("v6nb1:")
    assert crypto.is_sealed(text.encode())
    assert not crypto.is_sealed('{"method": "avg"}') and not crypto.is_sealed(None)
    assert crypto.open_text(text, BIND, bob, alice.public_key) == b'{"method": "avg"}'
    assert crypto.read_header(text).binding == BIND


@pytest.mark.parametrize("size", [0, 2, 3, 300_001])
def test_text_form_matches_binary_form_across_windows(
    alice: OrgKey, bob: OrgKey, size: int
) -> None:
    data = _payload(size)
    text = crypto.seal_text(data, BIND, alice, bob.public_key, chunk_size=CS)
    assert crypto.open_text(text, BIND, bob, alice.public_key) == data
    blob = base64.b64decode(text[len("v6nb1:") :])
    assert crypto.open(blob, BIND, bob, alice.public_key) == data
    assert text == "v6nb1:" + base64.b64encode(blob).decode()


def test_text_form_tampered_character(alice: OrgKey, bob: OrgKey) -> None:
    text = crypto.seal_text(_payload(5000), BIND, alice, bob.public_key, chunk_size=CS)
    for pos in (len("v6nb1:") + 300, len(text) // 2, len(text) - 30):
        bad = text[:pos] + ("A" if text[pos] != "A" else "B") + text[pos + 1 :]
        with pytest.raises(DecryptionError):
            crypto.open_text(bad, BIND, bob, alice.public_key)
    with pytest.raises(DecryptionError, match="base64"):
        crypto.open_text(text[:100] + "*" + text[101:], BIND, bob, alice.public_key)


@pytest.mark.parametrize("bad", ['{"method": "x"}', "v6nb1:***", "v6nb1:AAAA"])
def test_text_form_rejects_non_payloads(alice: OrgKey, bob: OrgKey, bad: str) -> None:
    with pytest.raises(DecryptionError):
        crypto.open_text(bad, BIND, bob, alice.public_key)


class _Trickle(io.RawIOBase):
    """A reader returning at most 7 bytes per read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, 7) if n >= 0 else 7)


def test_streams_handle_short_reads_and_files(alice: OrgKey, bob: OrgKey, tmp_path: Path) -> None:
    data = _payload(5 * CS + 3)
    sealed_path = tmp_path / "payload.bin"
    with sealed_path.open("wb") as dst:
        n = crypto.seal_stream(_Trickle(data), dst, BIND, alice, bob.public_key, chunk_size=CS)
    assert n == sealed_path.stat().st_size
    out = io.BytesIO()
    assert crypto.open_stream(
        _Trickle(sealed_path.read_bytes()), out, BIND, bob, alice.public_key
    ) == len(data)
    assert out.getvalue() == data


def test_streaming_memory_stays_small(alice: OrgKey, bob: OrgKey, tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    plain, sealed, back = tmp_path / "p", tmp_path / "s", tmp_path / "b"
    with plain.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        with plain.open("rb") as src, sealed.open("wb") as dst:
            crypto.seal_stream(src, dst, BIND, alice, bob.public_key)
        with sealed.open("rb") as src, back.open("wb") as dst:
            crypto.open_stream(src, dst, BIND, bob, alice.public_key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes: not streaming"
    assert back.read_bytes() == plain.read_bytes()


def _regions(sealed: bytes, uid_len: int, chunk_size: int) -> list[tuple[str, int, int]]:
    head = 46 + uid_len
    out = [
        ("header", 0, head),
        ("nonce", head, head + 24),
        ("wrapped", head + 24, head + 104),
    ]
    pos, i = head + 104, 0
    while pos < len(sealed):
        end = min(pos + chunk_size + 16, len(sealed))
        out.append((f"chunk {i}", pos, end))
        pos, i = end, i + 1
    return out


def test_every_tampered_byte_is_rejected_with_the_right_reason(alice: OrgKey, bob: OrgKey) -> None:
    sealed = crypto.seal(_payload(3 * CS - 100), BIND, alice, bob.public_key, chunk_size=CS)
    regions = _regions(sealed, len(BIND.task_uid), CS)
    assert [r[0] for r in regions][-3:] == ["chunk 0", "chunk 1", "chunk 2"]
    expected = {
        "header": ("bound to", "header", "key", "version"),
        "nonce": ("does not authenticate",),
        "wrapped": ("does not authenticate",),
    }
    for name, start, end in regions:
        for pos in range(start, end):
            bad = bytearray(sealed)
            bad[pos] ^= 0x01
            with pytest.raises(DecryptionError) as info:
                crypto.open(bytes(bad), BIND, bob, alice.public_key)
            words = expected.get(name, (f"{name} failed",))
            assert any(w in str(info.value) for w in words), (name, pos, str(info.value))


def test_truncation_appending_and_reordering(alice: OrgKey, bob: OrgKey) -> None:
    sealed = crypto.seal(_payload(3 * CS - 100), BIND, alice, bob.public_key, chunk_size=CS)
    regions = _regions(sealed, len(BIND.task_uid), CS)
    cuts = {end for _, _, end in regions[:-1]} | {len(sealed) - 1, len(sealed) - 16, 10}
    for cut in sorted(cuts):
        with pytest.raises(DecryptionError, match="truncated|failed"):
            crypto.open(sealed[:cut], BIND, bob, alice.public_key)
    for extra in (b"\x00", b"x" * 40):
        with pytest.raises(DecryptionError, match="failed|after the final chunk"):
            crypto.open(sealed + extra, BIND, bob, alice.public_key)
    c0, c1, c2 = (sealed[s:e] for _, s, e in regions[-3:])
    prefix = sealed[: regions[-3][1]]
    with pytest.raises(DecryptionError, match="chunk 0 failed"):
        crypto.open(prefix + c1 + c0 + c2, BIND, bob, alice.public_key)
    with pytest.raises(DecryptionError, match="chunk 1 failed"):
        crypto.open(prefix + c0 + c2, BIND, bob, alice.public_key)


def test_appended_data_after_full_final_chunk(alice: OrgKey, bob: OrgKey) -> None:
    sealed = crypto.seal(_payload(2 * CS), BIND, alice, bob.public_key, chunk_size=CS)
    with pytest.raises(DecryptionError, match="after the final chunk"):
        crypto.open(sealed + b"\x00", BIND, bob, alice.public_key)


def test_wrong_recipient_key(alice: OrgKey, bob: OrgKey, carol: OrgKey) -> None:
    sealed = crypto.seal(b"secret", BIND, alice, bob.public_key)
    with pytest.raises(DecryptionError, match="another key of org 2"):
        crypto.open(sealed, BIND, carol, alice.public_key)


def test_wrong_sender_key(alice: OrgKey, bob: OrgKey, carol: OrgKey) -> None:
    sealed = crypto.seal(b"secret", BIND, alice, bob.public_key)
    ring = KeyRing()
    ring.add(1, carol.public_key, name="Leiden")
    with pytest.raises(DecryptionError, match="not the known key of that organization"):
        crypto.open(sealed, BIND, bob, ring)


def test_keyring_lookup_by_sender_org(alice: OrgKey, bob: OrgKey) -> None:
    ring = KeyRing()
    ring.add(1, alice.public_key_b64)
    assert crypto.open(crypto.seal(b"ok", BIND, alice, bob.public_key), BIND, bob, ring) == b"ok"
    with pytest.raises(MissingKey, match="organization 3"):
        crypto.open(
            crypto.seal(b"ok", dataclasses.replace(BIND, sender_org_id=3), alice, bob.public_key),
            dataclasses.replace(BIND, sender_org_id=3),
            bob,
            ring,
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"run_id": 11}, "run_id"),
        ({"task_uid": "uid-43"}, "task_uid"),
        ({"kind": "input", "run_id": None}, "kind"),
        ({"sender_org_id": 3}, "sender_org_id"),
        ({"recipient_org_id": 3}, "recipient_org_id"),
    ],
)
def test_ciphertext_moved_to_another_binding_is_rejected(
    alice: OrgKey, bob: OrgKey, change: dict, field: str
) -> None:
    sealed = crypto.seal(b"result", BIND, alice, bob.public_key)
    with pytest.raises(DecryptionError, match=f"differs in: .*{field}") as info:
        crypto.open(sealed, dataclasses.replace(BIND, **change), bob, alice.public_key)
    assert "uid-42" in str(info.value)


def test_reflected_payload_is_rejected(alice: OrgKey, bob: OrgKey) -> None:
    # X25519 shared secrets are symmetric: alice->bob could be replayed as bob->alice.
    sealed = crypto.seal(b"r", BIND, alice, bob.public_key)
    back = dataclasses.replace(BIND, sender_org_id=2, recipient_org_id=1)
    with pytest.raises(DecryptionError):
        crypto.open(sealed, back, alice, bob.public_key)


class _Impostor:
    """The server's position: it knows alice's public key and has its own key pair."""

    def __init__(self, claimed_public: bytes) -> None:
        self._own = OrgKey.generate()
        self.public_key = claimed_public

    @property
    def private_key(self):  # type: ignore[no-untyped-def]
        return self._own.private_key


def test_forgery_with_public_keys_only_is_rejected(alice: OrgKey, bob: OrgKey) -> None:
    server = _Impostor(alice.public_key)
    forged = crypto.seal(b'{"method": "exfiltrate"}', BIND, server, bob.public_key)  # type: ignore[arg-type]
    assert crypto.read_header(forged).binding == BIND  # it looks right from outside
    with pytest.raises(DecryptionError, match="does not authenticate as coming from org 1"):
        crypto.open(forged, BIND, bob, alice.public_key)


def test_transplanted_key_box_with_new_header_is_rejected(alice: OrgKey, bob: OrgKey) -> None:
    # Keep alice's authentic wrapped key, rewrite the clear header to another run.
    sealed = crypto.seal(b"result", BIND, alice, bob.public_key, chunk_size=CS)
    other = dataclasses.replace(BIND, run_id=11)
    head = 46 + len(BIND.task_uid)
    moved = bytearray(sealed)
    moved[20:28] = struct.pack(">Q", 11)
    with pytest.raises(DecryptionError, match="header was modified"):
        crypto.open(bytes(moved), other, bob, alice.public_key)
    assert sealed[:head] != bytes(moved[:head])


def test_header_layout_matches_docs(alice: OrgKey, bob: OrgKey) -> None:
    sealed = crypto.seal(b"", BIND, alice, bob.public_key)
    version, kind, flags, log2, sender, recipient, run = struct.unpack(">BBBBQQQ", sealed[:28])
    assert (version, kind, flags, 1 << log2) == (2, 2, 1, crypto.DEFAULT_CHUNK_SIZE)
    assert (sender, recipient, run) == (1, 2, 10)
    assert struct.unpack(">H", sealed[44:46])[0] == len("uid-42")
    assert sealed[46:52] == b"uid-42"
    assert len(sealed) == 52 + 24 + 80 + 16  # header, box nonce, key box, one empty chunk's tag


def test_unknown_version_is_named(alice: OrgKey, bob: OrgKey) -> None:
    sealed = bytearray(crypto.seal(b"x", BIND, alice, bob.public_key))
    sealed[0] = 9
    with pytest.raises(DecryptionError, match="version 9"):
        crypto.open(bytes(sealed), BIND, bob, alice.public_key)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "output"},
        {"task_uid": ""},
        {"task_uid": "x" * 1025},
        {"sender_org_id": -1},
        {"run_id": 0},
    ],
)
def test_invalid_binding_is_a_validation_error(kwargs: dict) -> None:
    base = {"kind": "input", "task_uid": "t", "sender_org_id": 1, "recipient_org_id": 2}
    with pytest.raises(ValidationError):
        Binding(**{**base, **kwargs})


@pytest.mark.parametrize("chunk_size", [1000, 512, 1 << 25])
def test_bad_chunk_size(alice: OrgKey, bob: OrgKey, chunk_size: int) -> None:
    with pytest.raises(ValidationError, match="chunk_size"):
        crypto.seal(b"x", BIND, alice, bob.public_key, chunk_size=chunk_size)


def test_decryption_error_is_crypto_and_value_error() -> None:
    assert issubclass(DecryptionError, CryptoError) and issubclass(DecryptionError, ValueError)


def test_older_cryptography_without_encrypt_into_makes_the_same_bytes(
    alice: OrgKey, bob: OrgKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cryptography < 47 has no encrypt_into/decrypt_into: the fallback must be byte-compatible.
    data = _payload(3 * CS + 5)
    fixed = (bytes(32), bytes(24))
    fast = io.BytesIO()
    crypto.seal_stream(
        io.BytesIO(data), fast, BIND, alice, bob.public_key, chunk_size=CS, _fixed=fixed
    )
    monkeypatch.setattr(crypto, "_INTO", False)
    slow = io.BytesIO()
    crypto.seal_stream(
        io.BytesIO(data), slow, BIND, alice, bob.public_key, chunk_size=CS, _fixed=fixed
    )
    assert slow.getvalue() == fast.getvalue()
    assert crypto.open(fast.getvalue(), BIND, bob, alice.public_key) == data
    bad = bytearray(fast.getvalue())
    bad[-1] ^= 1
    with pytest.raises(DecryptionError, match="chunk 3 failed"):
        crypto.open(bytes(bad), BIND, bob, alice.public_key)
