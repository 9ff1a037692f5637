"""Task inputs as bytes: POST /api/task/input, tasks naming uploads, GET /api/run/<id>/input."""

from __future__ import annotations

import io
import os
import time
import warnings
from typing import Any

import pytest
from flask import Flask

from server_app import create_app
from vantage6nb.common import crypto
from vantage6nb.common.keys import OrgKey

OCTET = {"Content-Type": "application/octet-stream"}
ROOT_PASSWORD = "root-password-for-tests"  # as in conftest.py
Network = Any  # conftest.Network (tests/server is not a package)
MARKER = b"PLAINTEXT-MARKER-7f3a"


@pytest.fixture
def app(tmp_path: Any) -> Flask:  # overrides conftest's: a 1 MiB maximum per stored payload
    return create_app(
        {
            "data_dir": str(tmp_path / "data"),
            "root_password": ROOT_PASSWORD,
            "max_body_mb": 1,
            "blob_threshold_kb": 1,
            "max_result_mb": 1,
        }
    )


def _files(app: Flask) -> list[str]:
    return sorted(p.name for p in app.extensions["v6nb_blobs"].folder.iterdir())


def _upload(net: Network, who: str, collab: str, org: str, data: bytes) -> Any:
    query = f"collaboration_id={net.collabs[collab]}&organization_id={net.orgs[org]}"
    return net.client.post(
        f"/api/task/input?{query}", data=data, headers={**net.users[who], **OCTET}
    )


def _task(net: Network, who: str, collab: str, orgs: dict[str, str], **extra: Any) -> Any:
    body = {
        "collaboration_id": net.collabs[collab],
        "organizations": [{"id": net.orgs[o], "input_upload": u} for o, u in orgs.items()],
        "image": "img:1",
        "method": "m",
        **extra,
    }
    return net.client.post("/api/task", json=body, headers=net.users[who])


def test_uploaded_input_becomes_the_runs_and_only_its_node_reads_it(
    app: Flask, server_net: Network
) -> None:
    data = b'{"method": "m", "kwargs": {"x": "' + b"y" * 5000 + b'"}}'
    up = _upload(server_net, "alice", "ab", "b", data)
    assert up.status_code == 201, up.json
    assert up.json["size"] == len(data) and up.json["sealed"] is False
    assert len(_files(app)) == 2  # the file and its .meta, no row yet
    r = _task(server_net, "alice", "ab", {"b": up.json["input_upload"]})
    assert r.status_code == 201, r.json
    (run,) = r.json["runs"]
    assert run["input_ref"] == f"/api/run/{run['id']}/input" and run["input_size"] == len(data)
    assert [p for p in _files(app) if p.endswith(".meta")] == []
    node_b = server_net.nodes["b@ab"]["headers"]
    listed = server_net.client.get("/api/run?include=input", headers=node_b).json["data"]
    assert [(x["input"], x["input_ref"]) for x in listed] == [(None, run["input_ref"])]
    got = server_net.client.get(run["input_ref"], headers=node_b)
    assert got.status_code == 200 and got.data == data
    assert got.headers["X-V6NB-Sealed"] == "0"
    for who in (server_net.nodes["a@ab"]["headers"], server_net.users["alice"], server_net.root):
        assert server_net.client.get(run["input_ref"], headers=who).status_code in (403, 404)
    # an upload serves one task
    again = _task(server_net, "alice", "ab", {"b": up.json["input_upload"]})
    assert again.status_code == 400 and "input_upload" in str(again.json["errors"])


def test_an_upload_is_only_its_uploaders_and_for_its_organization(server_net: Network) -> None:
    up = _upload(server_net, "alice", "ab", "b", b'{"method": "m"}').json["input_upload"]
    assert _task(server_net, "bob", "ab", {"b": up}).status_code == 400  # not bob's upload
    assert _task(server_net, "alice", "ab", {"a": up}).status_code == 400  # for b, not a
    assert _upload(server_net, "carol", "ab", "b", b"{}").status_code == 403  # not a member
    assert _upload(server_net, "alice", "ab", "c", b"{}").status_code == 400  # c not in ab
    no_type = server_net.client.post(
        f"/api/task/input?collaboration_id={server_net.collabs['ab']}&organization_id="
        f"{server_net.orgs['b']}",
        json={"x": 1},
        headers=server_net.users["alice"],
    )
    assert no_type.status_code == 400 and "octet-stream" in no_type.json["msg"]
    assert _task(server_net, "alice", "ab", {"b": up}).status_code == 201


def test_too_large_upload_is_refused_while_reading(app: Flask, server_net: Network) -> None:
    big = _upload(server_net, "alice", "ab", "b", b"x" * (1024 * 1024 + 1))
    assert big.status_code == 413 and "max_result_mb" in big.json["msg"]
    assert _files(app) == []  # nothing left behind


def test_an_upload_no_task_uses_is_swept(app: Flask, server_net: Network) -> None:
    used = _upload(server_net, "alice", "ab", "b", b'{"method": "m"}').json["input_upload"]
    _upload(server_net, "alice", "ab", "b", b'{"method": "orphan"}')
    assert _task(server_net, "alice", "ab", {"b": used}).status_code == 201
    store = app.extensions["v6nb_blobs"]
    old = time.time() - 7200
    for p in store.folder.iterdir():
        os.utime(p, (old, old))
    with app.extensions["v6nb_db"].new_session() as s:
        assert store.sweep(s) == 2  # the orphan and its .meta; the used one stays
    (kept,) = _files(app)
    assert kept == f"input-{used}.blob"


def test_encrypted_collaboration_takes_only_sealed_inputs_bound_to_the_task(
    app: Flask, server_net: Network
) -> None:
    c, root = server_net.client, server_net.root
    a_id, b_id = server_net.orgs["a"], server_net.orgs["b"]
    collab = c.post(
        "/api/collaboration",
        json={"name": "enc", "organization_ids": [a_id, b_id], "encrypted": True},
        headers=root,
    ).json
    server_net.collabs["enc"] = collab["id"]
    a, b = OrgKey.generate(), OrgKey.generate()
    plain = _upload(server_net, "alice", "enc", "b", b'{"method": "m"}')
    assert plain.status_code == 400 and "sealed" in plain.json["msg"]
    forged = crypto.seal(b"{}", crypto.Binding("input", "t1", b_id, b_id), a, b.public_key)
    assert _upload(server_net, "alice", "enc", "b", forged).status_code == 400  # not from a
    bind = crypto.Binding("input", "uid-1", a_id, b_id)
    sealed = io.BytesIO()
    data = b'{"method": "m", "kwargs": {"s": "' + MARKER + b"z" * 5000 + b'"}}'
    crypto.seal_stream(io.BytesIO(data), sealed, bind, a, b.public_key)
    up = _upload(server_net, "alice", "enc", "b", sealed.getvalue())
    assert up.status_code == 201 and up.json["task_uid"] == "uid-1", up.json
    wrong_uid = _task(server_net, "alice", "enc", {"b": up.json["input_upload"]}, uid="uid-2")
    assert wrong_uid.status_code == 400 and "uid-1" in str(wrong_uid.json["errors"])
    r = _task(server_net, "alice", "enc", {"b": up.json["input_upload"]}, uid="uid-1")
    assert r.status_code == 201, r.json
    for name in _files(app):  # what the server stores is ciphertext
        assert MARKER not in (app.extensions["v6nb_blobs"].folder / name).read_bytes()
    node = c.post(
        "/api/node", json={"organization_id": b_id, "collaboration_id": collab["id"]}, headers=root
    ).json["api_key"]
    token = c.post("/api/token/node", json={"api_key": node}).json["access_token"]
    got = c.get(r.json["runs"][0]["input_ref"], headers={"Authorization": f"Bearer {token}"})
    assert got.headers["X-V6NB-Sealed"] == "1"
    assert crypto.open(got.data, bind, b, a.public_key) == data


def test_inline_input_is_served_as_bytes_too(server_net: Network) -> None:
    task = server_net.task("alice", "ab", ["b"])
    node_b = server_net.nodes["b@ab"]["headers"]
    got = server_net.client.get(f"/api/run/{task['runs'][0]['id']}/input", headers=node_b)
    assert got.status_code == 200 and got.data == b'{"method": "m"}'


def test_deleting_the_task_removes_its_input_file(app: Flask, server_net: Network) -> None:
    up = _upload(server_net, "alice", "ab", "b", b'{"method": "m"}').json["input_upload"]
    task = _task(server_net, "alice", "ab", {"b": up}).json
    assert _files(app) == [f"input-{up}.blob"]
    r = server_net.client.delete(f"/api/task/{task['id']}", headers=server_net.users["alice"])
    assert r.status_code == 200, r.json
    assert _files(app) == []


def test_the_client_uploads_an_input_over_its_threshold(tmp_path: Any) -> None:
    """Through the researcher's client (in-process transport): over ``binary_input_kb`` the task
    names an upload and the run an ``input_ref``; under it the input stays inline."""
    from vantage6nb import Client
    from vantage6nb.demo._setup import AdminSession
    from vantage6nb.testing import FlaskTransport

    url, password = "http://testserver", "research-Secret-1"
    transport = FlaskTransport(
        create_app({"data_dir": str(tmp_path / "data"), "root_password": ROOT_PASSWORD})
    )
    admin = AdminSession(url, "root", ROOT_PASSWORD, transport=transport)
    org = admin.create_organization("Leiden")
    collab = admin.create_collaboration("study", [org["id"]], encrypted=False)
    admin.create_user("researcher", password, org["id"])
    client = Client(url, transport=transport, state_dir=False).login("researcher", password)
    client.task.binary_input_kb = 1
    kwargs = {"s": "x" * 2000}
    with warnings.catch_warnings():  # no node is online: the client may warn that the run waits
        warnings.simplefilter("ignore")
        big = client.task.create(
            collaboration=collab["id"], image="img:1", method="m", kwargs=kwargs
        )
        small = client.task.create(collaboration=collab["id"], image="img:1", method="m", args=[1])
    (brief,) = client._transport.request("GET", f"/task/{big.id}")["runs"]
    run = client._transport.request("GET", f"/run/{brief['id']}")
    assert run["input"] is None and run["input_ref"] == f"/api/run/{run['id']}/input"
    (brief,) = client._transport.request("GET", f"/task/{small.id}")["runs"]
    inline = client._transport.request("GET", f"/run/{brief['id']}")
    assert inline["input"] == '{"method": "m", "args": [1], "kwargs": {}}'
    assert (inline["input_ref"], inline["input_size"]) == (None, None)
