"""The envelope: plain and sealed codecs over text and files, the bindings they build, the key
lookups they make, and KeyMismatch's hint as data."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vantage6nb.common import crypto, envelope
from vantage6nb.common.envelope import PlainCodec, SealedCodec, input_binding, result_binding
from vantage6nb.common.errors import CryptoError, DecryptionError, KeyMismatch, MissingKey
from vantage6nb.common.keys import KeyRing, OrgKey, key_id

COMMON = Path(envelope.__file__).resolve().parent
CODEC_METHODS = [
    "decode_input",
    "decode_input_file",
    "decode_result",
    "decode_result_file",
    "encode_input",
    "encode_input_file",
    "encode_result",
    "encode_result_file",
]


class Lookup:
    """A fixed :class:`envelope.KeyLookup` that records how it was asked."""

    def __init__(self, keys: dict[int, OrgKey]) -> None:
        self.keys = keys
        self.calls: list[tuple[int, bool, bytes | None]] = []

    def peer_key(
        self,
        org_id: int,
        binding: Mapping[str, Any],
        *,
        fresh: bool = False,
        key_id: bytes | None = None,
    ) -> bytes:
        self.calls.append((org_id, fresh, key_id))
        if org_id not in self.keys:
            raise MissingKey(f"no key for org {org_id}")
        return self.keys[org_id].public_key


class Memory:
    def __init__(self) -> None:
        self.claims: list[tuple[str, int]] = []

    def claim(self, uid: str, run_id: int) -> None:
        if any(u == uid and r != run_id for u, r in self.claims):
            raise CryptoError(f"refusing a replayed task {uid!r}")
        self.claims.append((uid, run_id))


@pytest.fixture
def pair() -> tuple[SealedCodec, SealedCodec, Lookup, Lookup]:
    """A researcher's codec (org 1) and a node's codec (org 2), each with its own lookup."""
    a, b = OrgKey.generate(), OrgKey.generate()
    la, lb = Lookup({1: a, 2: b}), Lookup({1: a, 2: b})
    return SealedCodec(a, 1, la), SealedCodec(b, 2, lb, Memory()), la, lb


RUN = {"task_uid": "t1", "init_org_id": 1, "run_id": 5, "collaboration_id": 9}


def test_bindings_are_built_from_the_mapping() -> None:
    assert input_binding(RUN, sender=1, recipient=2) == crypto.Binding("input", "t1", 1, 2)
    assert result_binding(RUN, sender=2, recipient=1) == crypto.Binding("result", "t1", 2, 1, 5)
    for bad in ({}, {"task_uid": None}, {"task_uid": ""}):
        with pytest.raises(DecryptionError, match="no uid"):
            input_binding(bad, sender=1, recipient=2)


def test_input_and_result_round_trip_and_the_lookups_made(pair) -> None:
    researcher, node, la, lb = pair
    text = researcher.encode_input(2, {"method": "m", "kwargs": {"x": 1}}, RUN)
    assert la.calls == [(2, True, None)]  # sealing an input: a fresh key
    assert node.decode_input(text, RUN) == b'{"method": "m", "kwargs": {"x": 1}}'
    assert lb.calls == [(1, True, None)]  # opening an input: a fresh key too
    assert node.memory.claims == [("t1", 5)]
    result = node.encode_result(b'{"n": 3}', RUN)
    assert lb.calls[-1] == (1, False, None)  # sealing a result: the known key
    assert researcher.decode_result(2, result, {**RUN, "receiver_org_id": 1}) == {"n": 3}
    assert la.calls[-1] == (2, False, key_id(node.key.public_key))  # the key the header names


def test_result_files_round_trip_and_leave_no_plaintext(pair, tmp_path: Path) -> None:
    researcher, node, _, _ = pair
    src, sealed = tmp_path / "output.json", tmp_path / "sealed.bin"
    src.write_text(json.dumps({"rows": list(range(5000))}))
    node.encode_result_file(src, sealed, RUN)
    assert not crypto.is_sealed(sealed.read_bytes()) and b"4999" not in sealed.read_bytes()
    assert researcher.decode_result_file(2, sealed, RUN) == {"rows": list(range(5000))}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.json", "sealed.bin"]
    with pytest.raises(DecryptionError, match="differs in: run_id"):
        researcher.decode_result_file(2, sealed, {**RUN, "run_id": 6})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.json", "sealed.bin"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"run_id": 6}, "differs in: run_id"),
        ({"task_uid": "t2"}, "differs in: task_uid"),
        ({"receiver_org_id": 3}, "created by organization 3"),
        ({"task_uid": None}, "no uid"),
    ],
)
def test_a_result_is_opened_only_for_its_binding(pair, change: dict, match: str) -> None:
    researcher, node, _, _ = pair
    result = node.encode_result(b"[1]", RUN)
    with pytest.raises(DecryptionError, match=match):
        researcher.decode_result(2, result, {**RUN, **change})


def test_sealed_errors_name_the_problem(pair) -> None:
    researcher, node, _, _ = pair
    with pytest.raises(DecryptionError, match="no input text"):
        node.decode_input(None, RUN)  # type: ignore[arg-type]
    with pytest.raises(DecryptionError, match="not a sealed payload"):
        node.decode_input('{"method": "m"}', RUN)
    with pytest.raises(DecryptionError, match="not a sealed payload"):
        researcher.decode_result(2, '{"n": 3}', RUN)
    assert researcher.decode_result(2, None, RUN) is None
    not_json = node.encode_result(b"not json", RUN)
    with pytest.raises(DecryptionError, match="organization 2 is not JSON"):
        researcher.decode_result(2, not_json, RUN)
    with pytest.raises(MissingKey, match="org 3"):
        researcher.encode_input(3, {}, RUN)
    text = researcher.encode_input(2, {}, RUN)
    node.decode_input(text, RUN)
    with pytest.raises(CryptoError, match="replayed"):
        node.decode_input(text, {**RUN, "run_id": 6})


def test_plain_codec_does_everything_the_protocol_says(tmp_path: Path) -> None:
    codec = PlainCodec()
    assert codec.encrypted is False
    assert codec.decode_input(codec.encode_input(1, {"a": [1, 2.5]}, {}), {}) == b'{"a": [1, 2.5]}'
    assert codec.decode_result(1, codec.encode_result(b'{"n": 1}', {}), {}) == {"n": 1}
    assert codec.decode_result(1, None, {}) is None
    src, dst = tmp_path / "out.json", tmp_path / "copy.json"
    src.write_text('{"n": 2}')
    codec.encode_result_file(src, dst, {})
    assert codec.decode_result_file(1, dst, {}) == {"n": 2}
    dst.write_text("v6nb1:AQE=")
    with pytest.raises(DecryptionError, match="organization 4 is not JSON.*organization's key"):
        codec.decode_result_file(4, dst, {})
    with pytest.raises(DecryptionError, match="no input text"):
        codec.decode_input(None, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [PlainCodec, SealedCodec])
def test_every_codec_has_every_method_of_the_protocol(cls: type) -> None:
    protocol = sorted(n for n, v in vars(envelope.Codec).items() if callable(v) and n[0] != "_")
    assert protocol == CODEC_METHODS
    assert all(callable(getattr(cls, name, None)) for name in CODEC_METHODS)
    assert isinstance(cls.encrypted, bool)


def test_key_mismatch_carries_its_hint_as_data() -> None:
    ring = KeyRing()
    ring.add(1, OrgKey.generate().public_key, name="Leiden")
    with pytest.raises(KeyMismatch) as info:
        ring.add(1, OrgKey.generate().public_key)
    exc = info.value
    assert exc.problem.startswith("the public key of organization 'Leiden' (id 1) changed")
    assert exc.hint.startswith("Confirm the new fingerprint") and "KeyRing.repin" in exc.hint
    assert exc.msg == f"{exc.problem}. {exc.hint}"
    other = exc.with_hint("call client.trust_key('Leiden').")
    assert other.msg == f"{exc.problem}. call client.trust_key('Leiden')."
    assert other.errors == exc.errors and other.errors["organization_id"] == 1
    assert KeyMismatch("plain message").msg == "plain message"  # as rebuilt from the wire


def test_ring_knows_keys_by_their_id() -> None:
    key = OrgKey.generate()
    ring = KeyRing()
    ring.add(3, key.public_key)
    assert ring.has(3) and ring.has(3, key_id=key_id(key.public_key))
    assert not ring.has(3, key_id=bytes(8)) and not ring.has(4)
    bind = crypto.Binding("input", "t", 3, 4)
    header = crypto.read_header(crypto.seal(b"", bind, key, OrgKey.generate().public_key))
    assert header.sender_key_id == key_id(key.public_key)


def _imports(module: Path) -> set[str]:
    """Every module a file imports at any level, ``if TYPE_CHECKING`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.update(f"{base}.{a.name}" if base == "." else base for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_keys_do_not_import_crypto() -> None:
    assert not {m for m in _imports(COMMON / "keys.py") if "crypto" in m or "envelope" in m}
    assert not {m for m in _imports(COMMON / "textform.py") if m.startswith(".") and m != ".errors"}


def test_the_envelope_is_io_free() -> None:
    code = (
        "import sys, json, vantage6nb.common.envelope;"
        "print(json.dumps(sorted(m for m in ('requests', 'flask', 'docker', 'pandas', "
        "'ipywidgets', 'node_app', 'server_app', 'vantage6nb.client') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
