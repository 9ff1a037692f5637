"""Rich HTML reprs of Client, Task and a result's provenance against a real server process, and
the Login widget's log-out button ending the session on the server."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.waiting import wait_for
from vantage6nb import Client
from vantage6nb.client import NodeOfflineWarning
from vantage6nb.client._html import provenance_html
from vantage6nb.common.keys import OrgKey
from vantage6nb.widgets import Login

from .conftest import Admin

PASSWORD = "html-Secret-1"


@pytest.fixture(scope="module")
def study(server) -> dict[str, Any]:
    """Two fresh organizations (B with a public key) in a collaboration, a node each, a user in A."""
    admin = Admin(server.url)
    a = admin.post("/organization", {"name": "Html Leiden"})
    b = admin.post("/organization", {"name": "Html Utrecht"})
    collab = admin.post(
        "/collaboration",
        {"name": "html-study", "organization_ids": [a["id"], b["id"]], "encrypted": False},
    )
    for org in (a, b):
        admin.post(
            "/node",
            {
                "organization_id": org["id"],
                "collaboration_id": collab["id"],
                "name": f"n{org['id']}",
            },
        )
    admin.post("/user", {"username": "html-user", "password": PASSWORD, "organization_id": a["id"]})
    key = OrgKey.generate()
    r = requests.patch(
        f"{admin.url}/organization/{b['id']}",
        json={"public_key": key.public_key_b64},
        headers=admin.headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return {"url": server.url, "a": a, "b": b, "collab": collab, "key": key}


@pytest.fixture
def client(study):
    c = Client(study["url"], timeout=10, state_dir=False).login("html-user", PASSWORD)
    yield c
    c.close()


def test_client_html_shows_server_user_collaborations_nodes_and_full_fingerprints(
    study, client
) -> None:
    text = client._repr_html_()
    assert study["url"] in text and "html-user" in text and "Html Leiden" in text
    assert "html-study" in text and "Html Utrecht" in text
    assert "data-status='offline'" in text and "</span> 2" in text  # two nodes, both offline
    fingerprint = study["key"].fingerprint
    assert len(fingerprint) > 40 and fingerprint in text  # whole, never cut
    assert repr(client).startswith("<Client ") and "<" not in repr(client)[1:-1]  # plain text
    client.logout()
    assert "not logged in" in client._repr_html_()


def test_task_html_shows_names_full_image_and_the_listed_status(study, client) -> None:
    image = "v6nb/diagnostics@sha256:" + "0123456789abcdef" * 4
    with pytest.warns(NodeOfflineWarning):  # the nodes are registered, never started
        task = client.task.create(
            collaboration="html-study",
            organizations=["Html Leiden", "Html Utrecht"],
            image=image,
            method="echo",
            name="html repr",
        )
    text = task._repr_html_()
    assert f"<code>{image}</code>" in text  # the full digest
    assert "html repr" in text and f"Task {task.id}" in text
    assert "Html Leiden" in text and "Html Utrecht" in text  # by name
    listed = client.task.list()
    status = listed.loc[listed["id"] == task.id, "status"].item()
    assert f"data-status='{status}'" in text  # the task's status as task.list() shows it
    assert text.count("data-status='pending'") >= 2  # each organization's run
    assert repr(task).startswith(f"<Task {task.id}")  # __repr__ stays plain text
    task.kill()
    text = task._repr_html_()
    listed = client.task.list()
    assert f"data-status='{listed.loc[listed['id'] == task.id, 'status'].item()}'" in text


def test_provenance_html_card() -> None:
    attrs = {
        "task_id": 7,
        "image": "v6nb/crosstab@sha256:" + "ab" * 32,
        "organizations": ["Leiden", "Utrecht"],
        "suppressed": [(float("nan"), 2009)],
        "missing": ["row"],
        "notes": ["a note"],
    }
    text = provenance_html(attrs)
    assert "Provenance of task 7" in text and attrs["image"] in text
    assert "Leiden, Utrecht" in text and "(missing) × 2009" in text and "a note" in text
    assert provenance_html({}) == ""


def test_logout_button_ends_the_session_on_the_server(study) -> None:
    login = Login(url=study["url"], username="html-user", password=PASSWORD)
    assert login.login() and login.logout_button.layout.display is None
    token = login.client._transport.access_token
    me = study["url"] + "/api/user/me"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(me, headers=headers, timeout=10).status_code == 200
    login.logout_button.click()
    assert login.client is None and login.username == "" and "logged out" in login.status_html.value
    assert login.logout_button.layout.display == "none"
    # revoked: the server refuses the old token (polled: a busy server may take a moment)
    status = wait_for(
        lambda: (code := requests.get(me, headers=headers, timeout=10).status_code) != 200 and code,
        timeout=30,
        what="the server refusing the logged-out token",
    )
    assert status == 401
