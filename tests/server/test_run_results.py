"""The binary result path: PUT/GET /api/run/<id>/result, files above the threshold, markers, limits."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from server_app import create_app
from vantage6nb.common import crypto
from vantage6nb.common.keys import OrgKey

OCTET = {"Content-Type": "application/octet-stream"}
ROOT_PASSWORD = "root-password-for-tests"  # as in conftest.py
Network = Any  # conftest.Network (tests/server is not a package)
THRESHOLD = 1024  # blob_threshold_kb = 1


@pytest.fixture
def app(tmp_path: Any) -> Flask:  # overrides conftest's: a 1 KiB threshold and a 1 MiB maximum
    return create_app(
        {
            "data_dir": str(tmp_path / "data"),
            "root_password": ROOT_PASSWORD,
            "max_body_mb": 1,
            "blob_threshold_kb": 1,
            "max_result_mb": 1,
        }
    )


def _blob_dir(app: Flask) -> Path:
    return app.extensions["v6nb_blobs"].folder


def _files(app: Flask) -> list[str]:
    return sorted(p.name for p in _blob_dir(app).iterdir())


def _run(server_net: Network) -> tuple[dict[str, Any], dict[str, str]]:
    task = server_net.task("alice", "ab", ["a"])
    return task["runs"][0], server_net.nodes["a@ab"]["headers"]


def _put(server_net: Network, run_id: int, data: bytes, headers: dict[str, str]) -> Any:
    return server_net.client.put(
        f"/api/run/{run_id}/result", data=data, headers={**headers, **OCTET}
    )


def test_small_result_is_inlined_exactly_as_a_json_one(app: Flask, server_net: Network) -> None:
    run, node = _run(server_net)
    r = _put(server_net, run["id"], b'{"n": 3}', node)
    assert r.status_code == 200, r.json
    assert r.json == {"run_id": run["id"], "stored": "inline", "result_ref": None, "result_size": 8}
    got = server_net.client.get(f"/api/run/{run['id']}", headers=server_net.users["alice"]).json
    assert (got["result"], got["result_ref"], got["result_size"]) == ('{"n": 3}', None, None)
    raw = server_net.client.get(f"/api/run/{run['id']}/result", headers=server_net.users["alice"])
    assert raw.status_code == 200 and raw.data == b'{"n": 3}'
    assert _files(app) == []


def test_large_result_is_a_file_with_a_marker_and_streams_back(
    app: Flask, server_net: Network
) -> None:
    run, node = _run(server_net)
    payload = b'{"data": "' + b"x" * 5000 + b'"}'
    r = _put(server_net, run["id"], payload, node)
    assert r.status_code == 200, r.json
    assert r.json["stored"] == "file" and r.json["result_size"] == len(payload)
    assert len(_files(app)) == 1 and _files(app)[0].endswith(".blob")
    server_net.client.patch(f"/api/run/{run['id']}", json={"status": "completed"}, headers=node)
    alice = server_net.users["alice"]
    got = server_net.client.get(f"/api/run/{run['id']}", headers=alice).json
    assert got["result"] is None
    assert got["result_ref"] == f"/api/run/{run['id']}/result"
    assert got["result_size"] == len(payload)
    listed = server_net.client.get(
        f"/api/run?task_id={run['task_id']}&include=result", headers=alice
    )
    assert listed.json["data"][0]["result_ref"] == got["result_ref"]
    rows = server_net.client.get(f"/api/result?task_id={run['task_id']}", headers=alice).json[
        "data"
    ]
    assert rows[0]["result"] is None and rows[0]["result_size"] == len(payload)
    raw = server_net.client.get(got["result_ref"], headers=alice)
    assert raw.status_code == 200 and raw.data == payload
    assert raw.headers["Content-Type"] == "application/octet-stream"
    # carol's organization is not in collaboration ab
    assert (
        server_net.client.get(got["result_ref"], headers=server_net.users["carol"]).status_code
        == 403
    )
    # the task's deletion removes the file
    assert server_net.client.delete(f"/api/task/{run['task_id']}", headers=alice).status_code == 200
    assert _files(app) == []


def test_a_new_upload_or_a_json_result_replaces_the_file(app: Flask, server_net: Network) -> None:
    run, node = _run(server_net)
    assert _put(server_net, run["id"], b"1" * 4000, node).status_code == 200
    first = _files(app)
    assert _put(server_net, run["id"], b"2" * 4000, node).status_code == 200
    assert len(_files(app)) == 1 and _files(app) != first
    r = server_net.client.patch(
        f"/api/run/{run['id']}", json={"status": "completed", "result": "[1]"}, headers=node
    )
    assert r.status_code == 200 and r.json["result"] == "[1]" and r.json["result_ref"] is None
    assert _files(app) == []


@pytest.mark.parametrize(
    ("who", "headers", "status"),
    [
        ("other node", {"Content-Type": "application/octet-stream"}, 403),
        ("user", {"Content-Type": "application/octet-stream"}, 403),
        ("own node", {"Content-Type": "application/json"}, 400),
    ],
)
def test_who_and_how_may_upload(server_net: Network, who: str, headers: dict, status: int) -> None:
    run, node = _run(server_net)
    auth = {
        "other node": server_net.nodes["b@ab"]["headers"],
        "user": server_net.users["alice"],
    }.get(who, node)
    r = server_net.client.put(
        f"/api/run/{run['id']}/result", data=b"[]", headers={**auth, **headers}
    )
    assert r.status_code == status, r.json
    assert set(r.json) >= {"msg", "errors", "code"}


def test_final_run_and_oversize_and_missing(app: Flask, server_net: Network) -> None:
    run, node = _run(server_net)
    big = _put(server_net, run["id"], b"x" * (1024 * 1024 + 1), node)
    assert big.status_code == 413
    assert big.json["code"] == "payload_too_large" and "max_result_mb" in big.json["msg"]
    assert _files(app) == []  # no partial upload left behind
    alice = server_net.users["alice"]
    assert server_net.client.get(f"/api/run/{run['id']}/result", headers=alice).status_code == 404
    server_net.client.patch(f"/api/run/{run['id']}", json={"status": "failed"}, headers=node)
    assert _put(server_net, run["id"], b"[]", node).status_code == 409


def test_encrypted_collaboration_takes_only_a_sealed_result_of_that_run(
    app: Flask, server_net: Network
) -> None:
    c, root = server_net.client, server_net.root
    collab = c.post(
        "/api/collaboration",
        json={"name": "enc", "organization_ids": [server_net.orgs["a"]], "encrypted": True},
        headers=root,
    ).json
    key = c.post(
        "/api/node",
        json={"organization_id": server_net.orgs["a"], "collaboration_id": collab["id"]},
        headers=root,
    ).json["api_key"]
    node = {
        "Authorization": "Bearer "
        + c.post("/api/token/node", json={"api_key": key}).json["access_token"]
    }
    body = {
        "collaboration_id": collab["id"],
        "organizations": [{"id": server_net.orgs["a"], "input": "v6nb1:AQ=="}],
        "image": "img:1",
        "method": "m",
    }
    task = c.post("/api/task", json=body, headers=server_net.users["alice"]).json
    run = task["runs"][0]
    plain = _put(server_net, run["id"], b'{"secret": 1}', node)
    assert plain.status_code == 400 and "sealed" in plain.json["msg"]
    a, researcher = OrgKey.generate(), OrgKey.generate()
    other_run = crypto.Binding(
        "result", task["uid"], server_net.orgs["a"], server_net.orgs["a"], run["id"] + 99
    )
    wrong = crypto.seal(b"[]", other_run, a, researcher.public_key)
    assert _put(server_net, run["id"], wrong, node).status_code == 400
    bind = crypto.Binding(
        "result", task["uid"], server_net.orgs["a"], server_net.orgs["a"], run["id"]
    )
    sealed = io.BytesIO()
    crypto.seal_stream(
        io.BytesIO(b"[" + b"1," * 3000 + b"1]"), sealed, bind, a, researcher.public_key
    )
    assert _put(server_net, run["id"], sealed.getvalue(), node).status_code == 200
    (stored,) = _blob_dir(app).iterdir()
    assert stored.read_bytes() == sealed.getvalue()  # the binary sealed form, not base64
    assert crypto.read_header(stored.read_bytes()[:2048]).binding == bind
    raw = c.get(f"/api/run/{run['id']}/result", headers=server_net.users["alice"])
    assert raw.headers["X-V6NB-Sealed"] == "1"
    assert crypto.open(raw.data, bind, researcher, a.public_key).startswith(b"[1,1,")
