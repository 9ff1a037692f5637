"""The researcher's ``Client`` against the server app in this process: no server subprocess, no socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from vantage6nb import Client, errors
from vantage6nb.demo._setup import AdminSession
from vantage6nb.testing import FlaskTransport

URL = "http://testserver"
ROOT_PASSWORD = "root-Secret-1"
PASSWORD = "research-Secret-1"


@pytest.fixture
def transport(tmp_path: Path) -> FlaskTransport:
    from server_app import create_app

    app = create_app({"data_dir": str(tmp_path / "data"), "root_password": ROOT_PASSWORD})
    return FlaskTransport(app)


@pytest.fixture
def network(transport: FlaskTransport) -> dict[str, Any]:
    """Leiden and Utrecht in collaboration 'study', a researcher at Leiden; seeded in-process too."""
    admin = AdminSession(URL, "root", ROOT_PASSWORD, transport=transport)
    orgs = {name: admin.create_organization(name) for name in ("Leiden", "Utrecht")}
    ids = [org["id"] for org in orgs.values()]
    collab = admin.create_collaboration("study", ids, encrypted=False)
    admin.create_user("researcher", PASSWORD, orgs["Leiden"]["id"])
    for name, org in orgs.items():
        admin.create_node(org["id"], collab["id"], f"{name.lower()}-node")
    return {"orgs": orgs, "collaboration": collab}


@pytest.fixture
def client(transport: FlaskTransport, network: dict[str, Any]) -> Client:
    return Client(URL, transport=transport).login("researcher", PASSWORD)


def test_login_goes_through_the_given_transport(transport: FlaskTransport, network: Any) -> None:
    before = len(transport.sent)
    client = Client(URL, transport=transport, timeout=5).login("researcher", PASSWORD)
    assert client.logged_in and client.whoami["username"] == "researcher"
    assert client.whoami["organization_name"] == "Leiden"
    assert transport.sent[before:] == [
        ("POST", f"{URL}/api/token/user"),
        ("GET", f"{URL}/api/user/me"),
    ]


def test_wrong_password_is_an_authentication_error(transport: FlaskTransport, network: Any):
    with pytest.raises(errors.AuthenticationError, match="Login failed for user 'researcher'"):
        Client(URL, transport=transport).login("researcher", "wrong")


def test_organizations_are_a_dataframe(client: Client, network: dict[str, Any]) -> None:
    frame = client.organizations()
    assert isinstance(frame, pd.DataFrame)
    assert set(frame["name"]) == {"Leiden", "Utrecht"}
    ids = client.organizations(collaboration="study")["id"].tolist()
    assert sorted(ids) == sorted(o["id"] for o in network["orgs"].values())


def test_an_error_answer_is_the_typed_exception(client: Client) -> None:
    with pytest.raises(errors.NotFound) as info:
        client.task.get(999_999)
    assert info.value.status == 404 and info.value.msg


def test_a_task_is_created_with_one_run_per_organization(
    client: Client, transport: FlaskTransport, network: dict[str, Any]
) -> None:
    task = client.task.create(
        collaboration="study",
        organizations=["Leiden", "Utrecht"],
        image="v6nb/summary",
        method="summary",
        kwargs={"columns": ["age"]},
        databases=["default"],
    )
    assert ("POST", f"{URL}/api/task") in transport.sent
    admin = AdminSession(URL, "root", ROOT_PASSWORD, transport=transport)
    stored = admin.get(f"/task/{task.id}")
    assert stored["method"] == "summary" and stored["image"] == "v6nb/summary"
    runs = admin.get("/run", task_id=task.id)["data"]
    assert sorted(r["organization_id"] for r in runs) == sorted(
        o["id"] for o in network["orgs"].values()
    )
    assert {r["status"] for r in runs} == {"pending"}
