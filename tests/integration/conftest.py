"""Fixtures for the integration tests on the module's own demo network (``demo_net``, from
tests/conftest.py, with ``docker_client``): a researcher's client and the organization ids."""

from __future__ import annotations

import pytest


@pytest.fixture
def client(demo_net):
    return demo_net.client()


@pytest.fixture
def org_ids(client):
    return client.organizations()["id"].tolist()
