"""Client encryption: key files, ``setup_encryption`` against a real server (upload, mismatch,
missing keys), and the client codec talking to the node codec."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import requests

from node_app.payloads import PeerKeys
from node_app.payloads import SealedCodec as NodeCodec
from vantage6nb import Client
from vantage6nb.client._codec import PlainCodec, SealedCodec
from vantage6nb.common import crypto
from vantage6nb.common.keys import OrgKey
from vantage6nb.errors import DecryptionError, KeyMismatch, MissingKey, ValidationError

from .conftest import Admin

PASSWORD = "enc-Secret-1"


def test_create_private_key_file_is_0600_reused_and_forced(tmp_path: Path) -> None:
    path = tmp_path / "org.key"
    key = Client.create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Client.create_private_key(path).fingerprint == key.fingerprint
    forced = Client.create_private_key(path, force=True)
    assert forced.fingerprint != key.fingerprint and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["org.key"]


def test_passphrase_protected_key(tmp_path: Path) -> None:
    path = tmp_path / "org.key"
    key = Client.create_private_key(path, passphrase="s3cret")
    assert b"argon2id" in path.read_bytes()
    with pytest.raises(MissingKey, match="passphrase"):
        Client.create_private_key(path)
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        Client.create_private_key(path, passphrase="nope")
    assert Client.create_private_key(path, passphrase="s3cret").fingerprint == key.fingerprint


def test_setup_encryption_with_bytes_says_what_to_pass() -> None:
    with pytest.raises(ValidationError, match="OrgKey.from_bytes"):
        Client("http://127.0.0.1:9").setup_encryption(b"not a path")


@pytest.fixture(scope="module")
def enc(server) -> dict[str, Any]:
    """An encrypted collaboration of two fresh organizations; a researcher in the first."""
    admin = Admin(server.url)
    a = admin.post("/organization", {"name": "Enc A"})
    b = admin.post("/organization", {"name": "Enc B"})
    collab = admin.post(
        "/collaboration",
        {"name": "sealed", "organization_ids": [a["id"], b["id"]], "encrypted": True},
    )
    admin.post("/user", {"username": "enc-user", "password": PASSWORD, "organization_id": a["id"]})
    return {"url": server.url, "a": a, "b": b, "collab": collab, "admin": admin}


def _set_key(enc: dict[str, Any], org: str, key: OrgKey) -> None:
    admin = enc["admin"]
    body = {"public_key": key.public_key_b64}
    url = f"{admin.url}/organization/{enc[org]['id']}"
    r = requests.patch(url, json=body, headers=admin.headers, timeout=10)
    assert r.status_code == 200, r.text


def _login(enc: dict[str, Any]) -> Client:
    return Client(enc["url"], timeout=10).login("enc-user", PASSWORD)


def test_encrypted_collaboration_end_to_end_through_the_server(enc, tmp_path: Path) -> None:
    a_key = OrgKey.generate()
    b_key = OrgKey.generate()
    client = _login(enc)
    kwargs = {"collaboration": "sealed", "image": "v6nb/diagnostics", "method": "echo"}
    with pytest.raises(MissingKey, match="setup_encryption"):
        client.task.create(**kwargs)
    assert client.setup_encryption(a_key) == a_key.fingerprint  # uploads the unset key
    row = client.organizations().set_index("name").loc["Enc A"]
    assert row["key_fingerprint"] == a_key.fingerprint
    before = client.task.list(collaboration="sealed")
    with pytest.raises(MissingKey, match="Enc B"):  # B has no key yet: nothing is sent
        client.task.create(**kwargs, kwargs={"secret": "s-1"})
    assert len(client.task.list(collaboration="sealed")) == len(before)

    _set_key(enc, "b", b_key)
    task = client.task.create(**kwargs, kwargs={"secret": "s-1"})
    runs = {
        r["organization_id"]: r
        for r in client._transport.paginate("/run", {"task_id": task.id, "include": "input"})
    }
    uid = client._transport.request("GET", f"/task/{task.id}")["uid"]
    text = runs[enc["b"]["id"]]["input"]
    assert text.startswith("v6nb1:") and "s-1" not in text
    opened = crypto.open_text(
        text, crypto.Binding("input", uid, enc["a"]["id"], enc["b"]["id"]), b_key, a_key.public_key
    )
    assert b'"secret": "s-1"' in opened
    assert client.key_pins == {enc["a"]["id"]: a_key.fingerprint, enc["b"]["id"]: b_key.fingerprint}

    # a second researcher with another key for org A is refused, naming both fingerprints
    with pytest.raises(KeyMismatch) as info:
        _login(enc).setup_encryption(OrgKey.generate())
    assert a_key.fingerprint in str(info.value)

    # B's key changes on the server: refused until trusted explicitly
    new_b = OrgKey.generate()
    _set_key(enc, "b", new_b)
    with pytest.raises(KeyMismatch, match=r"'Enc B'.*changed.*trust_key\('Enc B'\)"):
        client.task.create(**kwargs)
    assert client.trust_key("Enc B") == new_b.fingerprint
    client.task.create(**kwargs)
    assert client.key_pins[enc["b"]["id"]] == new_b.fingerprint


def _codecs() -> tuple[SealedCodec, NodeCodec]:
    """A researcher's codec (org 1) and a node's (org 2), each with its own key lookup."""
    researcher, node = OrgKey.generate(), OrgKey.generate()
    public = {1: researcher.public_key_b64, 2: node.public_key_b64}
    rows = [{"id": i, "name": f"org{i}", "public_key": k} for i, k in public.items()]
    client_codec = SealedCodec(researcher, 1, lambda cid: rows)
    node_codec = NodeCodec(node, 2, PeerKeys(lambda i: {"public_key": public[i]}))
    return client_codec, node_codec


def test_client_and_node_codecs_interoperate(tmp_path: Path) -> None:
    client_codec, node_codec = _codecs()
    doc = {"method": "echo", "args": [], "kwargs": {"x": 1}}
    text = client_codec.encode_input(2, doc, {"collaboration_id": 9, "task_uid": "t9"})
    run = {"task_uid": "t9", "init_org_id": 1, "run_id": 5}
    assert (
        node_codec.decode_input(text, run) == b'{"method": "echo", "args": [], "kwargs": {"x": 1}}'
    )
    result = node_codec.encode_result(b'{"n": 3}', run)
    binding = {"collaboration_id": 9, "task_uid": "t9", "run_id": 5, "receiver_org_id": 1}
    assert client_codec.decode_result(2, result, binding) == {"n": 3}
    with pytest.raises(DecryptionError, match="differs in: run_id"):
        client_codec.decode_result(2, result, {**binding, "run_id": 6})
    with pytest.raises(DecryptionError, match="created by organization 3"):
        client_codec.decode_result(2, result, {**binding, "receiver_org_id": 3})
    with pytest.raises(DecryptionError, match="not a sealed payload"):
        client_codec.decode_result(2, '{"n": 3}', binding)


def test_large_results_interoperate_and_every_codec_has_the_file_methods(tmp_path: Path) -> None:
    client_codec, node_codec = _codecs()
    run = {"task_uid": "t9", "init_org_id": 1, "run_id": 5}
    output, sealed = tmp_path / "output.json", tmp_path / "sealed.bin"
    output.write_text('{"big": "' + "x" * 100_000 + '"}')
    node_codec.encode_result_file(output, sealed, run)
    binding = {"collaboration_id": 9, "task_uid": "t9", "run_id": 5, "receiver_org_id": 1}
    assert client_codec.decode_result_file(2, sealed, binding) == {"big": "x" * 100_000}
    for codec in (client_codec, PlainCodec()):
        assert all(callable(getattr(codec, name)) for name in ("encode_input", "decode_result"))
        assert callable(codec.decode_result_file) and callable(codec.encode_result_file)


def test_client_fetches_keys_once_per_task_and_names_trust_key_on_a_change() -> None:
    researcher, peer = OrgKey.generate(), OrgKey.generate()
    rows = [
        {"id": 1, "name": "Leiden", "public_key": researcher.public_key_b64},
        {"id": 2, "name": "Utrecht", "public_key": peer.public_key_b64},
    ]
    fetched: list[int] = []

    def fetch(cid: int) -> list[dict[str, Any]]:
        fetched.append(cid)
        return rows

    codec = SealedCodec(researcher, 1, fetch)
    doc = {"method": "m", "args": [], "kwargs": {}}
    for org_id in (1, 2):
        codec.encode_input(org_id, doc, {"collaboration_id": 9, "task_uid": "t1"})
    assert fetched == [9]  # one listing for the whole task
    codec.encode_input(2, doc, {"collaboration_id": 9, "task_uid": "t2"})
    assert fetched == [9, 9] and codec.ring.pins()[2] == peer.fingerprint
    rows[1] = {**rows[1], "public_key": OrgKey.generate().public_key_b64}
    with pytest.raises(KeyMismatch) as info:
        codec.encode_input(2, doc, {"collaboration_id": 9, "task_uid": "t3"})
    assert str(info.value).startswith("the public key of organization 'Utrecht' (id 2) changed")
    assert info.value.hint.endswith("call client.trust_key('Utrecht').")
    assert "KeyRing.repin" not in str(info.value) and info.value.errors["organization_id"] == 2
