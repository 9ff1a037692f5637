"""What a researcher's client remembers in its state folder, against a real server: key pins (a
replaced key is refused by a new client), collaborations seen encrypted (no plaintext after a
downgrade), and the tasks it created (an older task's genuine results replayed as a newer task's
are refused; tasks created elsewhere come back unverified)."""

from __future__ import annotations

import json
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from node_app.payloads import PeerKeys
from node_app.payloads import SealedCodec as NodeCodec
from vantage6nb import Client
from vantage6nb.client import UnverifiedResultWarning
from vantage6nb.client._state import ResearcherState, StateDirWarning, default_state_dir
from vantage6nb.common.keys import OrgKey
from vantage6nb.errors import CryptoError, KeyMismatch

from .conftest import Admin

PASSWORD = "pin-Secret-1"
TASK = {"image": "v6nb/diagnostics", "method": "echo"}


@pytest.fixture(scope="module")
def pinned(server) -> dict[str, Any]:
    """An encrypted collaboration of two fresh organizations (B with a key), a researcher in A."""
    admin = Admin(server.url)
    a = admin.post("/organization", {"name": "Pin A"})
    b = admin.post("/organization", {"name": "Pin B"})
    collab = admin.post(
        "/collaboration",
        {"name": "pinned", "organization_ids": [a["id"], b["id"]], "encrypted": True},
    )
    admin.post("/user", {"username": "pin-user", "password": PASSWORD, "organization_id": a["id"]})
    info = {
        "url": server.url,
        "a": a,
        "b": b,
        "collab": collab,
        "admin": admin,
        "a_key": OrgKey.generate(),
        "b_key": OrgKey.generate(),
        "db": server.folder / "server-data" / "server.sqlite",
    }
    _set_key(info, info["b_key"])
    return info


@pytest.fixture
def db(pinned):
    engine = sa.create_engine(f"sqlite:///{pinned['db']}")
    yield engine
    engine.dispose()


def _set_key(pinned: dict[str, Any], key: OrgKey) -> None:
    """What the server's root (or whoever holds the server) does: replace B's public key."""
    admin = pinned["admin"]
    r = requests.patch(
        f"{admin.url}/organization/{pinned['b']['id']}",
        json={"public_key": key.public_key_b64},
        headers=admin.headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text


def _client(pinned: dict[str, Any], state: Path | bool, *, key: bool = True, **kw: Any) -> Client:
    c = Client(pinned["url"], timeout=10, state_dir=state).login("pin-user", PASSWORD)
    if key:
        c.setup_encryption(pinned["a_key"], **kw)
    return c


def test_pins_are_kept_in_the_state_folder_and_a_new_client_refuses_a_replaced_key(
    pinned, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = _client(pinned, state)
    first.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    b_id, b_fp = pinned["b"]["id"], pinned["b_key"].fingerprint
    assert first.key_pins[b_id] == b_fp

    (pins_file,) = state.glob("*.json")
    assert first.state_file == str(pins_file)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(pins_file.stat().st_mode) == 0o600
    saved = json.loads(pins_file.read_text())
    assert saved["url"] == pinned["url"]
    assert saved["key_pins"][str(b_id)]["fingerprint"] == b_fp
    assert saved["key_pins"][str(b_id)]["name"] == "Pin B"

    new_b = OrgKey.generate()
    _set_key(pinned, new_b)
    try:
        # a NEW client with the same folder and no pins= notices, and sends nothing
        second = _client(pinned, state)
        before = len(second.task.list(collaboration="pinned"))
        with pytest.raises(KeyMismatch) as info:
            second.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
        message = str(info.value)
        assert "'Pin B'" in message and "changed" in message and b_fp in message
        assert f"client.trust_key('Pin B', '{new_b.fingerprint}')" in message
        assert str(pins_file) in message
        assert len(second.task.list(collaboration="pinned")) == before

        # a fresh folder trusts on first use: the folder is what remembers
        fresh = _client(pinned, tmp_path / "elsewhere")
        fresh.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)

        # pins= wins over the folder: the fresh folder's pin of the new key does not count
        with pytest.raises(KeyMismatch, match="changed"):
            _client(pinned, tmp_path / "elsewhere", pins={b_id: b_fp}).task.create(
                collaboration="pinned", organizations=["Pin B"], **TASK
            )

        # accepting the change deliberately: a fingerprint other than the server's is refused
        with pytest.raises(KeyMismatch, match="nothing was trusted"):
            second.trust_key("Pin B", b_fp)
        assert second.trust_key("Pin B", new_b.fingerprint) == new_b.fingerprint
        second.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
        third = _client(pinned, state)  # and later clients accept it too
        third.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
        assert third.key_pins[b_id] == new_b.fingerprint
    finally:
        _set_key(pinned, pinned["b_key"])


def test_trust_key_without_a_loaded_key_updates_the_folder(pinned, tmp_path: Path) -> None:
    state = tmp_path / "state"
    c = _client(pinned, state, key=False)
    fp = pinned["b_key"].fingerprint
    assert c.trust_key("Pin B", fp) == fp
    assert c.key_pins == {pinned["b"]["id"]: fp}
    assert ResearcherState(pinned["url"], state).pins() == {pinned["b"]["id"]: fp}


def test_the_state_folder_follows_xdg_state_home_and_can_be_turned_off(
    pinned, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "vantage6nb"
    c = Client(pinned["url"], timeout=10)
    assert Path(c.state_file).parent == tmp_path / "xdg" / "vantage6nb"
    off = _client(pinned, False)
    off.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    assert off.state_file == "this session's memory"
    assert off.key_pins[pinned["b"]["id"]] == pinned["b_key"].fingerprint
    assert not (tmp_path / "xdg" / "vantage6nb").exists() or not any(
        (tmp_path / "xdg" / "vantage6nb").glob("*.json")
    )


def test_no_plaintext_to_a_collaboration_seen_encrypted(pinned, db, tmp_path: Path) -> None:
    state = tmp_path / "state"
    seen = _client(pinned, state, key=False)
    assert bool(seen.collaborations().set_index("name").loc["pinned", "encrypted"])
    cid = pinned["collab"]["id"]
    with db.begin() as conn:  # the server's word changes (no API does this: it is one-way)
        conn.execute(sa.text("UPDATE collaboration SET encrypted = 0 WHERE id = :c"), {"c": cid})
    try:
        # a new client without a key, same folder: the server now says plaintext
        later = _client(pinned, state, key=False)
        assert not later.collaboration("pinned", fresh=True)["encrypted"]
        before = len(later.task.list(collaboration="pinned"))
        with pytest.raises(CryptoError) as info:
            later.task.create(collaboration="pinned", kwargs={"secret": "s-1"}, **TASK)
        message = str(info.value)
        assert "'pinned'" in message and "was encrypted" in message
        assert "server's word" in message and "client.forget_encryption('pinned')" in message
        # the client that saw it, with a listing cached, refuses too
        with pytest.raises(CryptoError, match="was encrypted"):
            seen.task.create(collaboration=later.collaboration("pinned"), **TASK)
        assert len(later.task.list(collaboration="pinned")) == before

        # clearing it deliberately
        assert later.forget_encryption("pinned") is True
        assert later.forget_encryption("pinned") is False
        later.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    finally:
        with db.begin() as conn:
            conn.execute(
                sa.text("UPDATE collaboration SET encrypted = 1 WHERE id = :c"), {"c": cid}
            )


def _complete(db, pinned: dict[str, Any], task_id: int, uid: str, result: dict) -> int:
    """What org B's node would upload: a result sealed for org A, bound to the task and run."""
    with db.begin() as conn:
        (run_id,) = conn.execute(
            sa.text("SELECT id FROM run WHERE task_id = :t"), {"t": task_id}
        ).one()
    public = {pinned["a"]["id"]: pinned["a_key"].public_key_b64}
    node = NodeCodec(
        pinned["b_key"], pinned["b"]["id"], PeerKeys(lambda i: {"public_key": public[i]})
    )
    binding = {"task_uid": uid, "run_id": run_id, "init_org_id": pinned["a"]["id"]}
    sealed = node.encode_result(json.dumps(result).encode(), binding)
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE run SET status = 'completed', result = :r WHERE id = :i"),
            {"r": sealed, "i": run_id},
        )
    return run_id


def test_an_older_tasks_results_replayed_as_a_newer_tasks_are_refused(
    pinned, db, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    client = _client(pinned, state)
    first = client.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    uid1 = client._transport.request("GET", f"/task/{first.id}")["uid"]
    run1 = _complete(db, pinned, first.id, uid1, {"answer": "old"})
    assert first.results() == [{"answer": "old"}] and first.verified
    second = client.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    (run2,) = [r["id"] for r in second.runs]

    with db.begin() as conn:  # the server hands task 1's genuine result back as task 2's
        conn.execute(sa.text("UPDATE task SET uid = 'old-' || uid WHERE id = :t"), {"t": first.id})
        conn.execute(sa.text("UPDATE task SET uid = :u WHERE id = :t"), {"u": uid1, "t": second.id})
        conn.execute(
            sa.text("UPDATE run SET task_id = :t WHERE id = :r"), {"t": first.id, "r": run2}
        )
        conn.execute(
            sa.text("UPDATE run SET task_id = :t WHERE id = :r"), {"t": second.id, "r": run1}
        )

    # what a client without a record would have believed (the attack), now marked unverified
    stranger = _client(pinned, tmp_path / "other")
    with pytest.warns(UnverifiedResultWarning, match=f"Task {second.id} was not created by"):
        assert stranger.task.get(second.id).results() == [{"answer": "old"}]
    assert not stranger.task.get(second.id).verified

    # the client that created task 2 refuses: by the Task it holds, by a fresh handle, and by a
    # new client sharing its state folder
    for handle in (
        second,
        client.task.get(second.id),
        _client(pinned, state).task.get(second.id),
    ):
        with pytest.raises(CryptoError) as info:
            handle.results()
        message = str(info.value)
        assert f"Task {second.id} is not the task this client created" in message
        assert "older task's genuine results" in message and str(state) in message
    assert not client.task.get(second.id).verified


def test_results_of_a_task_created_elsewhere_are_unverified_and_warned_once(
    pinned, db, tmp_path: Path
) -> None:
    creator = _client(pinned, tmp_path / "creator")
    task = creator.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    uid = creator._transport.request("GET", f"/task/{task.id}")["uid"]
    _complete(db, pinned, task.id, uid, {"n": 1})

    reader = _client(pinned, tmp_path / "reader")
    handle = reader.task.get(task.id)
    assert handle.verified is False
    with pytest.warns(UnverifiedResultWarning) as caught:
        assert handle.results() == [{"n": 1}]
        assert handle.results() == [{"n": 1}]  # once per task, not on every call
    assert len([w for w in caught if issubclass(w.category, UnverifiedResultWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedResultWarning)
        assert creator.task.get(task.id).results() == [{"n": 1}]  # the creator: no warning
    assert creator.task.get(task.id).verified


def test_the_task_records_are_appended_with_their_binding(pinned, tmp_path: Path) -> None:
    state = tmp_path / "state"
    client = _client(pinned, state)
    task = client.task.create(collaboration="pinned", organizations=["Pin B"], **TASK)
    (tasks_file,) = state.glob("*.tasks.jsonl")
    assert stat.S_IMODE(tasks_file.stat().st_mode) == 0o600
    (record,) = [json.loads(line) for line in tasks_file.read_text().splitlines()]
    assert record["id"] == task.id and record["uid"] == task._data["uid"]
    assert record["collaboration_id"] == pinned["collab"]["id"]
    assert record["init_org_id"] == pinned["a"]["id"]
    assert record["runs"] == {str(task.runs[0]["id"]): pinned["b"]["id"]}


def test_an_unwritable_state_folder_warns_once_and_keeps_going_in_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    state = ResearcherState("http://127.0.0.1:9", blocked / "state")
    assert state.pins() == {}  # nothing is written (or created) before there is something to keep
    with pytest.warns(StateDirWarning, match="last only for this session"):
        assert state.pin(2, "SHA256:abc") == "SHA256:abc"
    with warnings.catch_warnings():
        warnings.simplefilter("error", StateDirWarning)
        state.saw_encrypted(4, "study")
        state.remember_task({"id": 7, "uid": "u", "runs": {1: 2}})
    assert state.pins() == {2: "SHA256:abc"} and state.seen_encrypted(4)["name"] == "study"
    assert state.task(7)["uid"] == "u" and state.where == "this session's memory"
