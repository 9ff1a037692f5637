"""End-to-end encryption through real server and node processes: the server's database holds only
ciphertext; tampered, moved and replayed payloads fail their run; key mismatches are refused."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import ChildProcess, wait_for
from vantage6nb import Client, analysis, demo
from vantage6nb.common import crypto
from vantage6nb.common.keys import OrgKey
from vantage6nb.demo._network import _child_env
from vantage6nb.errors import DecryptionError, KeyMismatch, MissingKey

pytestmark = pytest.mark.integration

DIAG = "v6nb/diagnostics"
SECRET = "penguin-secret-7f3a9c"


@pytest.fixture(scope="module")
def encrypted_net():
    """An encrypted demo network (3 organizations) of this module's own: tests stop nodes and edit
    its database."""
    with demo.start(nodes=3, encrypted=True) as network:
        yield network


@pytest.fixture(scope="module")
def db(encrypted_net):
    engine = sa.create_engine(encrypted_net.server_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(encrypted_net):
    return encrypted_net.client()


def _runs(db, task_id: int) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, organization_id, input, result, status, reason FROM run "
                "WHERE task_id = :t ORDER BY id"
            ),
            {"t": task_id},
        )
        return [dict(r._mapping) for r in rows]


def _set_input(db, run_id: int, text: str) -> None:
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE run SET input = :i WHERE id = :r"), {"i": text, "r": run_id})


def _final_run(db, run_id: int) -> dict:
    def final():
        with db.connect() as conn:
            row = conn.execute(
                sa.text("SELECT status, reason FROM run WHERE id = :r"), {"r": run_id}
            ).one()
        return dict(row._mapping) if row.status in ("completed", "failed", "crashed") else None

    return wait_for(final, what=f"run {run_id} to end")


def _flip_last_byte(text: str) -> str:
    raw = bytearray(base64.b64decode(text[len(crypto.TEXT_PREFIX) :]))
    raw[-1] ^= 0x01
    return crypto.TEXT_PREFIX + base64.b64encode(bytes(raw)).decode("ascii")


def test_encrypted_echo_and_summary_leave_only_ciphertext_on_the_server(encrypted_net, db, client):
    org_ids = client.organizations()["id"].tolist()
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="echo", kwargs={"secret": SECRET}
    )
    task.wait(timeout=60)
    assert task.results() == [{"args": [], "kwargs": {"secret": SECRET}}] * 3
    summary = analysis.summary(client, columns=["body_mass_g"])
    assert summary.loc["body_mass_g", "count"] == 342

    with db.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, task_id, input, result FROM run")).all()
        tasks = conn.execute(sa.text("SELECT id, parent_id FROM task")).all()
    assert any(t.parent_id is not None for t in tasks)  # the summary's subtasks are in there too
    assert len(rows) >= 3 + 1 + 3
    payloads = [r.input for r in rows] + [r.result for r in rows if r.result is not None]
    assert len(payloads) >= 2 * len(rows) - 1
    for text in payloads:
        assert text.startswith("v6nb1:"), text[:40]
        assert SECRET not in text and "body_mass_g" not in text
        assert crypto.read_header(text).binding.task_uid  # a well-formed sealed payload
    dump = "\n".join(payloads)
    assert SECRET not in dump and "kwargs" not in dump


def test_researcher_without_a_key_gets_missing_key_before_anything_is_sent(
    encrypted_net, db, client
):
    bare = Client(encrypted_net.url).login(
        encrypted_net.credentials["username"], encrypted_net.credentials["password"]
    )
    with db.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM task")).scalar()
    with pytest.raises(MissingKey, match="setup_encryption"):
        bare.task.create(
            organizations=[client.whoami["organization_id"]], image=DIAG, method="echo"
        )
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM task")).scalar() == before


def test_a_tampered_input_fails_its_run_and_the_node_keeps_going(encrypted_net, db, client):
    orgs = encrypted_net.organizations
    encrypted_net.stop_node("Utrecht")
    try:
        task = client.task.create(organizations=[orgs["Utrecht"]], image=DIAG, method="echo")
        (run,) = _runs(db, task.id)
        _set_input(db, run["id"], _flip_last_byte(run["input"]))
    finally:
        encrypted_net.start_node("Utrecht")
    final = _final_run(db, run["id"])
    assert final["status"] == "failed"
    assert "could not read the run's input" in final["reason"]
    assert "failed authentication" in final["reason"]
    again = client.task.create(
        organizations=[orgs["Utrecht"]], image=DIAG, method="echo", kwargs={"n": 1}
    )
    again.wait(timeout=60)
    assert again.results() == [{"args": [], "kwargs": {"n": 1}}]


def test_an_input_copied_into_another_run_is_refused(encrypted_net, db, client):
    orgs = encrypted_net.organizations
    encrypted_net.stop_node("Groningen")
    try:
        task = client.task.create(
            organizations=[orgs["Utrecht"], orgs["Groningen"]], image=DIAG, method="echo"
        )
        utrecht, groningen = _runs(db, task.id)
        _set_input(db, groningen["id"], utrecht["input"])
    finally:
        encrypted_net.start_node("Groningen")
    final = _final_run(db, groningen["id"])
    assert final["status"] == "failed"
    assert "differs in: recipient_org_id" in final["reason"]
    assert _final_run(db, utrecht["id"])["status"] == "completed"


def test_a_result_copied_into_another_run_is_refused_by_the_client(encrypted_net, db, client):
    orgs = encrypted_net.organizations
    task = client.task.create(
        organizations=[orgs["Utrecht"], orgs["Groningen"]], image=DIAG, method="echo"
    )
    task.wait(timeout=60)
    a, b = _runs(db, task.id)
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE run SET result = :x WHERE id = :r"), {"x": a["result"], "r": b["id"]}
        )
    with pytest.raises(DecryptionError, match="moved from elsewhere"):
        client.task.get(task.id).results()


def test_a_replayed_task_uid_is_refused_by_the_node(encrypted_net, db, client):
    orgs = encrypted_net.organizations
    first = client.task.create(organizations=[orgs["Groningen"]], image=DIAG, method="echo")
    first.wait(timeout=60)
    (done,) = _runs(db, first.id)
    encrypted_net.stop_node("Groningen")
    try:
        second = client.task.create(organizations=[orgs["Groningen"]], image=DIAG, method="echo")
        (pending,) = _runs(db, second.id)
        with db.begin() as conn:  # what a malicious server could do: the same task once more
            conn.execute(
                sa.text("UPDATE task SET uid = 'old-' || uid WHERE id = :t"), {"t": first.id}
            )
            conn.execute(
                sa.text("UPDATE task SET uid = :u WHERE id = :t"),
                {"u": first._data["uid"], "t": second.id},
            )
        _set_input(db, pending["id"], done["input"])
    finally:
        encrypted_net.start_node("Groningen")
    final = _final_run(db, pending["id"])
    assert final["status"] == "failed"
    assert "replayed task" in final["reason"] and first._data["uid"] in final["reason"]


def _node_start(
    encrypted_net, name: str, *extra: str, env: dict | None = None, timeout: float = 90
):
    folder = Path(encrypted_net._node(name).config).parent
    return subprocess.run(
        [sys.executable, "-m", "node_app", "start", "--config", "node.yaml", *extra],
        cwd=folder,
        env={**_child_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_node_refuses_to_start_with_another_key_or_the_wrong_encryption_setting(
    encrypted_net, tmp_path
):
    other = OrgKey.generate()
    other_file = tmp_path / "other.key"
    other_file.write_bytes(other.to_bytes())
    other_file.chmod(0o600)
    encrypted_net.stop_node("Groningen")
    try:
        proc = _node_start(
            encrypted_net, "Groningen", env={"V6NB_NODE_PRIVATE_KEY": str(other_file)}
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        registered = (
            encrypted_net.client()
            .organizations()
            .set_index("name")
            .loc["Groningen", "key_fingerprint"]
        )
        assert other.fingerprint in proc.stderr and registered in proc.stderr
        assert "--replace-key" in proc.stderr
        proc = _node_start(encrypted_net, "Groningen", env={"V6NB_NODE_ENCRYPTION": "false"})
        assert proc.returncode == 2
        assert "set `encryption: true`" in proc.stderr
    finally:
        encrypted_net.start_node("Groningen")


def test_a_rotated_peer_key_is_detected_by_client_and_node(encrypted_net, db, client):
    orgs = encrypted_net.organizations
    client.task.create(organizations=[orgs["Utrecht"]], image=DIAG, method="echo").wait(timeout=60)
    admin = encrypted_net.admin()
    # the server (or an administrator) swaps Utrecht's key: the client has pinned the old one
    admin.set_public_key(orgs["Utrecht"], OrgKey.generate().public_key_b64)
    with pytest.raises(KeyMismatch, match="'Utrecht'.*changed"):
        client.task.create(organizations=[orgs["Utrecht"]], image=DIAG, method="echo")
    # the researcher organization's key is replaced: Groningen's node pinned the old one
    new_key = OrgKey.generate()
    admin.set_public_key(orgs["Leiden"], new_key.public_key_b64)
    fresh = Client(encrypted_net.url).login(
        encrypted_net.credentials["username"], encrypted_net.credentials["password"]
    )
    fresh.setup_encryption(new_key)
    task = fresh.task.create(organizations=[orgs["Groningen"]], image=DIAG, method="echo")
    (run,) = _runs(db, task.id)
    final = _final_run(db, run["id"])
    assert final["status"] == "failed"
    assert "'Leiden'" in final["reason"] and "changed" in final["reason"]
    assert "peer_keys.json" in final["reason"]


def test_replace_key_is_explicit_and_logged(encrypted_net, tmp_path):
    key = OrgKey.generate()
    key_file = tmp_path / "replacement.key"
    key_file.write_bytes(key.to_bytes())
    key_file.chmod(0o600)
    encrypted_net.stop_node("Groningen")
    folder = Path(encrypted_net._node("Groningen").config).parent
    node = ChildProcess(
        "Groningen",
        ["-m", "node_app", "start", "--config", str(folder / "node.yaml"), "--replace-key"],
        tmp_path / "node.log",
        env={"V6NB_NODE_PRIVATE_KEY": str(key_file)},
    )
    try:
        node.start(ready="connected")
    finally:
        node.stop()
    assert "REPLACED the public key" in node.output()
    row = encrypted_net.admin().get(f"/organization/{encrypted_net.organizations['Groningen']}")
    assert row["key_fingerprint"] == key.fingerprint
    assert "REPLACED" in encrypted_net.server_log(400)
