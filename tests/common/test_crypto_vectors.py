"""Known-answer vectors for the sealed-payload format (regenerate: python tests/common/test_crypto_vectors.py)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pytest

from vantage6nb.common import crypto
from vantage6nb.common.crypto import Binding
from vantage6nb.common.errors import DecryptionError
from vantage6nb.common.keys import OrgKey

VECTORS = Path(__file__).resolve().parents[1] / "data" / "crypto_vectors.json"

SENDER_SK = bytes(range(32))
RECIPIENT_SK = bytes(range(32, 64))
PAYLOAD_KEY = bytes([0x40 + i % 16 for i in range(32)])
BOX_NONCE = bytes([0x60 + i % 16 for i in range(24)])

CASES = [
    ("empty input", Binding("input", "task-0001", 1, 2), 1024, 0),
    ("one byte result", Binding("result", "task-0001", 2, 1, run_id=7), 1024, 1),
    ("three chunks", Binding("result", "c0ffee-uid", 3, 1, run_id=123456), 1024, 3000),
    ("exact chunk multiple", Binding("input", "ünïcode-uid", 1, 3), 1024, 2048),
    ("default chunk size", Binding("input", "t", 0, 2**64 - 1), crypto.DEFAULT_CHUNK_SIZE, 70000),
]


def _plaintext(n: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(n))


def _make(name: str, binding: Binding, chunk_size: int, size: int) -> dict:
    sender, recipient = OrgKey(SENDER_SK), OrgKey(RECIPIENT_SK)
    out = io.BytesIO()
    crypto.seal_stream(
        io.BytesIO(_plaintext(size)),
        out,
        binding,
        sender,
        recipient.public_key,
        chunk_size=chunk_size,
        _fixed=(PAYLOAD_KEY, BOX_NONCE),
    )
    return {
        "name": name,
        "sender_sk": SENDER_SK.hex(),
        "recipient_sk": RECIPIENT_SK.hex(),
        "sender_pk": sender.public_key.hex(),
        "recipient_pk": recipient.public_key.hex(),
        "sender_fingerprint": sender.fingerprint,
        "binding": {
            "kind": binding.kind,
            "task_uid": binding.task_uid,
            "sender_org_id": binding.sender_org_id,
            "recipient_org_id": binding.recipient_org_id,
            "run_id": binding.run_id,
        },
        "chunk_size": chunk_size,
        "payload_key": PAYLOAD_KEY.hex(),
        "box_nonce": BOX_NONCE.hex(),
        "plaintext_len": size,
        **_sealed_fields(out.getvalue()),
    }


def _sealed_fields(sealed: bytes) -> dict:
    # Large vectors are stored by digest to keep the file small; a digest match is byte-for-byte.
    if len(sealed) > 8192:
        return {"sealed_len": len(sealed), "sealed_sha256": hashlib.sha256(sealed).hexdigest()}
    return {"sealed_len": len(sealed), "sealed": sealed.hex()}


def _sealed(vec: dict) -> bytes:
    if "sealed" in vec:
        return bytes.fromhex(vec["sealed"])
    return _seal_vector(vec)


def _load() -> dict:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def _vector_ids() -> list[str]:
    return [case[0] for case in CASES]


def _seal_vector(vec: dict) -> bytes:
    binding = Binding(**vec["binding"])
    out = io.BytesIO()
    crypto.seal_stream(
        io.BytesIO(_plaintext(vec["plaintext_len"])),
        out,
        binding,
        OrgKey(bytes.fromhex(vec["sender_sk"])),
        bytes.fromhex(vec["recipient_pk"]),
        chunk_size=vec["chunk_size"],
        _fixed=(bytes.fromhex(vec["payload_key"]), bytes.fromhex(vec["box_nonce"])),
    )
    return out.getvalue()


@pytest.mark.parametrize("name", _vector_ids())
def test_seal_matches_vector_byte_for_byte(name: str) -> None:
    vec = next(v for v in _load()["payloads"] if v["name"] == name)
    sealed = _seal_vector(vec)
    assert len(sealed) == vec["sealed_len"]
    if "sealed" in vec:
        assert sealed.hex() == vec["sealed"]
    else:
        assert hashlib.sha256(sealed).hexdigest() == vec["sealed_sha256"]


@pytest.mark.parametrize("name", _vector_ids())
def test_vector_opens_with_the_normal_path(name: str) -> None:
    vec = next(v for v in _load()["payloads"] if v["name"] == name)
    binding = Binding(**vec["binding"])
    recipient = OrgKey(bytes.fromhex(vec["recipient_sk"]))
    assert recipient.public_key.hex() == vec["recipient_pk"]
    sealed = _sealed(vec)
    plain = crypto.open(sealed, binding, recipient, bytes.fromhex(vec["sender_pk"]))
    assert plain == _plaintext(vec["plaintext_len"])
    header = crypto.read_header(sealed)
    assert header.version == crypto.VERSION == sealed[0]
    assert header.binding == binding and header.chunk_size == vec["chunk_size"]


def test_vector_layout_is_documented_size() -> None:
    # 46-byte fixed header + uid + 24 nonce + 80 wrapped key + 16 (GCM tag) per chunk
    for vec in _load()["payloads"]:
        uid = len(vec["binding"]["task_uid"].encode())
        chunks = max(1, -(-vec["plaintext_len"] // vec["chunk_size"]))
        expected = 46 + uid + 24 + 80 + vec["plaintext_len"] + 16 * chunks
        assert vec["sealed_len"] == len(_sealed(vec)) == expected


@pytest.mark.parametrize("name", [case[0] for case in CASES[:4]])
def test_version_1_payloads_still_open(name: str) -> None:
    # Payloads sealed before version 2 (secretstream XChaCha20-Poly1305 bodies) keep opening.
    vec = next(v for v in _load()["payloads_v1"] if v["name"] == name)
    sealed = bytes.fromhex(vec["sealed"])
    assert sealed[0] == 1 and crypto.read_header(sealed).version == 1
    uid = len(vec["binding"]["task_uid"].encode())
    chunks = max(1, -(-vec["plaintext_len"] // vec["chunk_size"]))
    assert len(sealed) == 46 + uid + 24 + 80 + 24 + vec["plaintext_len"] + 17 * chunks
    recipient = OrgKey(bytes.fromhex(vec["recipient_sk"]))
    binding = Binding(**vec["binding"])
    plain = crypto.open(sealed, binding, recipient, bytes.fromhex(vec["sender_pk"]))
    assert plain == _plaintext(vec["plaintext_len"])
    bad = bytearray(sealed)
    bad[-1] ^= 1
    with pytest.raises(DecryptionError, match="failed authentication"):
        crypto.open(bytes(bad), binding, recipient, bytes.fromhex(vec["sender_pk"]))


def test_fingerprint_vector() -> None:
    data = _load()["fingerprint"]
    assert crypto.fingerprint(bytes.fromhex(data["public_key"])) == data["fingerprint"]


def test_keyfile_vectors_load() -> None:
    for item in _load()["keyfiles"]:
        key = OrgKey.from_bytes(item["exported"].encode(), passphrase=item["passphrase"])
        assert key.public_key.hex() == item["public_key"]


def _regenerate() -> None:
    key = OrgKey(SENDER_SK)
    data = {
        "about": "vantage6nb sealed payload known answers (version 2; payloads_v1: version 1, "
        "read only); see docs/security.md",
        "payloads": [_make(*case) for case in CASES],
        "payloads_v1": _load()["payloads_v1"],
        "fingerprint": {"public_key": key.public_key.hex(), "fingerprint": key.fingerprint},
        "keyfiles": [
            {
                "passphrase": None,
                "public_key": key.public_key.hex(),
                "exported": key.to_bytes().decode(),
            },
            {
                "passphrase": "correct horse battery staple",
                "public_key": key.public_key.hex(),
                "exported": key.to_bytes(
                    passphrase="correct horse battery staple", opslimit=2, memlimit=65536
                ).decode(),
            },
        ],
    }
    VECTORS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if "--regenerate" not in sys.argv:
        sys.exit("refusing to overwrite vectors without --regenerate")
    _regenerate()
