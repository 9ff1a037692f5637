"""Large results through real server and node processes: the binary path, streamed and stored as files.

Encrypted: the server's database and blob folder hold only ciphertext, a tampered byte reaches the
researcher as a DecryptionError, a central algorithm reads large subtask results through the proxy,
an oversize result is refused with a 413 (and the run fails saying why), and deleting the task
removes the file. Unencrypted (on the session's shared demo network, only read): the same path
carries the JSON bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml

from tests.support import wait_for
from vantage6nb import demo
from vantage6nb.common import crypto
from vantage6nb.errors import DecryptionError

pytestmark = pytest.mark.integration

DIAG = "v6nb/diagnostics"
TAG = "penguin-blob-7f3a9c"
MB = 3  # above the default 1 MiB thresholds of node and server


def _blob_dir(net) -> Path:
    return net.workdir / "server" / "data" / "blobs"


def _blobs(net) -> list[Path]:
    return sorted(p for p in _blob_dir(net).iterdir() if p.suffix == ".blob")


def _stored(net, task_id: int) -> list[dict]:
    engine = sa.create_engine(net.server_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT r.id, r.result, b.name, b.size, b.sealed FROM run r "
                    "LEFT JOIN payload_blob b ON b.run_id = r.id WHERE r.task_id = :t ORDER BY r.id"
                ),
                {"t": task_id},
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def _expected(megabytes: float) -> dict:
    from vantage6nb.algorithms.diagnostics import blob

    return blob(megabytes, tag=TAG)


@pytest.fixture(scope="module")
def enc():
    with demo.start(nodes=2, encrypted=True) as network:
        yield network


def test_encrypted_large_result_round_trips_and_the_server_holds_only_ciphertext(enc):
    client = enc.client()
    org = client.whoami["organization_id"]
    task = client.task.create(
        organizations=[org], image=DIAG, method="blob", kwargs={"megabytes": MB, "tag": TAG}
    )
    assert task.result(timeout=120) == _expected(MB)

    (row,) = _stored(enc, task.id)
    assert row["result"] is None and row["sealed"] and row["size"] > MB * 10**6
    path = _blob_dir(enc) / row["name"]
    data = path.read_bytes()
    assert TAG.encode() not in data and b"00000001" not in data
    header = crypto.read_header(data[:2048])  # the binary sealed form, not base64 text
    assert header.binding.run_id == row["id"] and header.binding.kind == "result"
    run = client._transport.request("GET", f"/run/{row['id']}")
    assert run["result"] is None and run["result_ref"] == f"/api/run/{row['id']}/result"
    assert run["result_size"] == len(data)

    # a modified byte in the stored file: the researcher gets a DecryptionError that says so
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(DecryptionError, match="failed authentication"):
        task.results()

    # deleting the task deletes the file
    client._transport.request("DELETE", f"/task/{task.id}")
    assert not path.exists()


def test_central_algorithm_reads_large_subtask_results_through_the_proxy(enc):
    client = enc.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        organizations=[orgs[0]],
        image=DIAG,
        method="blob_central",
        kwargs={"megabytes": 1.5, "organizations": orgs},
    )
    out = task.result(timeout=180)
    lines = _expected(1.5)["lines"]
    assert out == {"lines": [lines] * len(orgs), "intact": [True] * len(orgs)}
    subtask = client._transport.request("GET", "/task", params={"parent_id": task.id})["data"][0]
    assert all(r["name"] and r["sealed"] for r in _stored(enc, subtask["id"]))


def test_server_restart_before_the_upload_loses_nothing(enc):
    client = enc.client()
    org = client.whoami["organization_id"]
    node = next(n for n in enc._nodes.values() if n.organization_id == org)
    outbox = node.config.parent / "data" / "outbox"
    task = client.task.create(
        organizations=[org],
        image=DIAG,
        method="blob",
        kwargs={"megabytes": MB, "tag": TAG, "seconds": 2},
    )
    rid = task.runs[0]["id"]
    wait_for(
        lambda: client._transport.request("GET", f"/run/{rid}")["status"] == "active",
        120,
        "the run to be active",
    )
    enc._server.stop()
    staged = outbox / f"run-{rid}.result"  # sealed, fsynced, waiting for the server
    wait_for(staged.exists, 120, "the node to stage the result in its outbox")
    assert TAG.encode() not in staged.read_bytes()
    enc.restart_server()
    assert task.result(timeout=120) == _expected(MB)
    wait_for(lambda: not staged.exists(), 120, "the outbox to be emptied")


def test_oversize_result_is_refused_with_413_and_the_run_fails_saying_why(enc):
    cfg = enc.workdir / "server" / "server.yaml"
    values = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**values, "max_result_mb": 2}))
    enc.restart_server()
    try:
        name = enc.node_names[0]
        api_key = yaml.safe_load(enc._nodes[name].config.read_text())["api_key"]
        token = requests.post(f"{enc.url}/api/token/node", json={"api_key": api_key}, timeout=30)
        node = {"Authorization": f"Bearer {token.json()['access_token']}"}
        client = enc.client()
        org = client.whoami["organization_id"]
        task = client.task.create(
            organizations=[org], image=DIAG, method="blob", kwargs={"megabytes": MB}
        )
        task.wait(timeout=120, raise_on_failure=False)
        (run,) = task.runs
        assert run["status"] == "failed"
        assert "too large" in run["reason"] and "max_result_mb" in run["reason"]
        r = requests.put(
            f"{enc.url}/api/run/{run['id']}/result",
            data=b"x" * (3 * 2**20),
            headers={**node, "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        assert not [p for p in _blob_dir(enc).iterdir() if p.suffix == ".partial"]
    finally:
        cfg.write_text(yaml.safe_dump(values))
        enc.restart_server()


def test_unencrypted_large_result_travels_as_json_bytes(shared_demo_net):
    client = shared_demo_net.client()
    org = client.whoami["organization_id"]
    before = set(_blobs(shared_demo_net))
    task = client.task.create(
        organizations=[org], image=DIAG, method="blob", kwargs={"megabytes": MB, "tag": TAG}
    )
    assert task.result(timeout=120) == _expected(MB)
    (row,) = _stored(shared_demo_net, task.id)
    assert row["result"] is None and not row["sealed"]
    (new,) = set(_blobs(shared_demo_net)) - before
    assert new.name == row["name"] and new.read_bytes().startswith(b'{"lines": ')
    small = client.task.create(organizations=[org], image=DIAG, method="echo", args=[1])
    assert small.result(timeout=60) == {"args": [1], "kwargs": {}}
    assert _stored(shared_demo_net, small.id)[0]["result"] is not None  # small results stay inline
