"""A collaboration's ``encrypted`` flag goes one way, on a real server process: off -> on is
allowed and audited; on -> off is refused (409, nothing changes) and the attempt is audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess

pytestmark = pytest.mark.integration

ROOT_PW = "flag-root-password-7Q"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("flag")
    with ServerProcess(folder, {"root_password": ROOT_PW}) as srv:
        yield srv


@pytest.fixture(scope="module")
def root(server: ServerProcess) -> str:
    return server.login("root", ROOT_PW)


def _collab(server: ServerProcess, root: str, name: str, encrypted: bool) -> dict[str, Any]:
    org = server.ok("POST", "/api/organization", root, json={"name": f"{name}-org"})
    body = {"name": name, "organization_ids": [org["id"]], "encrypted": encrypted}
    return server.ok("POST", "/api/collaboration", root, json=body)


def _changes(server: ServerProcess, root: str, collab_id: int) -> list[dict[str, Any]]:
    page = server.ok(
        "GET", "/api/audit", root, params={"action": "encryption_changed", "per_page": 500}
    )
    return [e for e in page["data"] if e["target"] == f"collaboration {collab_id}"]


def test_encryption_cannot_be_switched_off(server: ServerProcess, root: str):
    collab = _collab(server, root, "sealed", encrypted=True)
    path = f"/api/collaboration/{collab['id']}"

    r = server.request("PATCH", path, root, json={"encrypted": False, "name": "renamed"})
    assert r.status_code == 409, r.text
    body = r.json()
    assert "cannot be switched off" in body["msg"] and "new collaboration" in body["msg"]
    assert body["errors"] == {"encrypted": "cannot go from true to false"}
    # nothing changed, not even the name sent with it
    after = server.ok("GET", path, root)
    assert (after["encrypted"], after["name"]) == (True, "sealed")

    (attempt,) = _changes(server, root, collab["id"])
    assert attempt["outcome"] == "refused" and attempt["actor_type"] == "user"
    assert attempt["detail"]["encrypted"] is True and attempt["detail"]["requested"] is False

    # saying it is on (again) is no change and no event
    assert server.ok("PATCH", path, root, json={"encrypted": True})["encrypted"] is True
    assert len(_changes(server, root, collab["id"])) == 1


def test_encryption_can_be_switched_on_and_is_audited(server: ServerProcess, root: str):
    collab = _collab(server, root, "opened", encrypted=False)
    path = f"/api/collaboration/{collab['id']}"
    assert server.ok("PATCH", path, root, json={"encrypted": True})["encrypted"] is True
    (change,) = _changes(server, root, collab["id"])
    assert change["outcome"] == "ok" and change["actor_type"] == "user"
    assert change["detail"] == {"name": "opened", "encrypted": True, "was": False}
    # and from now on it stays on
    r = server.request("PATCH", path, root, json={"encrypted": False})
    assert r.status_code == 409
    assert server.ok("GET", path, root)["encrypted"] is True
