"""Large task inputs through real server and node processes: uploaded and fetched as sealed bytes.

On an encrypted demo network: 1 MB and 20 MB inputs reach the algorithm byte for byte; the server
stores them as files of ciphertext (no database text, no plaintext marker), and only the node of the
run's organization may fetch them; an upload over ``max_result_mb`` is refused with 413 while it is
read; and a central algorithm's subtask with a large input goes through the node's proxy the same
way. The unused upload sweep is in tests/server/test_input_blobs.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml

from vantage6nb import demo
from vantage6nb.common import crypto
from vantage6nb.common.contract import make_input
from vantage6nb.common.envelope import SealedCodec
from vantage6nb.common.errors import DecryptionError
from vantage6nb.common.keys import OrgKey

pytestmark = pytest.mark.integration

IMAGE = "test/inputs"
MARKER = "plaintext-marker-5e1d"
TIMEOUT = 180


@pytest.fixture(scope="module")
def enc() -> Iterator[demo.DemoNetwork]:
    with demo.start(
        nodes=2, encrypted=True, algorithms={IMAGE: "tests.integration.input_algorithm"}
    ) as network:
        yield network


def _blob_of(megabytes: float) -> str:
    line = MARKER + "-" + 'é"\\x' * 8  # escapes and non-ASCII survive the trip
    return (line * (int(megabytes * 2**20) // len(line) + 1))[: int(megabytes * 2**20)]


def _input_rows(net: demo.DemoNetwork, task_id: int) -> list[dict]:
    engine = sa.create_engine(net.server_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT r.id, r.organization_id, r.input, b.name, b.size, b.sealed "
                    "FROM run r LEFT JOIN payload_blob b ON b.run_id = r.id AND b.kind = 'input' "
                    "WHERE r.task_id = :t ORDER BY r.id"
                ),
                {"t": task_id},
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def _blob_dir(net: demo.DemoNetwork) -> Path:
    return net.workdir / "server" / "data" / "blobs"


def _node_headers(net: demo.DemoNetwork, name: str) -> dict[str, str]:
    api_key = yaml.safe_load(net._nodes[name].config.read_text())["api_key"]
    token = requests.post(f"{net.url}/api/token/node", json={"api_key": api_key}, timeout=30)
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.mark.parametrize("megabytes", [1, 20])
def test_large_input_reaches_the_algorithm_byte_for_byte(enc, megabytes: int) -> None:
    client = enc.client()
    orgs = client.organizations()["id"].tolist()
    blob = _blob_of(megabytes)
    task = client.task.create(
        organizations=orgs, image=IMAGE, method="digest", kwargs={"blob": blob}
    )
    sent = json.dumps(make_input("digest", [], {"blob": blob}), allow_nan=True).encode("utf-8")
    want = {
        "input_size": len(sent),
        "input_sha256": hashlib.sha256(sent).hexdigest(),
        "blob_sha256": hashlib.sha256(blob.encode("utf-8")).hexdigest(),
    }
    assert task.results(timeout=TIMEOUT) == [want] * len(orgs)

    rows = _input_rows(enc, task.id)
    assert len(rows) == len(orgs)
    for row in rows:  # a file of ciphertext per run, nothing in the run's text column
        assert row["input"] is None and row["sealed"] and row["size"] > len(sent)
        data = (_blob_dir(enc) / row["name"]).read_bytes()
        assert MARKER.encode() not in data
        b = crypto.read_header(data[:2048]).binding
        assert (b.kind, b.task_uid, b.recipient_org_id) == (
            "input",
            task["uid"],
            row["organization_id"],
        )

    # only the node of the run's organization fetches it
    run = rows[0]
    names = {n.organization_id: name for name, n in enc._nodes.items()}
    own = _node_headers(enc, names[run["organization_id"]])
    other = _node_headers(enc, next(v for k, v in names.items() if k != run["organization_id"]))
    ref = f"{enc.url}/api/run/{run['id']}/input"
    assert requests.get(ref, headers=own, timeout=60).status_code == 200
    assert requests.get(ref, headers=other, timeout=60).status_code in (403, 404)
    researcher = {"Authorization": f"Bearer {client._transport.access_token}"}
    assert requests.get(ref, headers=researcher, timeout=60).status_code in (403, 404)


def test_small_input_keeps_the_text_form(enc) -> None:
    client = enc.client()
    org = client.whoami["organization_id"]
    task = client.task.create(
        organizations=[org], image=IMAGE, method="digest", kwargs={"blob": "x"}
    )
    assert task.results(timeout=TIMEOUT)[0]["blob_sha256"] == hashlib.sha256(b"x").hexdigest()
    (row,) = _input_rows(enc, task.id)
    assert row["name"] is None and crypto.is_sealed(row["input"])


def test_central_algorithm_sends_a_large_subtask_input_through_the_proxy(enc) -> None:
    client = enc.client()
    orgs = client.organizations()["id"].tolist()
    blob = _blob_of(2)
    task = client.task.create(
        organizations=[orgs[0]],
        image=IMAGE,
        method="central",
        kwargs={"blob": blob, "organizations": orgs},
    )
    parts = task.result(timeout=TIMEOUT)
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    assert [p["blob_sha256"] for p in parts] == [digest] * len(orgs)
    subtask = client._transport.request("GET", "/task", params={"parent_id": task.id})["data"][0]
    rows = _input_rows(enc, subtask["id"])
    assert len(rows) == len(orgs) and all(r["input"] is None and r["sealed"] for r in rows)
    for row in rows:
        assert MARKER.encode() not in (_blob_dir(enc) / row["name"]).read_bytes()


def test_oversize_upload_is_refused_with_413_while_reading(enc) -> None:
    cfg = enc.workdir / "server" / "server.yaml"
    values = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**values, "max_result_mb": 2}))
    enc.restart_server()
    try:
        client = enc.client()
        cid = int(client.collaborations()["id"].tolist()[0])
        org = client.whoami["organization_id"]
        headers = {
            "Authorization": f"Bearer {client._transport.access_token}",
            "Content-Type": "application/octet-stream",
        }
        before = sorted(p.name for p in _blob_dir(enc).iterdir())

        # a sealed input of 3 MiB (over the 2 MiB limit): its header passes, its size does not
        key = OrgKey.generate()
        sealed = io.BytesIO()
        bind = crypto.Binding("input", "oversize", org, org)
        crypto.seal_stream(io.BytesIO(b"0" * 3 * 2**20), sealed, bind, key, key.public_key)
        data = sealed.getvalue()

        def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it up front
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        r = requests.post(
            f"{enc.url}/api/task/input",
            params={"collaboration_id": cid, "organization_id": org},
            data=body(),
            headers=headers,
            timeout=120,
        )
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        assert "max_result_mb" in r.json()["msg"]
        assert sorted(p.name for p in _blob_dir(enc).iterdir()) == before
    finally:
        cfg.write_text(yaml.safe_dump(values))
        enc.restart_server()


class _Keys:
    """A fixed key lookup for the codec test below."""

    def __init__(self, keys: dict[int, OrgKey]) -> None:
        self.keys = keys

    def peer_key(self, org_id: int, binding: object, *, fresh: bool = False, key_id=None) -> bytes:
        return self.keys[org_id].public_key


def test_sealed_input_file_opens_byte_for_byte_and_a_modified_byte_is_refused(tmp_path) -> None:
    a, b = OrgKey.generate(), OrgKey.generate()
    keys = _Keys({1: a, 2: b})
    data = json.dumps({"method": "m", "kwargs": {"s": _blob_of(0.5)}}).encode("utf-8")
    sealed, opened = tmp_path / "sealed", tmp_path / "input.json"
    SealedCodec(a, 1, keys).encode_input_file(2, data, sealed, {"task_uid": "t1"})
    assert crypto.read_header(sealed.read_bytes()[:2048]).binding == crypto.Binding(
        "input", "t1", 1, 2
    )
    node = {"task_uid": "t1", "init_org_id": 1, "run_id": 5}
    SealedCodec(b, 2, keys).decode_input_file(sealed, opened, node)
    assert opened.read_bytes() == data
    raw = bytearray(sealed.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    sealed.write_bytes(bytes(raw))
    with pytest.raises(DecryptionError, match="failed authentication"):
        SealedCodec(b, 2, keys).decode_input_file(sealed, opened, node)
    assert not opened.exists()  # no partial plaintext left behind
    with pytest.raises(DecryptionError, match="bound to"):  # another task's input
        SealedCodec(b, 2, keys).decode_input_file(sealed, opened, {**node, "task_uid": "t2"})
