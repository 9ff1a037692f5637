"""Node keys: `v6nb node create-private-key` files (0600, reuse, --force, passphrase, upload), the
node codec against tampering and moved payloads, peer key pinning and the replay memory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from node_app import payloads
from node_app.cli import main
from node_app.payloads import PeerKeys, SealedCodec, TaskMemory, load_private_key
from vantage6nb.common import crypto
from vantage6nb.common.errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyMismatch,
    MissingKey,
)
from vantage6nb.common.keys import OrgKey, key_id

from .harness import ROOT_PASSWORD, Api, server_process


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_private_key_writes_0600_and_reuses_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "keys" / "org.key"
    assert main(["create-private-key", "--out", str(path)]) == 0
    first = capsys.readouterr().out
    assert _mode(path) == 0o600
    key = OrgKey.from_bytes(path.read_bytes())
    assert key.fingerprint in first and "Wrote a new private key" in first
    content = path.read_bytes()
    assert main(["create-private-key", "--out", str(path)]) == 0
    again = capsys.readouterr().out
    assert "Reusing the existing key" in again and key.fingerprint in again
    assert path.read_bytes() == content


def test_force_replaces_the_key_and_keeps_0600(tmp_path: Path, capsys) -> None:
    path = tmp_path / "org.key"
    assert main(["create-private-key", "--out", str(path)]) == 0
    old = OrgKey.from_bytes(path.read_bytes())
    path.chmod(0o600)
    assert main(["create-private-key", "--out", str(path), "--force"]) == 0
    new = OrgKey.from_bytes(path.read_bytes())
    assert new.fingerprint != old.fingerprint
    assert _mode(path) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "org.key"]  # no temporary left


def test_passphrase_protects_the_key(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "org.key"
    monkeypatch.setenv("ORG_PASS", "correct horse")
    assert main(["create-private-key", "--out", str(path), "--passphrase-env", "ORG_PASS"]) == 0
    assert "passphrase-protected" in capsys.readouterr().out
    assert b"argon2id" in path.read_bytes() and _mode(path) == 0o600
    with pytest.raises(MissingKey):
        OrgKey.from_bytes(path.read_bytes())
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        OrgKey.from_bytes(path.read_bytes(), passphrase="wrong")
    key = load_private_key(path, "ORG_PASS")
    # reusing a protected key needs the passphrase too
    assert main(["create-private-key", "--out", str(path), "--passphrase-env", "ORG_PASS"]) == 0
    assert key.fingerprint in capsys.readouterr().out
    with pytest.raises(MissingKey, match="private_key_passphrase_env"):
        load_private_key(path, "")
    monkeypatch.delenv("ORG_PASS")
    with pytest.raises(ConfigurationError, match="ORG_PASS"):
        load_private_key(path, "ORG_PASS")
    assert main(["create-private-key", "--out", str(path), "--passphrase-env", "ORG_PASS"]) == 2


def test_create_private_key_needs_a_destination(capsys) -> None:
    assert main(["create-private-key"]) == 2
    assert "--config" in capsys.readouterr().err


def test_missing_key_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="create-private-key"):
        load_private_key(tmp_path / "none.key")


def test_create_private_key_with_config_uploads_the_public_key(tmp_path: Path, capsys) -> None:
    with server_process(tmp_path) as server:
        admin = Api(server.url, "root", ROOT_PASSWORD)
        org = admin.call("POST", "/organization", json={"name": "Keyholder"})
        collab = admin.call(
            "POST",
            "/collaboration",
            json={"name": "enc", "organization_ids": [org["id"]], "encrypted": True},
        )
        node = admin.call(
            "POST", "/node", json={"organization_id": org["id"], "collaboration_id": collab["id"]}
        )
        config = tmp_path / "node" / "node.yaml"
        config.parent.mkdir()
        config.write_text(yaml.safe_dump({"server_url": server.url, "api_key": node["api_key"]}))
        assert main(["create-private-key", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        key = OrgKey.from_bytes((config.parent / "private.key").read_bytes())
        assert "Uploaded the public key" in out
        assert admin.call("GET", f"/organization/{org['id']}")["key_fingerprint"] == key.fingerprint
        assert main(["create-private-key", "--config", str(config)]) == 0
        assert "already holds this public key" in capsys.readouterr().out
        # a new key never silently replaces the registered one
        assert main(["create-private-key", "--config", str(config), "--force"]) == 0
        err = capsys.readouterr().err
        assert "--replace-key" in err and key.fingerprint in err
        assert admin.call("GET", f"/organization/{org['id']}")["key_fingerprint"] == key.fingerprint


# -- the node codec --------------------------------------------------------------------------------
def _pair(tmp_path: Path):
    researcher, node = OrgKey.generate(), OrgKey.generate()
    keys = {1: researcher, 2: node}

    def fetch(org_id: int) -> dict:
        return {"name": f"org{org_id}", "public_key": keys[org_id].public_key_b64}

    peers = PeerKeys(fetch, tmp_path / "peer_keys.json")
    codec = SealedCodec(node, 2, peers, TaskMemory(tmp_path / "task_uids.txt"))
    return researcher, node, keys, codec


def test_node_codec_opens_inputs_and_seals_results_for_the_init_org(tmp_path: Path) -> None:
    researcher, node, _, codec = _pair(tmp_path)
    sealed = crypto.seal_text(
        b'{"method": "m"}', crypto.Binding("input", "u1", 1, 2), researcher, node.public_key
    )
    binding = {"task_uid": "u1", "init_org_id": 1, "run_id": 7}
    assert codec.decode_input(sealed, binding) == b'{"method": "m"}'
    result = codec.encode_result(b"[1, 2]", binding)
    expect = crypto.Binding("result", "u1", 2, 1, 7)
    assert crypto.open_text(result, expect, researcher, node.public_key) == b"[1, 2]"
    with pytest.raises(DecryptionError, match="differs in: run_id"):
        crypto.open_text(
            result, crypto.Binding("result", "u1", 2, 1, 8), researcher, node.public_key
        )


@pytest.mark.parametrize(
    ("binding", "match"),
    [
        ({"task_uid": "other", "init_org_id": 1, "run_id": 7}, "differs in: task_uid"),
        ({"task_uid": "u1", "init_org_id": 2, "run_id": 7}, "differs in: sender_org_id"),
        (
            {"task_uid": "u1", "init_org_id": 1, "run_id": 7, "tamper": True},
            "failed authentication",
        ),
        ({"task_uid": "u1", "init_org_id": 1, "run_id": 7, "plain": True}, "not a sealed payload"),
    ],
)
def test_node_codec_refuses_bad_inputs(tmp_path: Path, binding: dict, match: str) -> None:
    researcher, node, _, codec = _pair(tmp_path)
    sealed = crypto.seal_text(
        b"{}", crypto.Binding("input", "u1", 1, 2), researcher, node.public_key
    )
    if binding.pop("tamper", False):
        sealed = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    if binding.pop("plain", False):
        sealed = "{}"
    with pytest.raises(DecryptionError, match=match):
        codec.decode_input(sealed, binding)


def test_a_forged_input_made_with_public_keys_only_is_refused(tmp_path: Path) -> None:
    researcher, node, _, codec = _pair(tmp_path)
    # the server knows only public keys: it makes its own key and claims to be org 1
    forger = OrgKey.generate()
    forged = crypto.seal_text(b"{}", crypto.Binding("input", "u1", 1, 2), forger, node.public_key)
    with pytest.raises(DecryptionError, match="not the known key"):
        codec.decode_input(forged, {"task_uid": "u1", "init_org_id": 1, "run_id": 7})


def test_replayed_task_uid_is_refused_also_after_a_restart(tmp_path: Path) -> None:
    researcher, node, _, codec = _pair(tmp_path)
    sealed = crypto.seal_text(
        b"{}", crypto.Binding("input", "u1", 1, 2), researcher, node.public_key
    )
    codec.decode_input(sealed, {"task_uid": "u1", "init_org_id": 1, "run_id": 7})
    codec.decode_input(sealed, {"task_uid": "u1", "init_org_id": 1, "run_id": 7})  # same run again
    later = TaskMemory(tmp_path / "task_uids.txt")  # a restarted node
    codec.memory = later
    with pytest.raises(CryptoError, match="replayed task.*'u1'.*run 7"):
        codec.decode_input(sealed, {"task_uid": "u1", "init_org_id": 1, "run_id": 8})


def test_peer_pins_survive_a_restart_and_a_changed_key_names_the_organization(
    tmp_path: Path,
) -> None:
    researcher, node, keys, codec = _pair(tmp_path)
    sealed = crypto.seal_text(
        b"{}", crypto.Binding("input", "u1", 1, 2), researcher, node.public_key
    )
    codec.decode_input(sealed, {"task_uid": "u1", "init_org_id": 1, "run_id": 7})
    pins = json.loads((tmp_path / "peer_keys.json").read_text())
    assert pins == {"1": researcher.fingerprint}
    keys[1] = OrgKey.generate()  # the key on the server changes
    restarted = PeerKeys(
        lambda i: {"name": "Leiden", "public_key": keys[i].public_key_b64},
        tmp_path / "peer_keys.json",
    )
    with pytest.raises(KeyMismatch, match=r"organization 'Leiden' \(id 1\) changed") as info:
        restarted.peer_key(1)
    assert researcher.fingerprint in str(info.value) and "peer_keys.json" in str(info.value)
    with pytest.raises(MissingKey, match="has no public key"):
        PeerKeys(lambda i: {"name": "Nokey", "public_key": None}).peer_key(3)


def test_peer_keys_ask_the_server_when_fresh_or_for_another_key_id(tmp_path: Path) -> None:
    key = OrgKey.generate()
    asked: list[int] = []

    def fetch(org_id: int) -> dict:
        asked.append(org_id)
        return {"name": "Leiden", "public_key": key.public_key_b64}

    peers = PeerKeys(fetch)
    assert peers.peer_key(1, {}) == key.public_key and asked == [1]  # unknown: asked
    assert peers.peer_key(1, {}, key_id=key_id(key.public_key)) == key.public_key
    assert asked == [1]  # known, and the key the header names: not asked
    peers.peer_key(1, {}, key_id=bytes(8))
    peers.peer_key(1, {}, fresh=True)
    assert asked == [1, 1, 1]


@pytest.mark.parametrize("name", ["PlainJsonCodec", "SealedCodec"])
def test_every_node_codec_has_the_file_methods(name: str, tmp_path: Path) -> None:
    cls = getattr(payloads, name)
    methods = ["decode_input", "encode_result", "encode_result_file", "encode_input"]
    methods += ["decode_result", "decode_result_file"]
    assert all(callable(getattr(cls, m, None)) for m in methods)
    if name == "PlainJsonCodec":
        src, dst = tmp_path / "output.json", tmp_path / "result.bin"
        src.write_text('{"n": 1}')
        cls().encode_result_file(src, dst, {})
        assert cls().decode_result_file(2, dst, {}) == {"n": 1}
        with pytest.raises(DecryptionError, match="without `encryption`"):
            cls().decode_result(2, "v6nb1:AQE=", {})
