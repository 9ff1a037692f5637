"""Ids are never handed out twice: a notebook holding an old id must not reach a new object."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "resource,body",
    [
        ("organization", {"name": "Gone"}),
        ("collaboration", {"name": "Gone", "organization_ids": []}),
    ],
)
def test_deleted_ids_are_not_reused(client, root, resource, body):
    first = client.post(f"/api/{resource}", json=body, headers=root)
    assert first.status_code == 201, first.json
    old = first.json["id"]
    assert client.delete(f"/api/{resource}/{old}", headers=root).status_code in (200, 204)
    again = client.post(f"/api/{resource}", json={**body, "name": "New"}, headers=root)
    assert again.json["id"] > old
    assert client.get(f"/api/{resource}/{old}", headers=root).status_code == 404
